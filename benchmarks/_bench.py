"""Shared helpers of the benchmarks: a median timer, the environment line, time formatting and ratios.

How to run a benchmark: as a module, from the root of a checkout,

    python -m benchmarks.bench_data --rows 256

`python -m` puts the current folder first on `sys.path`, so a clean checkout works without installing and without
any `sys.path` edits in the scripts: `ktae_lab` is this checkout's package and `benchmarks._bench` imports by its
package name. A helper that lives elsewhere in the checkout (the slow reference of `tests/reference_ktae.py`) is
loaded from its file with `repo_module`, since the name `tests` may belong to an installed package (verl ships
one). (`python benchmarks/bench_x.py` is not supported: it would put `benchmarks/` itself on the path instead.)"""
import importlib.util, os, statistics, time
from pathlib import Path

__all__ = ["cuda_sync", "times", "median_time", "ratio", "fmt_time", "environment", "repo_module"]
REPO = Path(__file__).resolve().parents[1]


def repo_module(relpath):
    "Import a Python file of this checkout by path (e.g. 'tests/reference_ktae.py'), without editing the import path."
    path = REPO / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cuda_sync(device):
    "The function that waits for `device` (torch.cuda.synchronize on a CUDA device), else None."
    import torch
    return torch.cuda.synchronize if str(device).startswith("cuda") else None


def times(fn, repeats=5, warmup=0, sync=None) -> list:
    "Wall-clock seconds of `repeats` calls of `fn` after `warmup` untimed calls; `sync` (e.g. cuda_sync) brackets each."
    for _ in range(warmup): fn()
    out = []
    for _ in range(repeats):
        if sync: sync()
        t = time.perf_counter(); fn()
        if sync: sync()
        out.append(time.perf_counter() - t)
    return out


def median_time(fn, repeats=5, warmup=0, sync=None) -> float:
    "Median wall-clock seconds of `fn` over `repeats` calls (see `times`)."
    return statistics.median(times(fn, repeats, warmup, sync))


def ratio(slow, fast) -> float:
    "slow / fast, the speed-up of `fast` (inf when `fast` took no measurable time)."
    return slow / fast if fast > 0 else float("inf")


def fmt_time(seconds, unit="ms", digits=1) -> str:
    "A duration as text in `unit` (s, ms or us), e.g. fmt_time(0.0123) == '12.3 ms'."
    scale = {"s": 1, "ms": 1e3, "us": 1e6}[unit]
    return f"{seconds * scale:.{digits}f} {unit}"


def environment(device="cpu") -> str:
    "One line describing where the figures were measured: torch version, threads, device, load average, CPUs."
    import torch
    return (f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
