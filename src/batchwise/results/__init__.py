"""Finished runs into tables (the workflow's `aggregate_study`: runs, outcomes, mean/std/n over
seeds) and results between checkouts: bundles, merging, publishing.

May import: the base modules, batchwise.data, batchwise.engine, and batchwise.gpu.estimate
(the ledger's GPU-time estimate of the runs not done).
"""
