"""The training engine: models, the training loop of a cell's seeds, checkpoints and the
solo timing pass (the workflow's `train_cell` and `time_settings`).

May import: the base modules (config, files, provenance) and batchwise.data.
"""
