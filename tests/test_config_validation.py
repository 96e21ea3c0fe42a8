"""Bad configurations are refused before any job starts, one line per mistake.

Each case starts from the smoke config (config/smoke.yaml merged onto config/config.yaml) and breaks
one thing. The message must be one line that names the key path, the bad value (where there is one)
and what is allowed. A few cases are also run through snakemake itself: non-zero exit, the message
on stderr, and no job started. The second half breaks the claims and homework-tables files, which
the same gate checks against the config they are used with.
"""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from batchwise import checks, config
from batchwise.__main__ import main as cli
from conftest import REPO, run_env

SMOKE = config.resolve_files(REPO / "config" / "smoke.yaml")
S1, S2, S3 = "s1_batch_init", "s2_bn_lr_mlp", "s3_batch_convergence"


def study(cfg: dict, name: str = S1) -> dict:
    return cfg["studies"][name]


def _del(d: dict, key: str) -> None:
    del d[key]


# id -> (mutation of a copy of the smoke config, key path the line must start with, words it must contain)
CASES = {
    "unknown top-level key": (
        lambda c: c.update(epochs=3),
        "epochs", ["unknown key", "allowed here:", "studies", "device"]),
    "unknown key in a study": (
        lambda c: study(c).update(optimizer="adam"),
        f"studies.{S1}.optimizer", ["unknown key", "allowed here:", "params", "grid", "seeds"]),
    "wrong type: epochs 'ten'": (
        lambda c: study(c)["params"].update(epochs="ten"),
        f"studies.{S1}.params.epochs", ["'ten'", "allowed: an integer >= 1"]),
    "batch_size 0 in a grid": (
        lambda c: study(c)["grid"].update(batch_size=[64, 0]),
        f"studies.{S1}.grid.batch_size[1]", ["0 is out of range", "allowed: an integer >= 1"]),
    "negative batch_size": (
        lambda c: study(c, S2)["params"].update(batch_size=-8),
        f"studies.{S2}.params.batch_size", ["-8", "allowed: an integer >= 1"]),
    "epochs 0": (
        lambda c: study(c)["params"].update(epochs=0),
        f"studies.{S1}.params.epochs", ["0 is out of range", "allowed: an integer >= 1"]),
    "epochs 2.5": (
        lambda c: study(c)["params"].update(epochs=2.5),
        f"studies.{S1}.params.epochs", ["2.5", "allowed: an integer >= 1"]),
    "lr 0": (
        lambda c: study(c)["params"].update(lr=0),
        f"studies.{S1}.params.lr", ["0 is out of range", "allowed: a number > 0"]),
    "negative lr in a grid": (
        lambda c: study(c, S2)["grid"].update(lr=[0.01, -0.1]),
        f"studies.{S2}.grid.lr[1]", ["-0.1", "allowed: a number > 0"]),
    "lr NaN (YAML .nan slips past schema bounds)": (
        lambda c: study(c)["params"].update(lr=float("nan")),
        f"studies.{S1}.params.lr", ["nan", "not a finite number", "> 0"]),
    "lr inf": (
        lambda c: study(c, S2)["grid"].update(lr=[0.01, float("inf")]),
        f"studies.{S2}.grid.lr[1]", ["inf", "not a finite number"]),
    "momentum 1": (
        lambda c: study(c)["params"].update(momentum=1),
        f"studies.{S1}.params.momentum", ["1 is out of range", ">= 0 and < 1"]),
    "unknown dataset": (
        lambda c: study(c).update(dataset="imagenet"),
        f"studies.{S1}.dataset", ["'imagenet'", "allowed: one of mnist, cifar10, cifar10_grey"]),
    "unknown model": (
        lambda c: study(c).update(model="resnet50"),
        f"studies.{S1}.model", ["'resnet50'", "mnist_cnn", "mobilenet_v2"]),
    "unknown init": (
        lambda c: study(c)["grid"].update(init=["default", "he"]),
        f"studies.{S1}.grid.init[1]", ["'he'", "allowed: one of default, zeros, xavier"]),
    "empty grid": (
        lambda c: study(c).update(grid={}),
        f"studies.{S1}.grid", ["is empty", "batch_size", "lr"]),
    "empty list in grid": (
        lambda c: study(c)["grid"].update(init=[]),
        f"studies.{S1}.grid.init", ["is empty", "at least 1 value"]),
    "grid value not a list": (
        lambda c: study(c)["grid"].update(batch_size=64),
        f"studies.{S1}.grid.batch_size", ["64", "allowed: a list"]),
    "duplicate grid value (duplicate cell ids)": (
        lambda c: study(c)["grid"].update(batch_size=[64, 300, 64]),
        f"studies.{S1}.grid.batch_size", ["64 is listed twice", "duplicate cell ids", "each value once"]),
    "duplicate float spelled twice (0.1 and 0.10)": (
        lambda c: study(c, S2)["grid"].update(lr=[0.1, 0.10]),
        f"studies.{S2}.grid.lr", ["0.1 is listed twice", "duplicate cell ids"]),
    "batch larger than the training set": (
        lambda c: study(c, S2)["params"].update(batch_size=5000),
        f"studies.{S2}.params.batch_size", ["5000", "1200 training images", "at most 1200"]),
    "batch larger than train_subset": (
        lambda c: study(c)["grid"].update(batch_size=[64, 601]),
        f"studies.{S1}.grid.batch_size[1]", ["601", "train_subset 600", "at most 600"]),
    "target_acc 0": (
        lambda c: study(c, S3)["params"].update(target_acc=0),
        f"studies.{S3}.params.target_acc", ["0 is out of range", "> 0 and <= 1"]),
    "target_acc 1.5": (
        lambda c: study(c, S3)["params"].update(target_acc=1.5),
        f"studies.{S3}.params.target_acc", ["1.5 is out of range", "> 0 and <= 1"]),
    "param the model does not take (bn on lenet5)": (
        lambda c: study(c, S3)["params"].update(bn=True),
        f"studies.{S3}.params.bn", ["model 'lenet5' takes no 'bn'", "allowed:", "batch_size"]),
    "key both in params and grid": (
        lambda c: study(c)["params"].update(batch_size=64),
        f"studies.{S1}.params.batch_size", ["also in grid", "not both"]),
    "figure uses an unknown grid key": (
        lambda c: study(c)["figures"][0].update(hue="depth"),
        f"studies.{S1}.figures[0].hue", ["'depth'", "not a grid key", "allowed: batch_size, init"]),
    "figure uses an unknown metric": (
        lambda c: study(c)["figures"][0].update(metrics=["final_test_acc", "accuracy"]),
        f"studies.{S1}.figures[0].metrics", ["'accuracy'", "unknown metric", "final_test_acc"]),
    "figure of an unknown kind": (
        lambda c: study(c)["figures"][0].update(kind="pie"),
        f"studies.{S1}.figures[0].kind", ["'pie'", "curves", "bars"]),
    "device tpu": (
        lambda c: c.update(device="tpu"),
        "device", ["'tpu'", "allowed: one of auto, cuda, cpu"]),
    "seeds empty": (
        lambda c: study(c).update(seeds=[]),
        f"studies.{S1}.seeds", ["is empty", "at least 1 value"]),
    "seed listed twice": (
        lambda c: study(c).update(seeds=[0, 1, 0]),
        f"studies.{S1}.seeds", ["0 is listed twice"]),
    "negative seed": (
        lambda c: study(c).update(seeds=[-1]),
        f"studies.{S1}.seeds[0]", ["-1", "allowed: an integer >= 0"]),
    "missing required key": (
        lambda c: _del(study(c), "model"),
        f"studies.{S1}.model", ["missing", "required"]),
    "study name that is not a slug": (
        lambda c: c["studies"].update({"../escape": copy.deepcopy(study(c))}),
        "studies", ["'../escape'", "lower-case letters, digits and '_'"]),
    "studies left empty": (
        lambda c: c.update(studies=None),
        "studies", ["has no value", "allowed: a mapping"]),
    "study names a homework that homeworks does not declare": (
        lambda c: study(c).update(homework="007"),
        f"studies.{S1}.homework", ["'007'", "not declared under homeworks", "'000'", "'003'"]),
    "train_subset larger than the data set (would train on all of it)": (
        lambda c: study(c)["params"].update(train_subset=5000),
        f"studies.{S1}.params.train_subset", ["5000", "1200 training images", "at most 1200"]),
    "test_subset larger than the test set": (
        lambda c: study(c, S2)["params"].update(test_subset=401),
        f"studies.{S2}.params.test_subset", ["401", "400 test images", "at most 400"]),
    "only_studies names a study the config has not": (
        lambda c: c.update(only_studies=[S2, "s9_batch"]),
        "only_studies[1]", ["'s9_batch'", "not a study", S1, S2]),
    "boolean where a number belongs": (
        lambda c: study(c)["grid"].update(batch_size=[True]),
        f"studies.{S1}.grid.batch_size[0]", ["true is a boolean", "allowed: an integer >= 1"]),
}


def broken(mutate) -> dict:
    cfg = copy.deepcopy(SMOKE)
    mutate(cfg)
    return cfg


def error_lines(cfg: dict) -> list[str]:
    with pytest.raises(config.ConfigError) as err:
        config.validate(cfg)
    return str(err.value).splitlines()


def test_smoke_config_itself_is_valid():
    assert config.cells(config.validate(copy.deepcopy(SMOKE)))


def test_there_are_at_least_fifteen_distinct_bad_configs():
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_gives_one_line_naming_key_value_and_allowed(case):
    mutate, path, words = CASES[case]
    lines = error_lines(broken(mutate))
    assert len(lines) == 1, lines  # one mistake, one line
    line = lines[0]
    assert line.startswith(f"config: {path}: "), line
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    assert "\n" not in line and len(line) < 600


def test_several_mistakes_give_one_line_each():
    def two_mistakes(c):
        study(c)["params"].update(epochs=0)
        c.update(device="tpu")

    lines = error_lines(broken(two_mistakes))
    assert len(lines) == 2
    assert any(l.startswith("config: device:") for l in lines)
    assert any(l.startswith(f"config: studies.{S1}.params.epochs:") for l in lines)


def test_integral_float_is_accepted_as_an_integer():
    """YAML `epochs: 2.0` passes the schema's integer type; it must reach training as an int."""
    cfg = config.validate(broken(lambda c: study(c)["params"].update(epochs=2.0)))
    cell = config.cells(cfg, S1)[0]
    assert type(config.resolve(cfg, cell)["params"]["epochs"]) is int


def test_check_command_prints_one_line_and_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(broken(lambda c: c.update(device="tpu"))))
    assert cli(["check", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: config: device: 'tpu' is not a known value; allowed: one of auto, cuda, cpu"]


# --- through snakemake itself -------------------------------------------------------------------

def snakemake_env(tmp_path: Path) -> dict:
    return run_env(tmp_path / "stub-bin")


@pytest.mark.parametrize("case", [
    "wrong type: epochs 'ten'", "unknown top-level key", "batch larger than the training set", "device tpu",
])
def test_snakemake_refuses_bad_config_before_any_job(case, tmp_path):
    mutate, path, words = CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(broken(mutate)))
    expected = error_lines(broken(mutate))[0]
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
         "--cores", "1", "--configfile", str(bad)],
        env=snakemake_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert expected in proc.stderr.splitlines(), proc.stderr[-2000:]
    assert "Invalid configuration:" in proc.stderr
    assert "Traceback" not in proc.stderr
    # No job started: nothing but Snakemake's own bookkeeping folder in the working directory.
    assert not (work / "results").exists() and not (work / "logs").exists()
    assert not (work / "reports").exists() and not (work / "benchmarks").exists()
    assert {p.name for p in work.iterdir()} <= {".snakemake"}


# --- the claims and homework-tables files, checked against the config -----------------------------

CLAIMS = yaml.safe_load((REPO / "config" / "claims.yaml").read_text())
TABLES = yaml.safe_load((REPO / "config" / "homework.yaml").read_text())


def claim(doc: dict, claim_id: str) -> dict:
    return next(c for c in doc["claims"] if c["id"] == claim_id)


def table(doc: dict, table_id: str) -> dict:
    return next(t for t in doc["tables"] if t["id"] == table_id)


C1, C2, T1 = "s1-large-batch-overfits", "s1-batch64-best-accuracy", "hw000-batch-times"

# id -> (which file, mutation of a copy of it, key path after the file name, words the line must hold)
FILE_CASES = {
    "claim with a rule kind the evaluator does not know": (
        "claims", lambda d: claim(d, C1)["rule"].update(kind="compares"),
        f"claims[{C1}].rule.kind", ["'compares'", "not a known rule kind", "compare_each", "not_converged"]),
    "claim with an unknown metric": (
        "claims", lambda d: claim(d, C1)["rule"].update(metric="test_accuracy"),
        f"claims[{C1}].rule.metric", ["'test_accuracy'", "final_test_acc"]),
    "selector naming a parameter the study does not have": (
        "claims", lambda d: claim(d, C1)["rule"]["a"].update(depth=3),
        f"claims[{C1}].rule.a.depth", ["'depth'", "not a parameter of study s1_batch_init", "batch_size"]),
    "selector value no grid of the study holds": (
        "claims", lambda d: claim(d, C2)["rule"]["at"].update(batch_size=640),
        f"claims[{C2}].rule.at.batch_size", ["640", "not a value study s1_batch_init runs", "64", "1000"]),
    "claim about an undeclared homework": (
        "claims", lambda d: claim(d, C1).update(homework="009"),
        f"claims[{C1}].homework", ["'009'", "not declared under homeworks", "'000'"]),
    "claim about a study no config has": (
        "claims", lambda d: claim(d, C1).update(study="s1_batch_sizes"),
        f"claims[{C1}].study", ["'s1_batch_sizes'", "not a study", "s1_batch_init"]),
    "claim with a rule key missing": (
        "claims", lambda d: claim(d, C1)["rule"].pop("expect"),
        f"claims[{C1}].rule.expect", ["missing", "rule 'compare' requires it"]),
    "homework table with an unknown metric": (
        "homework_tables", lambda d: table(d, T1)["columns"][0].update(metric="wall_time"),
        f"tables[{T1}].columns[0].metric", ["'wall_time'", "not a known metric", "total_time_s"]),
    "homework table row with a value the grid never runs": (
        "homework_tables", lambda d: table(d, T1)["rows"][0].update(batch_size=63),
        f"tables[{T1}].rows[0].batch_size", ["63", "not a value study s1_batch_init runs"]),
    "homework table of an undeclared homework": (
        "homework_tables", lambda d: table(d, T1).update(homework="042"),
        f"tables[{T1}].homework", ["'042'", "not declared under homeworks"]),
}


def write_case(tmp_path: Path, case: str) -> tuple[dict, str]:
    """The smoke config pointing at a broken copy of one file; returns (config, that file's path)."""
    key, mutate, _, _ = FILE_CASES[case]
    doc = copy.deepcopy(CLAIMS if key == "claims" else TABLES)
    mutate(doc)
    path = tmp_path / f"{key}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return {**copy.deepcopy(SMOKE), key: str(path)}, str(path)


def gate_lines(cfg: dict) -> list[str]:
    with pytest.raises(config.ConfigError) as err:
        checks.check(cfg)
    return str(err.value).splitlines()


def test_shipped_claims_and_tables_pass_the_gate_for_every_shipped_config():
    for overlays in ([], [REPO / "config" / "quick.yaml"], [REPO / "config" / "smoke.yaml"]):
        checks.check(config.resolve_files(*overlays))  # raises on any mistake


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_bad_claims_or_tables_give_one_line_naming_key_value_and_allowed(case, tmp_path):
    cfg, path = write_case(tmp_path, case)
    _, _, where, words = FILE_CASES[case]
    lines = gate_lines(cfg)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: {where}: "), lines[0]
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


@pytest.mark.parametrize("key", ["claims", "homework_tables"])
def test_missing_claims_or_tables_file_is_one_line(key, tmp_path):
    lines = gate_lines({**copy.deepcopy(SMOKE), key: str(tmp_path / "gone.yaml")})
    assert lines == [l for l in lines if l.startswith(f"config: {key}: ")] and len(lines) == 1, lines
    assert "gone.yaml" in lines[0] and "does not exist" in lines[0] and "allowed:" in lines[0]


def test_claim_about_a_study_the_config_leaves_out_stays_allowed():
    """The report marks such claims 'not run'; only what no config can produce is refused."""
    cfg = copy.deepcopy(SMOKE)
    cfg["only_studies"] = [S2]
    checks.check(cfg)
    assert list(cfg["studies"]) == [S2]
    assert any(c["study"] == S1 for c in CLAIMS["claims"])  # ... and there are claims about S1


def test_claim_value_of_the_default_grid_stays_allowed_in_a_smaller_grid():
    """Smoke runs batch 64 and 300 only; a claim about batch 1000 (the default grid) is not a mistake."""
    assert 1000 not in SMOKE["studies"][S1]["grid"]["batch_size"]
    assert claim(CLAIMS, C1)["rule"]["a"]["batch_size"] == 1000
    checks.check(copy.deepcopy(SMOKE))


def test_check_command_covers_claims_and_tables(tmp_path, capsys):
    cfg, path = write_case(tmp_path, "claim with a rule kind the evaluator does not know")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"claims": path}))
    assert cli(["check", str(REPO / "config" / "smoke.yaml"), str(overlay)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: claims[{C1}].rule.kind: "), err
    assert cli(["check", str(REPO / "config" / "smoke.yaml")]) == 0
    smoke = config.load(REPO / "config" / "smoke.yaml")
    assert f"OK, {len(config.cells(smoke))} training cells in {len(smoke['studies'])} studies" in capsys.readouterr().out


def run_snakemake(tmp_path: Path, overlay: dict) -> tuple[subprocess.CompletedProcess, Path]:
    """Snakemake with the smoke overlay plus `overlay`, in an empty working directory."""
    work = tmp_path / "work"
    work.mkdir()
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(overlay))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
         "--cores", "1", "--configfile", str(REPO / "config" / "smoke.yaml"), str(extra)],
        env=snakemake_env(tmp_path), capture_output=True, text=True, timeout=120)
    return proc, work


def assert_refused_before_any_job(proc: subprocess.CompletedProcess, work: Path, expected: str) -> None:
    assert proc.returncode != 0
    assert expected in proc.stderr.splitlines(), proc.stderr[-2000:]
    assert "Invalid configuration:" in proc.stderr and "Traceback" not in proc.stderr
    assert {p.name for p in work.iterdir()} <= {".snakemake"}  # no job started


@pytest.mark.parametrize("case", [
    "claim with a rule kind the evaluator does not know", "selector naming a parameter the study does not have",
    "selector value no grid of the study holds", "homework table with an unknown metric",
])
def test_snakemake_refuses_bad_claims_or_tables_before_any_job(case, tmp_path):
    cfg, path = write_case(tmp_path, case)
    key = FILE_CASES[case][0]
    proc, work = run_snakemake(tmp_path, {key: path})
    assert_refused_before_any_job(proc, work, gate_lines(cfg)[0])


@pytest.mark.parametrize("overlay, starts", [
    ({"studies": {S1: {"homework": "007"}}}, f"config: studies.{S1}.homework: '007' is not declared"),
    ({"studies": {S1: {"params": {"train_subset": 5000}}}}, f"config: studies.{S1}.params.train_subset: 5000 "),
    ({"claims": "config/no-such-claims.yaml"}, "config: claims: 'config/no-such-claims.yaml' does not exist"),
    ({"homework_tables": "gone.yaml"}, "config: homework_tables: 'gone.yaml' does not exist"),
])
def test_snakemake_refuses_cross_reference_and_data_size_mistakes_before_any_job(overlay, starts, tmp_path):
    proc, work = run_snakemake(tmp_path, overlay)
    line = next((l for l in proc.stderr.splitlines() if l.startswith(starts)), None)
    assert line is not None, proc.stderr[-2000:]
    assert_refused_before_any_job(proc, work, line)
