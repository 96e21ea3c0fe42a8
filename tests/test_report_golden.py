"""The smoke report's tables, verdicts, analyses and figures, against a golden captured before the
analyses moved out of the report (tests/golden/smoke: one smoke run's aggregated tables, its resolved
config, the claims and homework tables it was judged on, and what the report showed of them)."""
import hashlib
import json
import shutil

import pytest
import yaml

from batchwise.report import figures, document as report
from batchwise.analysis import zero_init
from batchwise.analysis.registry import write_study_analysis
from conftest import REPO

GOLDEN = REPO / "tests" / "golden" / "smoke"
CONFIG = yaml.safe_load((GOLDEN / "config.yaml").read_text())
WANT = json.loads((GOLDEN / "golden.json").read_text())


def _plain(value):
    """As the golden file holds it: JSON types only."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """The report's context of the golden results, after the workflow's analysis jobs ran on them."""
    results = tmp_path_factory.mktemp("golden") / "results"
    shutil.copytree(GOLDEN / "results", results)
    for name, study in CONFIG["studies"].items():   # what rules measure_zero_init and analyse_study do
        folder = results / name
        measured = folder / "zero_init.json" if zero_init.needed(study) else None
        if measured:
            zero_init.write(study, measured)
        write_study_analysis(study, folder / "runs.csv", folder / "analysis.json", CONFIG["verdict"]["level"], measured)
    return report.build_context(CONFIG, results, results.parent / "figures", claims=GOLDEN / "claims.yaml",
                                homework=GOLDEN / "homework.yaml")


def _studies(context: dict) -> dict:
    out = {}
    for hw in context["homeworks"]:
        for s in hw["studies"]:
            blocks = s["analyses"]
            collapse = [b for b in blocks if b["kind"] == "collapse"]
            out[s["id"]] = {
                "results": s["results"],
                "analyses": [{k: b[k] for k in ("title", "header", "rows", "note", "method")}
                             for b in blocks if b["kind"] != "collapse"],
                "collapse": {"rows": collapse[0]["rows"], "paragraph": collapse[0]["explain"]} if collapse else None}
    return _plain(out)


def test_every_study_is_in_the_golden(context):
    assert sorted(_studies(context)) == sorted(WANT["studies"]) == sorted(CONFIG["studies"])
    assert len(WANT["figures"]) == sum(len(s["figures"]) for s in CONFIG["studies"].values())


@pytest.mark.parametrize("study", sorted(CONFIG["studies"]))
def test_results_tables_and_analyses_unchanged(context, study):
    assert _studies(context)[study] == WANT["studies"][study]


def test_verdicts_and_homework_tables_unchanged(context):
    claims = [{k: c[k] for k in ("id", "verdict", "evidence", "reason")}
              for c in context["claims"] + context["literature_claims"]]
    assert _plain(claims) == WANT["claims"]
    tables = [{k: t[k] for k in ("title", "header", "rows")} for hw in context["homeworks"] for t in hw["tables"]]
    assert _plain(tables) == WANT["tables"]
    assert context["verdict_counts"] == WANT["verdict_counts"]


def test_figures_unchanged(tmp_path, monkeypatch):
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "svg.hashsalt", "golden")   # SVG ids, else random
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")                          # SVG date, else now
    got = {}
    for name, study in CONFIG["studies"].items():
        folder = GOLDEN / "results" / name
        for i, _ in enumerate(study["figures"]):
            out = tmp_path / f"{name}-fig{i}.svg"
            figures.plot_figure(study, i, runs=folder / "runs.csv", history=folder / "history.csv",
                                iterations=folder / "iterations.csv", out=out)
            got[f"{name}/fig{i}"] = hashlib.sha256(out.read_bytes()).hexdigest()
    assert got == WANT["figures"]
