"""Command line for the per-job steps, `python -m batchwise prepare|train ...`, `check`, and
`results export|import|publish` (finished runs between checkouts; see docs/reliability.md).

Kept light: each subcommand imports only what it needs (no torch to prepare MNIST, no
torchvision for an MLP cell, no matplotlib in training), because a sweep starts hundreds of these.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _prepare(args: argparse.Namespace) -> None:
    from batchwise.data import prepare as data

    data.prepare(args.dataset, Path(args.out), data_dir=Path(args.data_dir), download=args.download,
                 synthetic=args.synthetic, strict=args.strict,
                 colour_cache=Path(args.colour_cache) if args.colour_cache else None)


def _train(args: argparse.Namespace) -> None:
    from batchwise.engine import train

    spec = json.loads(args.spec)
    log = lambda line: print(f"[{spec['study']}/{spec['setting']}] {line}", flush=True)  # noqa: E731
    log(f"start: {spec['model']} on {spec['dataset']}, seeds {spec.get('seeds', [spec['seed']])}, "
        f"params {json.dumps(spec['params'])}")
    runs = train.run_cell(spec, Path(args.data), Path(args.out), log,
                          Path(args.checkpoints) if args.checkpoints else None)
    log(f"done: status {', '.join(m['status'] for m in runs)}")


def _time(args: argparse.Namespace) -> None:
    from batchwise.engine import timing

    specs = json.loads(Path(args.specs[1:]).read_text() if args.specs.startswith("@") else args.specs)
    caches = dict(item.split("=", 1) for item in args.data)
    outs = {study: Path(args.results) / study / "timing.json" for study in dict.fromkeys(s["study"] for s in specs)}
    timing.time_studies(specs, caches, outs, args.bursts, args.steps, args.warmup,
                        lambda line: print(f"[timing] {line}", flush=True))


def _check(args: argparse.Namespace) -> None:
    from . import checks, config

    cfg = checks.check(config.resolve_files(*args.configfile))
    print(f"{' + '.join(args.configfile) or config.BASE_CONFIG.name}: {checks.summary(cfg)}")


def _export(args: argparse.Namespace) -> None:
    from batchwise.results import bundles

    files, doc = bundles.export(args.bundle, studies=args.study or None, results=args.results,
                                with_checkpoints=args.checkpoints, source=args.source)
    size = sum(f.stat().st_size for f in files)
    print(f"{len(doc['runs'])} finished run(s), {len(doc['timing'])} timing file(s), {doc['checkpoints']} checkpoint "
          f"file(s) -> {len(files)} file(s), {size / 2**20:.2f} MiB: {' '.join(map(str, files))}")
    for name in doc["skipped"]:
        print(f"not packed (no part of a run): {bundles.shown(name)}")


def _import(args: argparse.Namespace) -> None:
    from . import checks, config
    from batchwise.results import merge

    cfg = checks.check(config.resolve_files(*args.configfile))
    outcome = merge.plan_and_import(args.bundle, cfg, replace=args.replace, limits=_limits(args))
    if outcome.refused:
        raise config.ConfigError("\n".join(f"import refused (nothing written): {line}" for line in outcome.refused))
    print("\n".join(outcome.lines()))


def _publish(args: argparse.Namespace) -> None:
    from batchwise.results import publish

    print(publish.publish(args.bundle, source=args.source, folder=args.to, limits=_limits(args)))


def _estimate_check(args: argparse.Namespace) -> None:
    from pathlib import Path

    from . import checks, config
    from batchwise.results import publish

    cfg = checks.check(config.resolve_files(*args.configfile))
    lines = publish.estimate_check(cfg, publish.folder_runs(Path(args.results)))
    print("\n".join(lines) or f"no CPU run in {args.results} to check (engine v2 or later, 1-thread jobs)")


def _limits(args: argparse.Namespace):
    from batchwise.results.unpack import LIMITS, Limits

    return Limits(member_bytes=int(args.max_member_mib * 2**20) if args.max_member_mib else LIMITS.member_bytes,
                  bundle_bytes=int(args.max_bundle_mib * 2**20) if args.max_bundle_mib else LIMITS.bundle_bytes)


def _cap_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-member-mib", type=float, help="refuse a bundle with a member over this size "
                   "(default 512 MiB)")
    p.add_argument("--max-bundle-mib", type=float, help="refuse a bundle that unpacks to more than this "
                   "(default 4096 MiB)")


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors the user can fix are printed as one line and exit with status 1."""
    parser = argparse.ArgumentParser(prog="python -m batchwise")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="obtain a data set and write its compact cache")
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--colour-cache")
    for flag in ("download", "synthetic", "strict"):
        p.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, default=False)
    p.set_defaults(func=_prepare)
    t = sub.add_parser("train", help="train one cell (a grid point, all of its seeds)")
    t.add_argument("--spec", required=True, help="the cell's resolved spec, as JSON")
    t.add_argument("--data", required=True, help="the data set's cache (.npz)")
    t.add_argument("--out", required=True, help="the cell's results folder (a seed=<n>/ folder per seed)")
    t.add_argument("--checkpoints", help="a folder outside --out where each seed's state is kept after every epoch, "
                   "so that the job, killed and started again, resumes (at most one epoch lost per seed)")
    t.set_defaults(func=_train)
    s = sub.add_parser("time", help="the solo timing pass of settings of one or more studies")
    s.add_argument("--specs", required=True, help="the settings' resolved specs, as a JSON list (or @file)")
    s.add_argument("--data", required=True, nargs="+", metavar="DATASET=CACHE", help="each data set's cache (.npz)")
    s.add_argument("--results", default="results", help="writes <results>/<study>/timing.json per study")
    s.add_argument("--bursts", type=int, default=5, help="interleaved bursts per setting")
    s.add_argument("--steps", type=int, default=20, help="timed full steps per setting and burst")
    s.add_argument("--warmup", type=int, default=10, help="untimed steps of each kind before the first burst")
    s.set_defaults(func=_time)
    c = sub.add_parser("check", help="check a config (overlays merged onto config/config.yaml, as "
                       "snakemake --configfile does) and the claims and homework-tables files against it")
    c.add_argument("configfile", nargs="*", help="overlays, in order (none: the default config alone)")
    c.set_defaults(func=_check)
    r = sub.add_parser("results", help="move finished runs between checkouts: export, import, publish")
    rsub = r.add_subparsers(dest="results_command", required=True)
    e = rsub.add_parser("export", help="pack finished runs, timing files and a manifest into BUNDLE.tar.xz "
                        "(parts of at most 16 MiB)")
    e.add_argument("bundle", help="the bundle's name, e.g. bundles/gpu-2026-11-30 (.tar.xz is added)")
    e.add_argument("--study", action="append", help="only this study (repeatable; default: all)")
    e.add_argument("--results", default="results", help="the results folder (default: results)")
    e.add_argument("--checkpoints", action="store_true", help="also pack checkpoints/ (unfinished runs)")
    e.add_argument("--source", default="", help="where these runs come from, in words (kept in the manifest)")
    e.set_defaults(func=_export)
    i = rsub.add_parser("import", help="merge bundles into this checkout, checked against this config")
    i.add_argument("bundle", nargs="+", help="bundle files (every part) or folders holding them")
    i.add_argument("--replace", action="store_true",
                   help="take the bundle's run (and timing) where a different one is here")
    i.add_argument("--configfile", nargs="*", default=[], help="overlays of this checkout's config, in order")
    _cap_options(i)
    i.set_defaults(func=_import)
    u = rsub.add_parser("publish", help="add bundles to docs/results/full/ and rebuild its report, CSVs and ledger")
    u.add_argument("bundle", nargs="*", help="new bundles (every part) or folders holding them; none: rebuild only")
    u.add_argument("--source", default="", help="where the new bundles come from, e.g. 'GPU window, ../shared/results'")
    u.add_argument("--to", default="docs/results/full", help="the published folder (default: docs/results/full)")
    _cap_options(u)
    u.set_defaults(func=_publish)
    k = rsub.add_parser("estimate-check", help="the CPU estimate against the measured times of a results "
                        "folder's CPU runs, per study and engine version (the table `publish` writes)")
    k.add_argument("--results", default="results", help="the results folder (default: results)")
    k.add_argument("--configfile", nargs="*", default=[], help="overlays of this checkout's config, in order")
    k.set_defaults(func=_estimate_check)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except Exception as exc:  # noqa: BLE001 - only the three user-facing errors below are caught
        name = type(exc).__name__
        if name not in ("ConfigError", "DataError", "TrainingError", "BundleError"):
            raise
        for line in str(exc).splitlines():  # one line per mistake, each marked
            print(f"error: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
