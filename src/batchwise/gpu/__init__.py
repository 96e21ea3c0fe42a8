"""Speed tooling beside the workflow: the benchmarks (GPU and CPU) and the throughput probe,
the GPU window's steps, and the time estimates from the measured step times.

May import: the base modules, batchwise.data and batchwise.engine.
"""
