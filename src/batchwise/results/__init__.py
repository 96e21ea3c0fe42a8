"""Finished runs into tables (`aggregate`, the workflow's `aggregate_study`: runs, outcomes,
mean/std/n over seeds) and results between checkouts: `bundles` (the format, export), `unpack` (a
bundle from anyone, read and checked), `runcheck` (what a valid run is), `merge` (import), `publish`.

May import: the base modules, batchwise.data, batchwise.engine, and batchwise.speed.estimate
(the ledger's GPU-time estimate of the runs not done).
"""
