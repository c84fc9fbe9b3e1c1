"""Benchmark the vectorised KTAE engine.

Main case (issue 2): 1024 groups x 16 rollouts x 3072 tokens, vocab 151,646, Zipf-like ids, random valid lengths,
scored end to end (key_token_values + ktae_advantages' GRPO part) -- input generation not timed. Prints the median
time over --repeats runs and the peak resident memory (process peak, reset before scoring; inputs included).
Then the speed ratio against the slow per-group, per-token reference (tests/reference_ktae.py) on a small batch,
both measured in this run.

    python -m benchmarks.bench_ktae                 # CPU, full size (run from the repository root)
    python -m benchmarks.bench_ktae --device cuda   # on a GPU
    python -m benchmarks.bench_ktae --groups 64     # quicker
"""
import argparse, statistics, time
from pathlib import Path
import torch

from benchmarks._bench import cuda_sync, environment, ratio, repo_module, times as timed
from ktae_lab.ktae import key_token_values, ktae_advantages


def zipf_batch(groups, G, L, vocab, min_len, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    w = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    cdf = (w.cumsum(0) / w.sum()).float()
    B = groups * G
    ids = torch.empty(B, L, dtype=torch.long)
    for s in range(0, B, 1024):                                  # input generation, in slices to bound memory
        u = torch.rand(min(1024, B - s), L, generator=g)
        ids[s:s + 1024] = torch.searchsorted(cdf, u).clamp_max(vocab - 1)
    perm = torch.randperm(vocab, generator=g)                   # frequent ids scattered over the vocabulary
    ids = perm[ids]
    lens = torch.randint(min_len, L + 1, (B,), generator=g)
    mask = (torch.arange(L)[None] < lens[:, None]).to(torch.int8)
    rewards = (torch.rand(B, generator=g) < 0.5).float()
    return ids.to(device), mask.to(device), rewards.to(device)


def reset_peak():
    try: Path("/proc/self/clear_refs").write_text("5")
    except OSError: pass


def peak_rss_gib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"): return int(line.split()[1]) / 2**20
    return float("nan")


def sync(device):
    f = cuda_sync(device)
    if f: f()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=1024); ap.add_argument("--G", type=int, default=16)
    ap.add_argument("--L", type=int, default=3072); ap.add_argument("--vocab", type=int, default=151_646)
    ap.add_argument("--min-len", type=int, default=1); ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu"); ap.add_argument("--threads", type=int, default=0); ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    print(environment(args.device))
    ids, mask, rewards = zipf_batch(args.groups, args.G, args.L, args.vocab, args.min_len, device=args.device)
    n_valid = int(mask.sum())
    print(f"batch: {args.groups} groups x {args.G} rollouts x {args.L} tokens, vocab {args.vocab:,}, "
          f"{n_valid:,} valid tokens ({n_valid / mask.numel():.0%})")
    times = []
    for rep in range(args.repeats):
        reset_peak(); sync(args.device)
        if args.device.startswith("cuda"): torch.cuda.reset_peak_memory_stats()
        t0, c0 = time.perf_counter(), time.process_time()
        A = ktae_advantages(ids, mask, rewards, group_size=args.G)
        sync(args.device); times.append(time.perf_counter() - t0); cpu = time.process_time() - c0
        peak = peak_rss_gib()
        extra = f", GPU peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if args.device.startswith("cuda") else ""
        print(f"  run {rep + 1}: {times[-1]:.2f} s wall ({cpu:.2f} s CPU), peak RSS {peak:.2f} GiB{extra}")
        del A
    med = statistics.median(times)
    print(f"ktae_advantages, full batch: median {med:.2f} s over {args.repeats} runs "
          f"({n_valid / med / 1e6:.1f} M valid tokens/s); peak RSS {peak:.2f} GiB (inputs included)")
    print(f"  target: <= 10 s and <= 4 GiB on the 2-core CPU -> {'OK' if med <= 10 and peak <= 4 else 'MISSED'}")
    if args.skip_reference: return
    reference_key_token_values = repo_module("tests/reference_ktae.py").reference_key_token_values
    small = zipf_batch(4, args.G, 256, args.vocab, 1, seed=1)
    R, M, W = (t.tolist() for t in small)
    labels = [i // args.G for i in range(len(R))]
    t0 = time.perf_counter(); reference_key_token_values(R, M, W, labels); t_ref = time.perf_counter() - t0
    ids_s, mask_s, rew_s = (t.to(args.device) for t in small)
    tv = timed(lambda: key_token_values(ids_s, mask_s, rew_s, group_size=args.G), repeats=5, sync=cuda_sync(args.device))
    print(f"small batch (4 groups x {args.G} x 256): slow reference {t_ref:.2f} s, vectorised median "
          f"{statistics.median(tv) * 1e3:.1f} ms -> {ratio(t_ref, statistics.median(tv)):.0f}x faster")


if __name__ == "__main__":
    main()
