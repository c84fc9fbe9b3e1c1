"""Speed of the ablation lab: one RL step (16 prompts x 8 rollouts), `ktae_lab.lm.generate` vs `model.generate`, the default ablation.

    python -m benchmarks.bench_lab                 # all three (the ablation takes minutes; run from the repository root)
    python -m benchmarks.bench_lab --no-ablation   # step and sampler timings only
    python -m benchmarks.bench_lab --small         # a 5-algorithm x 8-step ablation: its summary and a checksum of its metrics
    python -m benchmarks.bench_lab --seeds-batched # 16 GRPO seeds batched vs 4 seeds one by one, side by side (minutes)
    python -m benchmarks.bench_lab --per-worker --warm-steps 50 --rl-steps 6   # one worker's share of it, CPU time
Targets (issue 7): one step <= 0.5 s, the default ablation (4 algorithms x 3 seeds) <= 15 min on a 2-core CPU.
Target (issue 20): 16 seeds of GRPO at the default config, batched (`seed_batch=None`: 8 per worker), in at most 2x the
wall time of 4 seeds run one by one (`seed_batch=1`), both on 2 worker processes of one torch thread.
"""
import argparse, os, statistics, tempfile, time
import numpy as np
import torch

from benchmarks._bench import median_time, ratio, times as timed


def load():
    "Load average and CPU count, so that timings on a shared machine can be read."
    try: la = os.getloadavg()
    except OSError: la = (float("nan"),) * 3
    return f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} CPUs"


def time_steps(cfg, algos, n, warm):
    from ktae_lab import lab
    tok, (train, _) = lab.lab_tokenizer(), lab.lab_data(cfg)
    prompt_len = int(train["prompt"].str.len().max()) + 1
    out = {}
    for name in algos:
        spec = lab.algorithm_spec(name)
        pol = lab._new_policy(tok, cfg, 0); pol.load_state_dict(warm["state"])
        ref = lab._new_policy(tok, cfg, 0); ref.load_state_dict(warm["state"]); ref.requires_grad_(False)
        opt = torch.optim.AdamW(pol.parameters(), lr=cfg.lr)
        rng, gen = np.random.default_rng(0), torch.Generator(lab._device(cfg)).manual_seed(0)
        rounds = []
        step = lambda: rounds.append(lab.rl_step(pol, opt, tok, train, cfg, spec, rng, gen, ref, prompt_len)["gen_rounds"])
        ts = timed(step, repeats=n, warmup=1); rounds = rounds[1:]                            # the warm-up step not counted
        out[name] = (statistics.median(ts), min(ts), max(ts), statistics.mean(rounds))
    return out


def time_sampler(cfg, warm, n):
    from ktae_lab import lab
    tok, (train, _) = lab.lab_tokenizer(), lab.lab_data(cfg)
    pol = lab._new_policy(tok, cfg, 0); pol.load_state_dict(warm["state"])
    rows = np.repeat(np.arange(cfg.prompts_per_step), cfg.group_size)
    ids, am = lab._encode(tok, train["prompt"].to_numpy()[rows], lab._device(cfg))
    from ktae_lab.lm import generate
    def ours():
        generate(pol, ids, am, cfg.max_new_tokens, tok.eos_token_id, tok.pad_token_id, 1.0, generator=torch.Generator().manual_seed(0))
    @torch.no_grad()
    def hf():
        pol.generate(input_ids=ids, attention_mask=am, do_sample=True, top_k=0, top_p=1.0, max_new_tokens=cfg.max_new_tokens,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    res = {}
    for name, f in [("KV-cached loop", ours), ("model.generate", hf)]:
        res[name] = median_time(f, repeats=n, warmup=1)
    return res


def small(lab):
    "A small fixed ablation; the SHA-256 of its per-step metrics (all but step_time) must not change between versions."
    import hashlib
    cfg = lab.LabConfig(steps=8, warm_steps=300, eval_every=4, n_train=3000, n_heldout=64, prompts_per_step=8, group_size=4,
                        progress=False)
    t = time.perf_counter()
    df = lab.run_ablation(("grpo", "grpo+ktae", "drgrpo+ktae", "dapo", "dapo+ktae"), [0], cfg, None, progress=False)
    print(f"small ablation (5 algorithms x 1 seed x {cfg.steps} steps): {time.perf_counter() - t:.0f} s; {load()}")
    csv = df.drop(columns=["step_time"]).to_csv(index=False, float_format="%.10g")
    print(lab.summarize(df).drop(columns=["step_time"]).round(6).to_string())
    print("metrics sha256 (without step_time):", hashlib.sha256(csv.encode()).hexdigest())


def seeds_batched(lab, workers, base_seeds=4, many=16, algo="grpo"):
    "Wall and CPU time of `many` seeds batched against `base_seeds` seeds one by one, in one run (the same machine load)."
    import resource
    cfg = lab.LabConfig(threads=1, progress=False)
    cpu = lambda: sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))
    res = {}
    for name, n, sb in [(f"{base_seeds} seeds one by one", base_seeds, 1), (f"{many} seeds batched", many, None)]:
        with tempfile.TemporaryDirectory() as d:
            t, c = time.perf_counter(), cpu()
            df = lab.run_ablation((algo,), n, cfg, d, workers=workers, progress=False, seed_batch=sb)
            wall, cput = time.perf_counter() - t, cpu() - c
        acc = lab.summarize(df).loc[algo]
        res[name] = (n, wall, cput)
        print(f"{name:24s}: wall {wall:6.0f} s, CPU {cput:6.0f} s, {n / (cput / 60):.2f} seeds per CPU-minute; held-out acc "
              f"{100 * acc.warm_acc_mean:.1f} -> {100 * acc.final_acc_mean:.1f} ± {100 * acc.final_acc_std:.1f}; {load()}", flush=True)
    (n0, w0, _), (n1, w1, _) = res.values()
    print(f"wall ratio {many} batched / {base_seeds} one by one: {w1 / w0:.2f}x (target <= 2x); per seed {w1 / n1 / (w0 / n0):.2f}x the time")


def per_worker(lab, one=2, many=8, algo="grpo", warm_steps=None, steps=None):
    """One worker's load, in one process and one thread: `one` seeds one by one (`prepare_warm_start` + `train_run`) against `many`
    seeds batched (`warm_starts` + `train_many`). With 2 workers, 4 seeds today are 2 per worker and 16 batched seeds are 8 per
    worker, so the CPU-time ratio of the two is the wall ratio on 2 idle cores; CPU time also holds on a loaded machine."""
    kw = {k: v for k, v in dict(warm_steps=warm_steps, steps=steps).items() if v is not None}
    cfg = lab.LabConfig(threads=1, progress=False, **kw)
    if steps is not None: cfg.eval_every = max(1, steps // 2)
    res = {}
    for name, n in [(f"{one} seeds one by one", one), (f"{many} seeds batched", many)]:
        t, c = time.perf_counter(), time.process_time()
        if n == one: df = __import__("pandas").concat([lab.train_run(algo, s, cfg, lab.prepare_warm_start(s, cfg)) for s in range(n)])
        else: df = lab.train_many(algo, list(range(n)), cfg, lab.warm_starts(list(range(n)), cfg))
        wall, cput = time.perf_counter() - t, time.process_time() - c
        res[name] = (n, wall, cput)
        print(f"{name:22s}: CPU {cput:7.1f} s ({n / (cput / 60):.2f} seeds per CPU-minute), wall {wall:7.1f} s; {load()}", flush=True)
    (n0, _, c0), (n1, _, c1) = res.values()
    print(f"config: warm_steps={cfg.warm_steps}, steps={cfg.steps}, eval_every={cfg.eval_every}, other fields default")
    print(f"CPU ratio {many} batched / {one} one by one = predicted wall ratio of {2 * many} batched / {2 * one} one by one on 2 idle "
          f"cores: {c1 / c0:.2f}x (target <= 2x); per seed {c1 / n1 / (c0 / n0):.2f}x the CPU time")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--steps", type=int, default=10, help="timed RL steps per algorithm")
    p.add_argument("--no-ablation", action="store_true", help="skip the default ablation")
    p.add_argument("--workers", type=int, default=1, help="processes for the ablation")
    p.add_argument("--small", action="store_true", help="only the small fixed ablation (figures to compare across versions)")
    p.add_argument("--seeds-batched", action="store_true", help="only the batched-seeds comparison (16 batched vs 4 one by one, --workers 2)")
    p.add_argument("--per-worker", action="store_true", help="the same comparison as one worker's load in one process (CPU time: 8 batched vs 2 one by one)")
    p.add_argument("--warm-steps", type=int, default=None, help="--per-worker: warm-start steps (default: the config's)")
    p.add_argument("--rl-steps", type=int, default=None, help="--per-worker: RL steps (default: the config's)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from ktae_lab import lab
    if a.small: return small(lab)
    if a.seeds_batched: return seeds_batched(lab, max(a.workers, 2))
    if a.per_worker: return per_worker(lab, warm_steps=a.warm_steps, steps=a.rl_steps)
    cfg = lab.LabConfig(threads=a.threads, progress=False)
    print(f"torch {torch.__version__}, {a.threads} thread(s), device {lab._device(cfg)}; {load()}")
    t = time.perf_counter(); warm = lab.prepare_warm_start(0, cfg)
    print(f"warm start ({cfg.warm_steps} steps, batch {cfg.warm_batch}): {time.perf_counter() - t:.1f} s")
    for name, (med, lo, hi, rounds) in time_steps(cfg, ["grpo", "grpo+ktae", "dapo+ktae"], a.steps, warm).items():
        print(f"RL step {name:10s} ({cfg.prompts_per_step} prompts x {cfg.group_size}): median {med:.3f} s "
              f"(min {lo:.3f}, max {hi:.3f}; {rounds:.1f} generation rounds)  target <= 0.5 s")
    s = time_sampler(cfg, warm, 5)
    print(f"sampling {cfg.prompts_per_step * cfg.group_size} rollouts: KV-cached loop {s['KV-cached loop']:.3f} s, "
          f"model.generate {s['model.generate']:.3f} s, ratio {ratio(s['model.generate'], s['KV-cached loop']):.2f}x")
    print(load())
    if a.no_ablation: return
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        df = lab.run_ablation(("grpo", "grpo+ktae", "dapo", "dapo+ktae"), 3, cfg, d, workers=a.workers, progress=False)
        wall = time.perf_counter() - t
        print(f"default ablation (4 algorithms x 3 seeds, {cfg.steps} steps, {a.workers} worker(s)): {wall:.0f} s "
              f"= {wall / 60:.1f} min  target <= 15 min; {load()}")
        print(open(os.path.join(d, "summary.md")).read())
        g = df[df.algo == "grpo"].pivot_table(index="seed", columns="step", values="eval_acc")
        gains = (g[g.columns.max()] - g[0]) * 100
        print("GRPO held-out gain per seed (points):", ", ".join(f"seed {s}: {v:+.1f}" for s, v in gains.items()),
              "  target >= +15 on every seed")


if __name__ == "__main__":
    main()
