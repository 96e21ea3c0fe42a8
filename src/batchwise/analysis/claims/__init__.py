"""Check the homeworks' conclusions against repeated runs.

Two inputs, both data: ``config/claims.yaml`` states each homework conclusion as a
rule over the runs table (``results/runs.csv``: one row per training run), and
``config/homework.yaml`` holds every table of numbers the homeworks printed.

Public API
----------
``load_claims(path)``            read and validate the claims (ValueError names claim and key)
``evaluate_claims(claims, runs)`` one result dict per claim, verdict and evidence
``verdict_rule_text(...)``        the verdict rule as a paragraph for the report's methods
``judge(config, runs, path)``     the claims about a config's studies, judged as the report shows them
``write_verdicts``, ``read_verdicts`` results/claims.csv: every verdict, its numbers and its rule
``load_homework_tables(path)``    read and validate the homework tables
``side_by_side(table, runs)``     homework numbers next to ours (strings; ``numeric=True``
                                  gives the same rows as numbers)
``claim_selectors(claim)``        every (study, selector) a claim uses, for config checks
``RULE_KINDS``, ``METRICS``       what a claim may say (the config gate reads them too)
``REGISTRY``, ``documented_kinds`` each rule kind's evaluator and keys; the kinds a claims file lists

Which runs a claim uses
-----------------------
The outcome rule of ``aggregate`` (column ``outcome``: trained, failed, diverged, no-data). On an
accuracy, a loss or a to-target metric a run that did not train is a worse result, never missing data:
every run counts (a failed run at its accuracy, a diverged one as worse than any finished run, and on a
to-target metric as never reaching the target); two settings of which one mixes outcomes are compared by
the exact rank-sum test. On the other metrics (times, the gap) a setting's numbers are those of its
trained runs or, where none trained, of its failed runs (``aggregate.measured_runs``); diverged runs
enter nothing. Claims on k of n runs are decided by exact tests (Clopper-Pearson, Fisher). A decisive
verdict reads "reliably" when every run of every group trained, "counting every run" or "in k of n runs"
otherwise. Every rule kind decides a claim on its bound at most 1 - level of the time with 3 and 5 runs
(``null``, docs/claims-null.md).

The statistics (Welch and t intervals, Wilson, Clopper-Pearson, Fisher, rank-sum, the edge cases) live
in ``stats``.

Modules
-------
``selection`` runs, selectors and groups; ``wording`` verdict sentences; ``means``, ``shares``,
``sweeps``, ``literature`` the rule kinds by family; ``registry`` kind -> evaluator and keys;
``loading`` the claims file; ``evaluate`` the loop over claims; ``homework`` the homework tables;
``null`` every rule kind under the null (``python -m batchwise.analysis.claims.null``); ``verdicts``
the verdicts file the workflow writes and the report renders.
"""

from __future__ import annotations

from .evaluate import evaluate_claims
from .homework import load_homework_tables, side_by_side, time_column_part
from .loading import CLAIM_KEYS, claim_selectors, load_claims
from .verdicts import judge, read_verdicts, write_verdicts
from .registry import REGISTRY, RULE_KINDS, documented_kinds
from .selection import METRICS, NEVER_METRICS, PARAM_COLUMNS, SELECTOR_FIELDS, SELECTOR_RESERVED
from .wording import verdict_rule_text

__all__ = [
    "load_claims",
    "evaluate_claims",
    "judge",
    "write_verdicts",
    "read_verdicts",
    "verdict_rule_text",
    "load_homework_tables",
    "side_by_side",
    "time_column_part",
    "claim_selectors",
    "documented_kinds",
    "REGISTRY",
    "RULE_KINDS",
    "METRICS",
    "NEVER_METRICS",
    "PARAM_COLUMNS",
    "SELECTOR_FIELDS",
    "SELECTOR_RESERVED",
    "CLAIM_KEYS",
]
