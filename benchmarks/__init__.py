"""Benchmarks of ktae_lab (speed goes here, never into tests). Run each one as a module from the repository root:

    python -m benchmarks.bench_ktae --groups 64

See `benchmarks/_bench.py` for why (a clean checkout needs no install and no path edits)."""
