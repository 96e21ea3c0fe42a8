"""The generated test of issue 23: a seeded mutator damages the small synthetic bundle of `bundle_kit`
(flips, truncates, retypes and drops fields, rows and members; renames, repeats and reorders members;
breaks the compressed stream) and imports each of CASES bundles. Only two outcomes exist: refused in
one line with the checkout unchanged, or imported, every imported run valid (`runcheck.read_run`),
byte-identical to the bundle's files, and aggregated by `aggregate_study` without error. Same seed, same cases: a failure names its case to rerun."""
from __future__ import annotations

import json
import random
import shutil
import tarfile
from dataclasses import replace

import pytest

import pandas as pd

from batchwise.results import aggregate, bundles, runcheck
from bundle_kit import Member, exported_members, snapshot, try_import, write_members

CASES = 300
SEED = 23
VALUES = [None, -1, 0, 1, 2, 0.5, 1.5, -0.0, 1e300, 2**70, "", "x", "0.8", [], [1], {}, {"a": 1}, True, False]
NAMES = ["", ".", "..", "/abs", "results", "results/t", "results/t/batch_size=32", "results/t/../x",
         "results/t/batch_size=32/seed=0/state.pt", "results/t/batch_size=32/seed=-1/metrics.json",
         "results/T/batch_size=32/seed=0/metrics.json", "results/t/batch_size=16/seed=0/metrics.json",
         "results/t/batch_size=32/seed=7/metrics.json", "checkpoints/t/batch_size=32/seed=0/history.csv",
         "results/u/timing.json", "results/t/x\x1b[1m/seed=0/metrics.json", "results/t/" + "b" * 256 + "/seed=0/x",
         "manifest.json", "results/t/batch_size=32/seed=0/metrics.json"]
TYPES = [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.CONTTYPE]


def _paths(doc, prefix=()):
    """Every (container, key) in a JSON document, for the field mutations."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield doc, k
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield doc, i
            yield from _paths(v, prefix + (i,))


def _doc(m: Member):
    """The member's JSON, or None where an earlier damage already broke it."""
    try:
        return json.loads(m.data)
    except ValueError:
        return None


def mutate_json(rng: random.Random, m: Member) -> None:
    doc = _doc(m)
    if not isinstance(doc, (dict, list)) or not doc:
        return
    container, key = rng.choice(list(_paths(doc)))
    if isinstance(container, dict) and rng.random() < 0.25:
        del container[key]
    else:
        container[key] = rng.choice(VALUES)
    text = json.dumps(doc, indent=1)
    m.data = (text.replace("1e+300", "NaN", 1) if rng.random() < 0.2 else text).encode()


def mutate_csv(rng: random.Random, m: Member) -> None:
    lines = m.data.decode("utf-8", "surrogateescape").splitlines(keepends=True)
    i = rng.randrange(len(lines))
    how = rng.randrange(4)
    if how == 0:
        del lines[i]
    elif how == 1:
        lines.insert(i, lines[i])
    else:
        fields = lines[i].rstrip("\n").split(",")
        fields[rng.randrange(len(fields))] = rng.choice(["", "x", "nan", "-1", "2", "1e999", "0.5", '"'])
        lines[i] = ",".join(fields) + ("\n" if how == 2 else "")
    m.data = "".join(lines).encode("utf-8", "surrogateescape")


def mutate(rng: random.Random, members: list[Member]) -> list[Member]:
    """One to three random damages (or harmless edits) of the members."""
    ms = [replace(m) for m in members]
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(11)
        m = rng.choice(ms) if ms else None
        if m is None:
            break
        if op == 0 and m.name.endswith(".json"):
            mutate_json(rng, m)
        elif op == 1 and m.name.endswith(".csv") and m.data:
            mutate_csv(rng, m)
        elif op == 2 and m.data:
            i = rng.randrange(len(m.data))
            m.data = m.data[:i] + bytes([m.data[i] ^ rng.randint(1, 255)]) + m.data[i + 1:]
        elif op == 3:
            m.data = m.data[:rng.randrange(len(m.data) + 1)]
        elif op == 4:
            ms.remove(m)
        elif op == 5:
            ms.insert(rng.randrange(len(ms) + 1), replace(m, data=m.data if rng.random() < 0.5 else m.data[::-1]))
        elif op == 6:
            m.name = rng.choice(NAMES)
        elif op == 7:
            m.type, m.linkname, m.data = rng.choice(TYPES), "manifest.json", b""
        elif op == 8:
            m.mtime = rng.choice([-1, 0, 2**33, 4102444800, 4102444799, 1])
        elif op == 9:
            rng.shuffle(ms)
        else:  # harmless: bundle text that no check reads, or a loss in the middle of a run
            if m.name == "manifest.json":
                mutate_json_field(m, "source", rng.choice(["", "elsewhere", "\x1b[31mred"]))
            elif m.name.endswith("iterations.csv"):
                m.data = m.data.replace(b"\n3,1,", b"\n3,1,0.123", 1)
    return ms


def mutate_json_field(m: Member, key: str, value) -> None:
    doc = _doc(m)
    if not isinstance(doc, dict):
        return
    doc[key] = value
    m.data = json.dumps(doc).encode()


def archive_runs(members: list[Member]) -> dict[str, dict[str, bytes]]:
    """The bundle's files by '<study>/<setting>/seed=<n>' (whether under results/ or checkpoints/)."""
    out: dict[str, dict[str, bytes]] = {}
    for m in members:
        parts = m.name.split("/")
        if len(parts) == 5 and parts[0] in ("results", "checkpoints"):
            out.setdefault("/".join(parts[1:4]), {})[parts[4]] = m.data
    return out


def test_damaged_bundles_are_refused_whole_or_imported_valid(tmp_path):
    base = exported_members(tmp_path / "base")
    rng = random.Random(SEED)
    root = tmp_path / "work"
    counts = {"refused": 0, "imported": 0}
    for case in range(CASES):
        if root.exists():
            shutil.rmtree(root)
        (root / "results").mkdir(parents=True)
        (root / "results" / "notes.txt").write_text("mine\n")
        before = snapshot(root)
        members = mutate(rng, base)
        path = write_members(tmp_path / "cases" / f"case-{case}.tar.xz", members)
        raw = path.read_bytes()
        if rng.random() < 0.05:  # the compressed stream itself
            i = rng.randrange(len(raw))
            path.write_bytes(raw[:i] if rng.random() < 0.5 else raw[:i] + bytes([raw[i] ^ 0x55]) + raw[i + 1:])
        try:
            lines, outcome = try_import([path], root)
        except Exception as exc:  # noqa: BLE001 - a traceback is the failure this test looks for
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}")
        if lines:
            counts["refused"] += 1
            assert len(lines) == 1, (case, lines)
            assert lines[0].startswith((f"bundle case-{case}.tar.xz: ", "import refused (nothing written): ")), (case, lines)
            assert bundles.shown(lines[0]) == lines[0], (case, lines)
            assert snapshot(root) == before, (case, lines)
            continue
        counts["imported"] += 1
        held = archive_runs(members)
        assert not [p for p in snapshot(root) if p.startswith(".importing")], case
        for (study, setting, seed), (_, folder) in outcome.sources.items():
            m = runcheck.read_run(folder, (study, setting, seed))
            assert m["status"] in ("ok", "diverged"), case
            got = {f: (folder / f).read_bytes() for f in runcheck.RUN_FILES}
            assert got == {f: held[f"{study}/{setting}/seed={seed}"][f] for f in runcheck.RUN_FILES}, case
        timing = root / "results" / "t" / "timing.json"
        if timing.exists():
            runcheck.read_timing(timing.read_bytes(), "t")
        # what was imported aggregates: no damaged run reaches aggregate_study
        aggregate.aggregate_study(sorted(root.glob("*/t/*/seed=*/metrics.json")), ["batch_size"], tmp_path / "agg",
                                  timing=timing if timing.exists() else None)
        assert len(pd.read_csv(tmp_path / "agg" / "runs.csv")) == len(outcome.sources), case
    print(f"{CASES} cases: {counts}")
    assert counts["refused"] > CASES / 2 and counts["imported"] > 10, counts
