"""The workflow through Snakemake: the smoke config data-to-PDF, the default config's DAG, the report."""
import html
import re
import shutil
import subprocess

import pandas as pd
import pytest
import yaml

from batchwise import config
from batchwise.report.document import fmt
from conftest import REPO, run_env, snakemake_cmd

SMOKE = config.load(REPO / "config" / "smoke.yaml")  # the overlay merged onto config/config.yaml


def jobs_in_dry_run(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run, as {rule: count}."""
    table = output.split("Job stats:")[1].split("Reasons:")[0] if "Reasons:" in output else output.split("Job stats:")[1]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    jobs.pop("total", None)
    return jobs


def test_default_config_dry_run_lists_every_training_job(tmp_path):
    proc = subprocess.run(snakemake_cmd(tmp_path, "-n", "--cores", "4", "--resources", "gpu=1",
                                        "--configfile", str(REPO / "config" / "config.yaml")),
                          env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = jobs_in_dry_run(proc.stdout)
    cfg = config.load(REPO / "config" / "config.yaml")
    # One job per cell (grid point) with all of its seeds; one timing job for every study.
    assert jobs["train_cell"] == len(config.settings(cfg)) < len(config.cells(cfg))
    assert jobs["aggregate_study"] == len(cfg["studies"]) and jobs["time_settings"] == 1
    assert jobs["prepare_data"] == 3
    for study in cfg["studies"]:
        assert f"results/{study}/" in proc.stdout
    assert not (tmp_path / "results").exists()  # a dry run starts nothing


@pytest.mark.slow
def test_smoke_run_report_holds_every_study_table(smoke_run):
    page = (smoke_run / "reports" / "report.html").read_text()
    text = html.unescape(page)
    for name, study in SMOKE["studies"].items():
        assert study["title"] in text, name
        summary = pd.read_csv(smoke_run / "results" / name / "summary.csv")
        acc = summary[summary["metric"] == "final_test_acc"]
        assert len(acc) == len(config.cells(SMOKE, name)) // len(study["seeds"])
        for mean in acc["mean"]:
            assert f"<td>{fmt(mean, 'final_test_acc')}" in page, (name, mean)
        for i, _ in enumerate(study.get("figures", [])):
            assert f"figures/{name}/fig{i}.svg" in page
            assert (smoke_run / "reports" / "figures" / name / f"fig{i}.svg").stat().st_size > 1000
    assert "Homework claims and verdicts" in text and "Provenance" in text
    assert "<th>training step</th><td>eager in all 39 runs</td>" in page  # CPU: no CUDA graphs


@pytest.mark.slow
def test_smoke_run_metrics_record_provenance(smoke_run):
    runs = pd.concat(pd.read_csv(p) for p in (smoke_run / "results").glob("*/runs.csv"))
    assert len(runs) == 39 and set(runs["status"]) <= {"ok", "diverged"}
    runs = runs[runs["status"] == "ok"]
    paths = list((smoke_run / "results").glob("*/*/seed=*/metrics.json"))
    assert len(paths) == 39
    for path in paths:
        m = yaml.safe_load(path.read_text())
        assert m["env"]["torch"] and m["env"]["python"] and m["seed"] == m["spec"]["seed"]
        assert path.parent.name == f"seed={m['seed']}" and path.parent.parent.name == m["setting"]
        assert (smoke_run / "logs" / "train_cell" / m["study"] / f"{m['setting']}.log").exists()
        assert (smoke_run / "benchmarks" / "train_cell" / m["study"] / f"{m['setting']}.tsv").exists()
    assert set(runs["time_basis"]) == {"solo"}  # every completed run's times come from the timing pass


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs pdftoppm (Debian poppler-utils)")
def test_smoke_pdf_renders_without_blank_pages(smoke_run, tmp_path):
    from PIL import Image, ImageStat

    subprocess.run(["pdftoppm", "-png", "-r", "30", str(smoke_run / "reports" / "report.pdf"), str(tmp_path / "p")],
                   check=True, timeout=300)
    pages = sorted(tmp_path.glob("p-*.png"))
    assert 10 <= len(pages) <= 60
    for page in pages:
        extrema = ImageStat.Stat(Image.open(page).convert("L")).extrema[0]
        assert extrema[0] < 128, f"{page.name} looks blank"


@pytest.mark.slow
def test_template_edit_reruns_only_the_report(smoke_run):
    (REPO / "reports" / "templates" / "report.css").touch()  # as an edit does
    proc = subprocess.run(snakemake_cmd(smoke_run, "-n", "--cores", "2", "--configfile",
                                        str(REPO / "config" / "smoke.yaml")),
                          env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(jobs_in_dry_run(proc.stdout)) == {"report_html", "report_pdf", "all"}


def test_lint_has_no_complaints():
    proc = subprocess.run(snakemake_cmd(REPO, "--lint", "--configfile", str(REPO / "config" / "smoke.yaml")),
                          env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
