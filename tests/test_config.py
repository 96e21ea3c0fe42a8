"""Grid expansion, cell ids and the resolved spec of a cell."""
import copy
import re

import pytest
import yaml

from batchwise import config
from conftest import REPO


@pytest.fixture()
def default():
    return config.load(REPO / "config" / "config.yaml")


def test_default_config_expands_to_the_expected_cells(default):
    cells = config.cells(default)
    expected = sum(
        len(spec["seeds"]) * __import__("math").prod(len(v) for v in spec["grid"].values())
        for spec in default["studies"].values())
    assert len(cells) == expected == 427  # 126 homework runs, 301 of the extension studies
    assert len({(c.study, c.id) for c in cells}) == len(cells)


def test_cell_ids_are_readable_slugs(default):
    ids = [c.id for c in config.cells(default, "s2_bn_lr_mlp")]
    assert "bn=true_lr=0.1_seed=0" in ids
    assert "bn=false_lr=0.7_seed=4" in ids
    assert all(config.SLUG_RE.match(i) for c in config.cells(default) for i in (c.id,))


def test_resolve_merges_defaults_params_and_grid(default):
    setting = config.setting_by_id(default, "s2_bn_lr_cnn", "bn=true_lr=0.5")
    spec = config.resolve_setting(default, setting)
    assert spec["params"]["bn"] is True and spec["params"]["lr"] == 0.5
    assert spec["params"]["momentum"] == 0.01 and spec["params"]["weight_decay"] == 0.001
    assert spec["seeds"] == [0, 1, 2, 3, 4] and spec["model"] == "cnn2" and spec["dataset"] == "mnist"
    assert spec["params"]["eval_batch_size"] == config.DEFAULT_PARAMS["eval_batch_size"]


def test_adding_a_grid_value_needs_no_code(default):
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw["studies"]["s2_bn_lr_mlp"]["grid"]["lr"].append(0.3)
    cfg = config.validate(copy.deepcopy(raw))
    assert len(config.cells(cfg, "s2_bn_lr_mlp")) == 2 * 4 * 5


def test_unknown_cell_is_a_config_error(default):
    with pytest.raises(config.ConfigError, match="no cell"):
        config.setting_by_id(default, "s1_batch_init", "batch_size=7")


@pytest.mark.parametrize("name", ["config.yaml", "quick.yaml", "smoke.yaml"])
def test_shipped_configs_are_valid(name):
    path = REPO / "config" / name
    if not path.exists():
        pytest.skip(f"{name} not present")
    assert config.cells(config.load(path))


# --- overlays: quick.yaml and smoke.yaml say only what differs from config.yaml --------------------

OVERLAYS = ["quick.yaml", "smoke.yaml"]
BASE_RAW = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def texts(doc: dict) -> list[str]:
    """Every caption, our_choices text and title a config file writes."""
    out = []
    for spec in (doc.get("studies") or {}).values():
        spec = spec or {}
        out += [spec["title"]] if "title" in spec else []
        out += list((spec.get("our_choices") or {}).values())
        out += [f["caption"] for f in spec.get("figures") or [] if "caption" in f]
    return out


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_resolves_to_a_valid_config_covering_every_study(name):
    from batchwise import checks

    cfg = checks.check(config.resolve_files(REPO / "config" / name))
    assert list(cfg["studies"]) == list(BASE_RAW["studies"])
    for study, spec in cfg["studies"].items():
        base = BASE_RAW["studies"][study]
        assert spec["title"] == base["title"] and spec.get("our_choices", {}) == base.get("our_choices", {})
        assert config.cells(cfg, study)


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_reduces_every_study_explicitly(name):
    """A study added to config.yaml must be reduced (or set to null) in each overlay, or quick and
    smoke would run it at full size."""
    raw = yaml.safe_load((REPO / "config" / name).read_text())
    assert set(raw["studies"]) == set(BASE_RAW["studies"])
    for study, spec in raw["studies"].items():
        assert spec is None or spec["seeds"] == [0], study


def test_no_caption_choice_or_title_is_written_in_two_files():
    seen: dict[str, str] = {}
    for name in ["config.yaml", *OVERLAYS]:
        for text in set(texts(yaml.safe_load((REPO / "config" / name).read_text()))):
            assert text not in seen, f"{text[:60]!r} is in {seen.get(text)} and {name}"
            seen[text] = name
    assert len(seen) > 20


def test_a_users_overlay_is_a_few_lines_merged_like_snakemake(tmp_path):
    """The README's example: the default config, but 2 seeds and only S2."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("only_studies: [s2_bn_lr_mlp, s2_bn_lr_cnn]\n"
                    "studies:\n"
                    "  s2_bn_lr_mlp: {seeds: [0, 1]}\n"
                    "  s2_bn_lr_cnn: {seeds: [0, 1]}\n")
    cfg = config.load(mine)
    assert list(cfg["studies"]) == ["s2_bn_lr_mlp", "s2_bn_lr_cnn"]
    assert len(config.cells(cfg)) == 2 * 6 * 2
    assert cfg["studies"]["s2_bn_lr_mlp"]["grid"] == BASE_RAW["studies"]["s2_bn_lr_mlp"]["grid"]
    # Several overlays merge in order; null drops a study; lists replace, mappings merge.
    later = tmp_path / "later.yaml"
    later.write_text("studies: {s2_bn_lr_cnn: null, s2_bn_lr_mlp: {grid: {lr: [0.1]}}}\n")
    cfg = config.load(mine, later, overrides={"device": "cpu"})
    assert list(cfg["studies"]) == ["s2_bn_lr_mlp"] and cfg["device"] == "cpu"
    assert cfg["studies"]["s2_bn_lr_mlp"]["grid"] == {"bn": [False, True], "lr": [0.1]}


def test_snakemake_resolves_overlays_as_load_does_and_records_the_result(tmp_path):
    """`--configfile` is merged onto config/config.yaml, grid order (hence cell ids) kept; the run
    records the resolved config in results/config.yaml."""
    import subprocess

    from conftest import run_env, snakemake_cmd

    mine = tmp_path / "mine.yaml"
    mine.write_text("only_studies: [s2_bn_lr_cnn]\nstudies: {s2_bn_lr_cnn: {seeds: [0, 1], grid: {lr: [0.5]}}}\n")
    work = tmp_path / "work"
    proc = subprocess.run(snakemake_cmd(work, "results/config.yaml", "--cores", "1", "--configfile",
                                        str(REPO / "config" / "smoke.yaml"), str(mine)),
                          env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recorded = yaml.safe_load((work / "results" / "config.yaml").read_text())
    assert recorded == config.load(REPO / "config" / "smoke.yaml", mine)
    assert [c.id for c in config.cells(recorded)] == ["bn=false_lr=0.5_seed=0", "bn=false_lr=0.5_seed=1",
                                                       "bn=true_lr=0.5_seed=0", "bn=true_lr=0.5_seed=1"]


# --- CPU only: the default config's training time, measured here, before the first job --------------

def test_step_time_interpolates_between_measured_batches_and_extrapolates_per_example():
    from batchwise.speed import estimate

    measured = {16: 0.002, 512: 0.034}
    assert estimate._step_s(measured, 16) == 0.002 and estimate._step_s(measured, 512) == 0.034
    assert abs(estimate._step_s(measured, 264) - 0.018) < 1e-12
    assert abs(estimate._step_s(measured, 4096) - 0.034 * 8) < 1e-12


def test_estimated_evaluation_is_timed_after_one_untimed_batch(monkeypatch):
    """A run builds its evaluation kernels once and evaluates hundreds of times: the estimate times the
    evaluation warm, after one batch at the spec's eval_batch_size, over the whole timing set."""
    from batchwise.engine import train
    from batchwise.speed import estimate

    sizes, real = [], train.evaluate
    monkeypatch.setattr(train, "evaluate", lambda model, x, *a: sizes.append(len(x)) or real(model, x, *a))
    spec = config.resolve(config.load(), next(c for c in config.cells(config.load()) if c.study == "s2_bn_lr_mlp"))
    spec = {**spec, "params": {**spec["params"], "eval_batch_size": 50}}
    times = estimate.engine_times(spec, steps=1, eval_images=200)
    assert sizes[0] == 50 and len(sizes) >= 2 and set(sizes[1:]) == {200}
    assert times["eval_s_per_image"] > 0


def test_small_configs_are_not_estimated_and_the_default_one_is_measured():
    from batchwise.speed import estimate

    smoke = config.load(REPO / "config" / "smoke.yaml")
    assert estimate.cpu_warning(smoke, config.cells(smoke), cores=2) is None  # nothing measured
    default = config.load()
    few = [c for c in config.cells(default) if c.study == "s2_bn_lr_mlp"]
    few = few * (estimate.MIN_EXAMPLES // estimate.examples(default, few) + 1)
    note = estimate.cpu_warning({**default, "device": "cpu"}, few, cores=2)
    assert note and "make quick" in note and "ms at batch 64" in note
    hours = float(re.search(r"about ([\d.]+) (days|hours|minutes)", note).group(1))
    assert hours > 0


def test_cpu_only_default_run_says_how_long_before_the_first_job(tmp_path):
    """Plain `snakemake` with the default config on a machine without a GPU: the estimate comes before
    the first job starts, and the run goes on (here: one cheap job, a data set that is not there)."""
    import subprocess

    import torch

    from conftest import run_env, snakemake_cmd

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: no CPU estimate to show")
    (tmp_path / "empty").mkdir()
    proc = subprocess.run(snakemake_cmd(tmp_path / "work", "results/data/mnist.npz", "--cores", "2", "--config",
                                        f"data_dir={tmp_path / 'empty'}", "download=False"),
                          env=run_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    assert "No GPU: the " in err and "make quick" in err and "Measured per step here: " in err, err[-3000:]
    assert err.index("No GPU: the ") < err.index("Preparing data set mnist")
