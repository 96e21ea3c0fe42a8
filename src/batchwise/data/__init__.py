"""Data sets: find, verify and cache MNIST, CIFAR-10 and grey CIFAR-10 as compact uint8
arrays (the workflow's `prepare_data`), and read the caches back. `sources` finds, downloads and
verifies the original files; `prepare` writes and reads the caches (grey and synthetic sets too).

May import: batchwise.config, batchwise.files, batchwise.provenance.
"""
