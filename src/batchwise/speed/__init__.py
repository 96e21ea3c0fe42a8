"""Benchmarks and estimates of training speed on any device, beside the workflow: the speed
benchmark and its CLI (`bench`: `python -m batchwise.speed.bench [cpu|subnormal|options|probe]`), the CPU
benchmark (`cpubench`), the subnormal benchmark (`subnormal`), the
step-options benchmark (`options`), what they share (`benchkit`), the
CPU/GPU time estimates from the measured step times (`estimate`), and the GPU window's parts:
`gpu_window` (the helpers of tools/gpu-window.sh), `gpu_probe` (its throughput probe) and
`gpu_selfcheck` (its self-check of the CUDA engine).

May import: the base modules, batchwise.data and batchwise.engine.
"""
