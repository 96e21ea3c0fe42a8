"""Data sets: find, verify and cache MNIST, CIFAR-10 and grey CIFAR-10 as compact uint8
arrays (the workflow's `prepare_data`), and read the caches back.

May import: batchwise.config, batchwise.files, batchwise.provenance.
"""
