"""The smoke report's tables, verdicts, analyses and figures (their plotted data), against a golden captured before the
analyses moved out of the report (tests/golden/smoke: one smoke run's aggregated tables, its resolved
config, the claims and homework tables it was judged on, and what the report showed of them)."""
import hashlib
import json
import math
import shutil

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
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


def _num(value) -> object:
    """A plotted number to 6 significant digits: far above any rounding a CPU's SIMD width changes (the
    SVG's bytes differ between an AVX2 and an AVX-512 machine), far below any change a reader could see."""
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else str(value)


def _nums(values) -> list:
    return [_num(v) for v in np.asarray(values, dtype=float).ravel()]


def _plotted(fig) -> dict:
    """What a figure shows, as plain data: per panel its scales, limits, labels and ticks, and every line,
    band, bar, marker and text in it (positions rounded by `_num`), and the legends."""
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle
    from matplotlib.text import Text

    fig.canvas.draw()   # tick labels are formatted at draw time
    colour = lambda c: _nums(matplotlib.colors.to_rgba(c)) if c is not None else None  # noqa: E731
    panels = []
    for ax in fig.axes:
        items = []
        for child in ax.get_children():
            if isinstance(child, Line2D):
                items.append(["line", _nums(child.get_xydata()), colour(child.get_color()), child.get_linestyle(),
                              child.get_marker(), child.get_label()])
            elif isinstance(child, Collection):
                items.append(["collection", [_nums(p.vertices) for p in child.get_paths()],
                              _nums(child.get_offsets()), _nums(child.get_facecolor()), child.get_label()])
            elif isinstance(child, Rectangle) and child is not ax.patch:
                items.append(["bar", _nums([child.get_x(), child.get_y(), child.get_width(), child.get_height()]),
                              colour(child.get_facecolor()), child.get_label()])
            elif isinstance(child, Text) and child.get_text():
                items.append(["text", child.get_text(), _nums(getattr(child, "xy", child.get_position()))])
        legend = ax.get_legend()
        panels.append({
            "title": ax.get_title(), "labels": [ax.get_xlabel(), ax.get_ylabel()],
            "scales": [ax.get_xscale(), ax.get_yscale()], "limits": _nums([*ax.get_xlim(), *ax.get_ylim()]),
            "ticks": [[_nums(axis.get_majorticklocs()), [t.get_text() for t in axis.get_majorticklabels()]]
                      for axis in (ax.xaxis, ax.yaxis)],
            "items": items, "legend": [t.get_text() for t in legend.get_texts()] if legend else None})
    return {"size": _nums(fig.get_size_inches()), "panels": panels,
            "legends": [[t.get_text() for t in legend.get_texts()] for legend in fig.legends],
            "texts": [t.get_text() for t in fig.texts]}


def _figure_digests() -> dict:
    got = {}
    for name, study in CONFIG["studies"].items():
        folder = GOLDEN / "results" / name
        for i, _ in enumerate(study["figures"]):
            fig = figures.draw_figure(study, i, runs=folder / "runs.csv", history=folder / "history.csv",
                                      iterations=folder / "iterations.csv")
            got[f"{name}/fig{i}"] = hashlib.sha256(json.dumps(_plotted(fig), sort_keys=True).encode()).hexdigest()
            plt.close(fig)
    return got


def test_figures_unchanged():
    """The figures' plotted data, not their SVG bytes: those depend on the CPU that renders them."""
    assert _figure_digests() == WANT["figures"]


def test_figure_digest_sees_a_changed_point(monkeypatch):
    """The digest is not blind: one mean moved by 0.1 % changes the figure that plots it."""
    original = pd.read_csv
    def nudged(path, *args, **kwargs):
        frame = original(path, *args, **kwargs)
        if str(path).endswith("s1_batch_init/runs.csv"):
            frame.loc[0, "final_test_acc"] *= 1.001
        return frame
    monkeypatch.setattr(figures.pd, "read_csv", nudged)
    got = _figure_digests()
    assert got["s1_batch_init/fig0"] != WANT["figures"]["s1_batch_init/fig0"]
    assert {k: v for k, v in got.items() if k != "s1_batch_init/fig0"} == \
        {k: v for k, v in WANT["figures"].items() if k != "s1_batch_init/fig0"}


def test_the_report_renders_the_verdicts_file(context, tmp_path):
    """The workflow judges the claims once (rule judge_claims -> results/claims.csv) and the report renders
    that file: the same verdicts, texts and findings as when the report judged them itself."""
    from batchwise.analysis import claims as claims_mod

    runs = pd.concat([pd.read_csv(GOLDEN / "results" / s / "runs.csv") for s in CONFIG["studies"]
                      if (GOLDEN / "results" / s / "runs.csv").exists()], ignore_index=True)
    path = tmp_path / "claims.csv"
    claims_mod.write_verdicts(claims_mod.judge(CONFIG, runs, GOLDEN / "claims.yaml"), path)
    rendered = report.build_context(CONFIG, GOLDEN / "results", tmp_path / "figures", claims=GOLDEN / "claims.yaml",
                                    homework=GOLDEN / "homework.yaml", verdicts=path)
    fields = ("id", "verdict", "evidence", "reason", "source", "chapter")
    for key in ("claims", "literature_claims"):
        assert _plain([{k: c[k] for k in fields} for c in rendered[key]]) == \
            _plain([{k: c[k] for k in fields} for c in context[key]])
    assert _plain(rendered["findings"]) == _plain(context["findings"])
    assert rendered["verdict_counts"] == WANT["verdict_counts"]
