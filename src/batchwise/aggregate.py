"""Collect a study's per-cell files into tidy tables: runs, summary (mean, std, n over seeds), curves."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .config import RUN_METRICS


def runs_table(metrics_files: list[str | Path], grid_keys: list[str]) -> pd.DataFrame:
    """One row per run: identity, resolved parameters, status and final metrics."""
    rows = []
    for path in metrics_files:
        m = json.loads(Path(path).read_text())
        row = {"study": m["study"], "setting": m["setting"], "cell": m["cell"], "seed": m["seed"],
               **m["spec"]["params"], "status": m["status"], "diverged": m.get("diverged", False)}
        for key in RUN_METRICS:
            row[key] = m.get(key)
        if m["status"] != "no-data":
            row["generalisation_gap"] = m["final_train_acc"] - m["final_test_acc"]
        row["device"] = m.get("env", {}).get("device_name")
        row["cuda_graphs"], row["cuda_graphs_note"] = m.get("cuda_graphs"), m.get("cuda_graphs_note")
        rows.append(row)
    runs = pd.DataFrame(rows)
    for key in RUN_METRICS:
        runs[key] = pd.to_numeric(runs[key], errors="coerce")
    return runs.sort_values([*grid_keys, "seed"], kind="stable").reset_index(drop=True)


def summary_table(runs: pd.DataFrame, grid_keys: list[str]) -> pd.DataFrame:
    """Tidy summary: one row per (setting, metric) with mean, std (ddof 1), min, max and n over seeds.

    n counts the runs that have the metric (e.g. runs that reached the target accuracy), and
    n_runs all runs of the setting, so "reached in 2 of 3 runs" can be said.
    """
    done = runs[runs["status"] != "no-data"]
    rows = []
    for setting, group in done.groupby("setting", sort=False):
        ident = {"study": group["study"].iloc[0], "setting": setting, **{k: group[k].iloc[0] for k in grid_keys}}
        for metric in RUN_METRICS:
            values = group[metric].dropna()
            rows.append({**ident, "metric": metric, "mean": values.mean() if len(values) else None,
                         "std": values.std(ddof=1) if len(values) > 1 else None,
                         "min": values.min() if len(values) else None, "max": values.max() if len(values) else None,
                         "n": len(values), "n_runs": len(group), "n_diverged": int(group["diverged"].sum())})
    return pd.DataFrame(rows)


def long_curves(cell_dirs: list[str | Path], filename: str, runs: pd.DataFrame) -> pd.DataFrame:
    """Concatenate each cell's `history.csv` or `iterations.csv`, tagged with setting and seed."""
    by_cell = runs.set_index("cell")
    frames = []
    for folder in map(Path, cell_dirs):
        frame = pd.read_csv(folder / filename)
        if frame.empty or folder.name not in by_cell.index:
            continue
        frame.insert(0, "seed", by_cell.loc[folder.name, "seed"])
        frame.insert(0, "setting", by_cell.loc[folder.name, "setting"])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["setting", "seed"])


def aggregate_study(metrics_files: list[str | Path], grid_keys: list[str], out_dir: str | Path) -> None:
    """Write runs.csv, summary.csv, history.csv and iterations.csv of one study into `out_dir`."""
    from .files import atomic_write_text

    out_dir = Path(out_dir)
    runs = runs_table(metrics_files, grid_keys)
    cell_dirs = [Path(p).parent for p in metrics_files]
    tables = {
        "runs.csv": runs,
        "summary.csv": summary_table(runs, grid_keys),
        "history.csv": long_curves(cell_dirs, "history.csv", runs),
        "iterations.csv": long_curves(cell_dirs, "iterations.csv", runs),
    }
    for name, table in tables.items():
        atomic_write_text(out_dir / name, table.to_csv(index=False))
