"""A bundle from anyone (docs/reliability.md 12): every class of damaged or hostile bundle is refused
in one line naming the bundle, the member and what is wrong, and results/ and checkpoints/ are
byte-for-byte as they were. The bundle is the small synthetic one of `bundle_kit` (no training, no torch)."""
from __future__ import annotations

import json
import os
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from batchwise.results import bundles, merge, runcheck, unpack
from bundle_kit import (CONFIG, Member, checkout, edit_json, exported_members, member, snapshot, try_import,
                        write_members)

R0 = "results/t/batch_size=32/seed=0/"
R1 = "results/t/batch_size=32/seed=1/"
HOLDS = ("a bundle holds manifest.json; results/<study>/<setting>/seed=<n>/{metrics.json,history.csv,iterations.csv}; "
         "results/<study>/timing.json; checkpoints/<study>/<setting>/seed=<n>/{the same, state.pt}")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> list[Member]:
    return exported_members(tmp_path_factory.mktemp("base"))


@pytest.fixture
def root(tmp_path) -> Path:
    """A checkout that already holds results: an import that is refused must leave them as they are."""
    work = tmp_path / "work"
    (work / "results" / "t" / "batch_size=32" / "seed=0").mkdir(parents=True)
    (work / "results" / "t" / "batch_size=32" / "seed=0" / "notes.txt").write_text("mine\n")
    (work / "checkpoints" / "t").mkdir(parents=True)
    return work


def _set(ms, suffix, data):
    out = [replace(m) for m in ms]
    member(out, suffix).data = data
    return out


def _key(ms, suffix, key, value):
    return edit_json(ms, suffix, lambda d: d.__setitem__(key, value))


def _drop(ms, *suffixes):
    return [m for m in ms if not m.name.endswith(suffixes)]


def _swap_seed(ms):
    """Seed 0's metrics.json says seed 1 throughout (spec and cell too), but lies in seed=0/."""
    def edit(d):
        d["seed"] = d["spec"]["seed"] = 1
        d["cell"] = d["spec"]["cell"] = "batch_size=32_seed=1"
    return edit_json(ms, R0 + "metrics.json", edit)


def _text(ms, suffix, old: bytes, new: bytes):
    return _set(ms, suffix, member(ms, suffix).data.replace(old, new, 1))


# (case, damage, message after "bundle <case>.tar.xz: "): one per class of damage in issue 23
CASES = [
    ("manifest-not-json", lambda ms: _set(ms, "manifest.json", b"{not json"),
     "manifest.json: not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
    ("manifest-not-object", lambda ms: _set(ms, "manifest.json", b"[1, 2]"),
     "manifest.json: the document: [1, 2] is not of type 'object'"),
    ("manifest-not-utf8", lambda ms: _set(ms, "manifest.json", b'{"format": 1, "runs": [], "x": "\xff"}'),
     "manifest.json: not UTF-8 text (byte 32)"),
    ("manifest-key-type", lambda ms: _key(ms, "manifest.json", "runs", "all"),
     "manifest.json: runs: 'all' is not of type 'array'"),
    ("manifest-key-missing", lambda ms: edit_json(ms, "manifest.json", lambda d: d.pop("runs")),
     "manifest.json: the document: 'runs' is a required property"),
    ("metrics-not-json", lambda ms: _set(ms, R0 + "metrics.json", b'{"study": "t",'),
     R0 + "metrics.json: not JSON (Expecting property name enclosed in double quotes: line 1 column 15 (char 14))"),
    ("metrics-not-object", lambda ms: _set(ms, R0 + "metrics.json", b'"ok"'),
     R0 + "metrics.json: the document: 'ok' is not of type 'object'"),
    ("metrics-not-utf8", lambda ms: _text(ms, R0 + "metrics.json", b'"lab"', b'"l\xe4b"'),
     R0 + "metrics.json: not UTF-8 text (byte 2192)"),
    ("metrics-key-type", lambda ms: _key(ms, R0 + "metrics.json", "epochs_run", "3"),
     R0 + "metrics.json: epochs_run: '3' is not of type 'integer'"),
    ("metrics-key-missing", lambda ms: edit_json(ms, R0 + "metrics.json", lambda d: d.pop("final_test_acc")),
     R0 + "metrics.json: the document: 'final_test_acc' is a required property"),
    ("metrics-key-twice", lambda ms: _text(ms, R0 + "metrics.json", b'"seed": 0,', b'"seed": 0, "seed": 1,'),
     R0 + "metrics.json: not JSON (key 'seed' appears twice)"),
    ("accuracy-nan", lambda ms: _text(ms, R0 + "metrics.json", b'"final_test_acc": 0.8', b'"final_test_acc": NaN'),
     R0 + "metrics.json: not JSON (NaN is not a JSON number)"),
    ("accuracy-string", lambda ms: _key(ms, R0 + "metrics.json", "final_test_acc", "0.8"),
     R0 + "metrics.json: final_test_acc: '0.8' is not of type 'number', 'null'"),
    ("accuracy-negative", lambda ms: _key(ms, R0 + "metrics.json", "final_test_acc", -0.1),
     R0 + "metrics.json: final_test_acc: -0.1 is less than the minimum of 0"),
    ("accuracy-above-one", lambda ms: _key(ms, R0 + "metrics.json", "final_test_acc", 1.5),
     R0 + "metrics.json: final_test_acc: 1.5 is greater than the maximum of 1"),
    ("accuracy-null", lambda ms: _key(ms, R0 + "metrics.json", "final_test_acc", None),
     R0 + "metrics.json: final_test_acc is null in a run that did not diverge (status 'ok')"),
    ("loss-in-diverged-run", lambda ms: _key(ms, R1 + "metrics.json", "final_train_loss", 0.3),
     R1 + "metrics.json: final_train_loss 0.3 in a diverged run (its numbers are not measurements: null)"),
    ("loss-negative", lambda ms: _key(ms, R0 + "metrics.json", "final_train_loss", -1),
     R0 + "metrics.json: final_train_loss: -1 is less than the minimum of 0"),
    ("seed-not-integer", lambda ms: _key(ms, R0 + "metrics.json", "seed", 0.5),
     R0 + "metrics.json: seed: 0.5 is not of type 'integer'"),
    ("count-negative", lambda ms: _key(ms, R0 + "metrics.json", "steps_run", -60),
     R0 + "metrics.json: steps_run: -60 is less than the minimum of 0"),
    ("run-in-another-folder", _swap_seed,
     R0 + "metrics.json: records t/batch_size=32 seed=1, but lies in t/batch_size=32/seed=0"),
    ("no-history", lambda ms: _drop(ms, R0 + "history.csv"),
     R0 + "history.csv: missing; a finished run has metrics.json, history.csv and iterations.csv"),
    ("no-iterations", lambda ms: _drop(ms, R0 + "iterations.csv"),
     R0 + "iterations.csv: missing; a finished run has metrics.json, history.csv and iterations.csv"),
    ("history-row-missing", lambda ms: _set(ms, R0 + "history.csv",
                                            b"".join(member(ms, R0 + "history.csv").data.splitlines(True)[:-1])),
     R0 + "history.csv: 2 row(s), but metrics.json says epochs_run 3"),
    ("history-disagrees", lambda ms: _key(ms, R0 + "metrics.json", "final_train_acc", 0.5),
     R0 + "history.csv: last epoch's train_acc 0.8 is not metrics.json's final_train_acc 0.5"),
    ("iterations-row-missing", lambda ms: _set(ms, R0 + "iterations.csv",
                                               b"".join(member(ms, R0 + "iterations.csv").data.splitlines(True)[:-1])),
     R0 + "iterations.csv: 59 row(s), but 60 steps run, one kept in 1, make 60"),
    ("iterations-not-number", lambda ms: _text(ms, R0 + "iterations.csv", b"\n2,1,", b"\n2,1,x"),
     R0 + "iterations.csv: line 3, loss: 'x1.15' is not a number"),
    ("timing-not-json", lambda ms: _set(ms, "timing.json", b"\x00\x01junk"),
     "results/t/timing.json: not JSON (Expecting value: line 1 column 1 (char 0))"),
    ("timing-negative-burst",
     lambda ms: edit_json(ms, "timing.json", lambda d: d["settings"][0].__setitem__("step_s_bursts", [0.001, -1])),
     "results/t/timing.json: settings.0.step_s_bursts.1: -1 is less than the minimum of 0"),
    ("name-empty", lambda ms: ms + [Member("", b"x")], "member '': an empty name"),
    ("name-dot", lambda ms: ms + [Member(".", b"x")], "member '.': a name with an empty or '.' component"),
    ("name-too-long", lambda ms: ms + [Member("results/t/" + "a" * 300 + "/seed=0/metrics.json", b"{}")],
     f"member 'results/t/{'a' * 300}/seed=0/metrics.json': a name too long for a file system"),
    ("name-control-characters", lambda ms: ms + [Member("results/t/\x1b[2Jok\n/seed=0/metrics.json", b"{}")],
     "member 'results/t/\\x1b[2Jok\\x0a/seed=0/metrics.json': a name with control characters"),
    ("name-not-utf8", lambda ms: ms + [Member("results/t/\udcff/seed=0/metrics.json", b"{}")],
     "member 'results/t/\\udcff/seed=0/metrics.json': a name that is not UTF-8"),
    ("name-dotdot", lambda ms: ms + [Member("results/../../etc/x", b"x")], "member 'results/../../etc/x': a name with '..'"),
    ("name-absolute", lambda ms: ms + [Member("/tmp/x", b"x")], "member '/tmp/x': an absolute name"),
    ("name-unexpected", lambda ms: ms + [Member("results/t/notes.txt", b"x")],
     f"member 'results/t/notes.txt': not a file a bundle holds ({HOLDS})"),
    ("file-where-folder", lambda ms: ms + [Member("results/t/batch_size=32", b"x")],
     f"member 'results/t/batch_size=32': not a file a bundle holds ({HOLDS})"),
    ("state-in-results", lambda ms: ms + [Member(R0 + "state.pt", b"x")],
     f"member '{R0}state.pt': not a file a bundle holds ({HOLDS})"),
    ("symbolic-link", lambda ms: ms + [Member(R0[:-2] + "9/metrics.json", type=tarfile.SYMTYPE, linkname="/etc/passwd")],
     f"member '{R0[:-2]}9/metrics.json': a symbolic link; a bundle holds regular files only"),
    ("hard-link", lambda ms: ms + [Member(R0[:-2] + "9/metrics.json", type=tarfile.LNKTYPE, linkname="manifest.json")],
     f"member '{R0[:-2]}9/metrics.json': a hard link; a bundle holds regular files only"),
    ("device", lambda ms: ms + [Member("results/t/dev", type=tarfile.CHRTYPE)],
     "member 'results/t/dev': a character device; a bundle holds regular files only"),
    ("fifo", lambda ms: ms + [Member("results/t/fifo", type=tarfile.FIFOTYPE)],
     "member 'results/t/fifo': a fifo; a bundle holds regular files only"),
    ("date-before-1970", lambda ms: [replace(m, mtime=-2**40) if m.name == R0 + "metrics.json" else m for m in ms],
     f"member '{R0}metrics.json': modification time -1099511627776 is out of range (1970 to 2100)"),
    ("date-after-2100", lambda ms: [replace(m, mtime=2**40) if m.name == R0 + "metrics.json" else m for m in ms],
     f"member '{R0}metrics.json': modification time 1099511627776 is out of range (1970 to 2100)"),
    ("member-twice-different", lambda ms: ms + [replace(member(ms, R0 + "history.csv"), data=b"epoch\n")],
     f"member '{R0}history.csv' appears twice; a bundle holds each file once"),
    ("member-twice-same", lambda ms: ms + [replace(member(ms, R0 + "history.csv"))],
     f"member '{R0}history.csv' appears twice; a bundle holds each file once"),
    ("no-manifest", lambda ms: ms[1:],
     f"first member is '{R0}iterations.csv', not manifest.json; not made by `results export`"),
    ("manifest-lists-a-run-not-held", lambda ms: _drop(ms, R0 + "metrics.json", R0 + "history.csv", R0 + "iterations.csv"),
     "manifest.json lists the run 'results/t/batch_size=32/seed=0', which the archive does not hold; export the bundle again"),
    ("manifest-misses-a-run", lambda ms: edit_json(ms, "manifest.json", lambda d: d["runs"].pop(0)),
     "the archive holds the run 'results/t/batch_size=32/seed=0', which manifest.json does not list; export the bundle again"),
    ("manifest-checkpoint-count", lambda ms: _key(ms, "manifest.json", "checkpoints", 3),
     "manifest.json counts 3 checkpoint file(s), the archive holds 1"),
    ("seed-neither-finished-nor-unfinished",
     lambda ms: _drop(_key(ms, "manifest.json", "checkpoints", 1), "state.pt")
     + [Member("checkpoints/t/batch_size=64/seed=1/history.csv", b"epoch\n")],
     "checkpoints/t/batch_size=64/seed=1: neither a finished run (metrics.json) nor an unfinished one (state.pt)"),
]


@pytest.mark.parametrize("case,damage,message", CASES, ids=[c[0] for c in CASES])
def test_each_class_of_damage_is_refused_in_one_line_and_nothing_changes(base, root, tmp_path, case, damage, message):
    path = write_members(tmp_path / f"{case}.tar.xz", damage(base))
    before = snapshot(root)
    lines, _ = try_import([path], root)
    assert lines == [f"bundle {case}.tar.xz: {message}"]
    assert snapshot(root) == before


def test_the_undamaged_bundle_imports_whole(base, root, tmp_path):
    path = write_members(tmp_path / "whole.tar.xz", base)
    lines, outcome = try_import([path], root)
    assert lines == [] and outcome.checkpoints == 1 and len(outcome.imported) == 3
    got = snapshot(root)
    for m in base[1:]:
        assert got[m.name] == m.data, m.name
    assert (root / R0 / "metrics.json").stat().st_mtime == member(base, R0 + "metrics.json").mtime


def test_the_same_run_in_two_bundles_finished_at_the_earlier_time(base, root, tmp_path):
    """A run exported twice (copies with other file times) gets its earlier time, in either import order,
    whether the bundles are imported one by one or together."""
    earlier = [replace(m, mtime=m.mtime - 86400) if m.name.endswith("metrics.json") else m for m in base]
    late = write_members(tmp_path / "late.tar.xz", base)
    early = write_members(tmp_path / "early.tar.xz", earlier)
    for together in (False, True):  # one bundle per import, or both in one (as publish rebuilds)
        for order in ([late, early], [early, late]):
            work = tmp_path / f"work-{together}-{order[0].name[:-7]}"
            work.mkdir()
            for paths in [order] if together else [[p] for p in order]:
                lines, _ = try_import(paths, work)
                assert lines == []
            assert (work / R0 / "metrics.json").stat().st_mtime == member(base, R0 + "metrics.json").mtime - 86400


def test_runs_of_other_parameters_are_refused_per_cell(base, root, tmp_path):
    damaged = edit_json(base, R0 + "metrics.json", lambda d: d["spec"]["params"].__setitem__("lr", 0.5))
    path = write_members(tmp_path / "lr.tar.xz", damaged)
    before = snapshot(root)
    lines, _ = try_import([path], root)
    assert lines == ["import refused (nothing written): t/batch_size=32: run parameters differ from this config's: "
                     "lr 0.5 in the bundle, 0.01 here"]
    assert snapshot(root) == before


def test_broken_compression_and_parts_are_refused(base, root, tmp_path):
    whole = write_members(tmp_path / "src" / "b.tar.xz", base).read_bytes()
    before = snapshot(root)

    def refused(paths: list[Path], message: str) -> None:
        lines, _ = try_import(paths, root)
        assert lines == [message]
        assert snapshot(root) == before

    cut = tmp_path / "cut" / "b.tar.xz"
    cut.parent.mkdir()
    cut.write_bytes(whole[: len(whole) // 2])
    refused([cut], "bundle b.tar.xz: unreadable (Compressed file ended before the end-of-stream marker was reached); "
                   "was every part copied whole?")
    flip = tmp_path / "flip" / "b.tar.xz"
    flip.parent.mkdir()
    flip.write_bytes(whole[:200] + bytes([whole[200] ^ 0xFF]) + whole[201:])
    refused([flip], "bundle b.tar.xz: unreadable (Corrupt input data); was every part copied whole?")
    split, half = tmp_path / "split", len(whole) // 2
    split.mkdir()
    (split / "b.tar.xz.part-1-of-2").write_bytes(whole[:half])
    (split / "b.tar.xz.part-2-of-2").write_bytes(whole[half:])
    (tmp_path / "elsewhere").mkdir()
    assert try_import([split], tmp_path / "elsewhere")[0] == []  # the two parts, whole, import
    refused([split / "b.tar.xz.part-2-of-2"], "bundle b.tar.xz: part(s) 1 of 2 missing; name every part (or their folder)")
    (split / "b.tar.xz.part-3-of-3").write_bytes(b"stale")
    refused([split], "bundle b.tar.xz: its parts disagree on their count (of 2, of 3); a stale part of an earlier "
                     "export lies beside them: remove it")
    (split / "b.tar.xz.part-3-of-3").unlink()
    (split / "b.tar.xz").write_bytes(whole)
    refused([split], "bundle b.tar.xz: both whole and in parts here; a stale export lies beside the new one: "
                     "remove the older")
    (split / "b.tar.xz").unlink()
    # A part of another export under the right name: its stream does not continue this one's.
    foreign = write_members(tmp_path / "x.tar.xz", _key(base, "manifest.json", "source", "elsewhere")).read_bytes()
    (split / "b.tar.xz.part-2-of-2").write_bytes(foreign[half:])
    refused([split], "bundle b.tar.xz: unreadable (Corrupt input data); was every part copied whole?")


def test_data_after_the_archive_end_is_refused(base, root, tmp_path):
    before = snapshot(root)
    lines, _ = try_import([write_members(tmp_path / "tail.tar.xz", base, tail=b"\0" * 512 + b"more")], root)
    assert lines == ["bundle tail.tar.xz: data after the end of the archive; a stale or foreign part? export the "
                     "bundle again"]
    assert snapshot(root) == before
    assert try_import([write_members(tmp_path / "pad.tar.xz", base, tail=b"\0" * 4096)], root)[0] == []


def test_size_caps_are_checked_before_the_bytes_are_read(base, root, tmp_path):
    """A few kB of compressed zeros that claim 64 MiB: refused from the header, nothing unpacked."""
    bomb = write_members(tmp_path / "bomb.tar.xz",
                         base + [Member("checkpoints/t/batch_size=64/seed=1/history.csv", bytes(64 * 2**20))], preset=1)
    assert bomb.stat().st_size < 64 * 1024
    before = snapshot(root)
    small = unpack.Limits(member_bytes=2**20, bundle_bytes=4 * 2**20)
    lines, _ = try_import([bomb], root, small)
    assert lines == ["bundle bomb.tar.xz: member 'checkpoints/t/batch_size=64/seed=1/history.csv': 67108864 bytes, "
                     "over the cap of 1048576 bytes per member (--max-member-mib)"]
    lines, _ = try_import([write_members(tmp_path / "big.tar.xz", base)], root, unpack.Limits(bundle_bytes=10_000))
    assert lines == ["bundle big.tar.xz: over 10000 bytes unpacked, the cap per bundle (--max-bundle-mib)"]
    assert snapshot(root) == before
    lines, _ = try_import([bomb], root)  # the default caps: 512 MiB per member, 16 MiB for a text file
    assert lines == ["bundle bomb.tar.xz: member 'checkpoints/t/batch_size=64/seed=1/history.csv': 67108864 bytes, "
                     "over the cap of 16777216 bytes for a run's or timing text file"]
    assert snapshot(root) == before


def test_text_from_a_bundle_is_printed_with_control_characters_escaped(base, root, tmp_path):
    """A timing device is bundle text: it never reaches the terminal raw."""
    assert bundles.shown("ok\x1b[31m\r\nforged\u202e") == "ok\\x1b[31m\\x0d\\x0aforged\\u202e"
    damaged = _key(base, "manifest.json", "timing", {"t": {"device": "GPU\x1b[2J\nerror: forged"}})
    lines, outcome = try_import([write_members(tmp_path / "esc.tar.xz", damaged)], root)
    assert lines == []
    assert "timing: t: timing from esc.tar.xz (GPU\\x1b[2J\\x0aerror: forged)" in outcome.lines()
    assert all(bundles.shown(line) == line for line in outcome.lines())


def test_unknown_studies_and_settings_are_skipped_and_named(base, root, tmp_path):
    overlay = {**CONFIG, "studies": {"t": {**CONFIG["studies"]["t"], "seeds": [0]}}}
    path = write_members(tmp_path / "s.tar.xz", base)
    outcome = merge.plan_and_import([path], overlay, root=root)
    assert outcome.skipped == [
        "t/batch_size=32 seed=1 (s.tar.xz): seed 1 is not one of this config's seeds of t",
        "checkpoints/t/batch_size=64/seed=1/state.pt (s.tar.xz): that cell finished here; its checkpoint is of no use",
    ]
    assert outcome.checkpoints == 0 and (root / "results" / "t" / "batch_size=64" / "seed=0" / "metrics.json").exists()


def test_export_refuses_a_bad_run_where_it_was_made(tmp_path):
    src = checkout(tmp_path / "src")
    history = src / R0 / "history.csv"
    history.write_text(history.read_text().rsplit("\n", 2)[0] + "\n")  # the last epoch's row lost
    with pytest.raises(bundles.BundleError) as err:
        bundles.export(tmp_path / "out" / "b", root=src)
    assert str(err.value) == (f"export: {src / R0}/history.csv: 2 row(s), but metrics.json says epochs_run 3; every "
                              f"import would refuse this run: fix or remove it (nothing written)")
    assert not (tmp_path / "out").exists()


def test_export_packs_only_what_makes_a_seed_and_names_the_rest(tmp_path):
    src = checkout(tmp_path / "src")
    aside = src / "checkpoints" / "t" / "batch_size=64" / "seed=1" / "state.pt.unloadable"
    aside.write_bytes(b"x")
    files, doc = bundles.export(tmp_path / "out" / "b", root=src, with_checkpoints=True)
    assert doc["skipped"] == ["checkpoints/t/batch_size=64/seed=1/state.pt.unloadable"]
    assert doc["checkpoints"] == 1
    names = [info.name for info, _ in unpack.members(files)]
    assert names[0] == "manifest.json" and len(names) == len(set(names)) == 1 + 3 * 3 + 1 + 1


def test_publish_refuses_a_damaged_bundle_and_adds_nothing(base, tmp_path):
    from batchwise.results import publish

    folder = tmp_path / "full"
    folder.mkdir()
    bad = write_members(tmp_path / "new" / "bad.tar.xz", _drop(base, R0 + "history.csv"))
    with pytest.raises(bundles.BundleError) as err:
        publish.publish([bad], source="test", folder=folder)
    assert str(err.value) == f"bundle bad.tar.xz: {R0}history.csv: missing; a finished run has metrics.json, " \
                             f"history.csv and iterations.csv"
    assert snapshot(folder) == {}


def test_published_bundles_pass_the_run_check(tmp_path):
    """Real data: the smallest published bundle, unpacked and checked member by member."""
    from conftest import REPO

    parts = [REPO / "docs" / "results" / "full" / "bundles" / "cpu-2026-11-30-x2.tar.xz"]
    b = unpack.read_bundle(parts, tmp_path / "x2")
    assert len(b.runs) == len(b.manifest["runs"]) == 60
    assert {m["status"] for m in b.runs.values()} == {"ok", "diverged"}


def test_run_check_rules_on_hand_made_metrics():
    m = json.loads(runcheck_example())
    assert runcheck.check_metrics(m)["seed"] == 0
    for key, value, problem in [
        ("diverged", True, "status 'ok' but diverged True"),
        ("epochs_run", 4, "epochs_run 4 exceeds the spec's epochs 3"),
        ("steps_run", 40, "steps_run 40 does not fit 3 epoch(s) of 20 steps"),
        ("steps_per_epoch", 10, "steps_run 60 does not fit 3 epoch(s) of 10 steps"),
        ("cell", "x", "cell 'x' is not 'batch_size=32_seed=0'"),
    ]:
        with pytest.raises(runcheck.RunError) as err:
            runcheck.check_metrics({**m, key: value})
        assert err.value.problem == problem


def runcheck_example() -> str:
    from bundle_kit import run_files
    from batchwise import config

    return run_files(config.settings(CONFIG)[0], 0)["metrics.json"].decode()


def test_the_ledger_counts_what_was_imported(tmp_path):
    """A run that ran without its data set is listed in its bundle's manifest but never imported: the
    ledger does not count it (2 runs of 4 done: batch 32's seeds; batch 64 seed 0 is no-data here)."""
    from batchwise.results import publish

    src = checkout(tmp_path / "src")
    shutil.rmtree(src / "checkpoints")
    metrics = json.loads((src / R0 / "metrics.json").read_text())
    no_data = src / "results" / "t" / "batch_size=64" / "seed=0"
    no_data.mkdir(parents=True)
    spec = {**metrics["spec"], "params": {**metrics["spec"]["params"], "batch_size": 64}, "setting": "batch_size=64",
            "cell": "batch_size=64_seed=0"}
    (no_data / "metrics.json").write_text(json.dumps({
        "schema": 2, "study": "t", "cell": "batch_size=64_seed=0", "setting": "batch_size=64", "seed": 0, "spec": spec,
        "data": {"name": "mnist"}, "status": "no-data", "reason": "no files"}))
    (no_data / "history.csv").write_text("epoch\n")
    (no_data / "iterations.csv").write_text("step,epoch,loss\n")
    folder = tmp_path / "full"
    (folder / "bundles").mkdir(parents=True)
    files, doc = bundles.export(folder / "bundles" / "b", root=src)
    (folder / "bundles" / "sources.json").write_text('{"b.tar.xz": {"source": "lab"}}')
    assert len(doc["runs"]) == 2  # export leaves no-data runs out; a bundle made elsewhere may list them
    doc["runs"].append({**doc["runs"][0], "path": "results/t/batch_size=64/seed=0", "setting": "batch_size=64",
                        "seed": 0, "status": "no-data"})
    members = [Member(info.name, data or b"", int(info.mtime)) for info, data in unpack.members(files)]
    members[0].data = json.dumps(doc).encode()
    members += [Member(f"results/t/batch_size=64/seed=0/{f}", (no_data / f).read_bytes()) for f in runcheck.RUN_FILES]
    write_members(files[0], members)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outcome = merge.plan_and_import([folder / "bundles"], CONFIG, root=scratch)
    assert outcome.skipped == ["t/batch_size=64 seed=0 (b.tar.xz): it ran without its data set (no-data)"]
    lines = publish.ledger(CONFIG, folder, outcome)
    assert lines[0] == "**2 of 4 runs done.**\n"
    assert lines[3].startswith("| t | 2 of 4 | Test CPU | ") and "`b.tar.xz` (lab)" in lines[3]


def _times(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_importing_runs_already_here_leaves_every_file_untouched(tmp_path):
    """Bytes and nanosecond file times: the checkout that trained the runs imports its own bundle (whose
    times lost their nanoseconds), and a second checkout imports the same bundle twice."""
    src = checkout(tmp_path / "src")
    for i, path in enumerate(sorted(src.rglob("metrics.json"))):
        stamp = 1764547200_123456789 + i * 1_000_000_007   # nanoseconds no float keeps
        os.utime(path, ns=(stamp, stamp))
    files, _ = bundles.export(tmp_path / "out" / "b", root=src, with_checkpoints=True, source="synthetic")
    before = _times(src)
    lines, outcome = try_import(files, src)
    assert lines == [] and outcome.identical == 3
    assert _times(src) == before
    other = tmp_path / "other"
    other.mkdir()
    assert try_import(files, other)[0] == []
    first = _times(other)
    lines, outcome = try_import(files, other)
    assert lines == [] and outcome.identical == 3 and outcome.imported == []
    assert _times(other) == first


def test_the_newest_checkpoint_of_a_seed_wins_in_any_order(base, tmp_path):
    """An unfinished seed exported twice (its state.pt later in training the second time): the later state
    is kept, whichever bundle comes first and whether the earlier one was imported before."""
    state = "checkpoints/t/batch_size=64/seed=1/state.pt"
    later = [replace(m, data=b"state after more epochs", mtime=m.mtime + 3600) if m.name.endswith(state) else m
             for m in base]
    early = write_members(tmp_path / "a-early.tar.xz", base)
    late = write_members(tmp_path / "b-late.tar.xz", later)
    for i, batches in enumerate(([[early, late]], [[late, early]], [[early], [late]], [[late], [early]])):
        work = tmp_path / f"work{i}"
        work.mkdir()
        for paths in batches:
            assert try_import(paths, work)[0] == []
        assert (work / state).read_bytes() == b"state after more epochs", batches
