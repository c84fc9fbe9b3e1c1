"""Speed of the ablation lab: one RL step (16 prompts x 8 rollouts), `ktae_lab.lm.generate` vs `model.generate`, the default ablation.

    python benchmarks/bench_lab.py                 # all three (the ablation takes minutes)
    python benchmarks/bench_lab.py --no-ablation   # step and sampler timings only
    python benchmarks/bench_lab.py --small         # a 5-algorithm x 8-step ablation: its summary and a checksum of its metrics
Targets (issue 7): one step <= 0.5 s, the default ablation (4 algorithms x 3 seeds) <= 15 min on a 2-core CPU.
"""
import argparse, os, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing


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
        lab.rl_step(pol, opt, tok, train, cfg, spec, rng, gen, ref, prompt_len)           # warm-up
        ts, rounds = [], []
        for _ in range(n):
            t = time.perf_counter(); m = lab.rl_step(pol, opt, tok, train, cfg, spec, rng, gen, ref, prompt_len)
            ts.append(time.perf_counter() - t); rounds.append(m["gen_rounds"])
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
        f(); ts = []
        for _ in range(n):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        res[name] = statistics.median(ts)
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--steps", type=int, default=10, help="timed RL steps per algorithm")
    p.add_argument("--no-ablation", action="store_true", help="skip the default ablation")
    p.add_argument("--workers", type=int, default=1, help="processes for the ablation")
    p.add_argument("--small", action="store_true", help="only the small fixed ablation (figures to compare across versions)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from ktae_lab import lab
    if a.small: return small(lab)
    cfg = lab.LabConfig(threads=a.threads, progress=False)
    print(f"torch {torch.__version__}, {a.threads} thread(s), device {lab._device(cfg)}; {load()}")
    t = time.perf_counter(); warm = lab.prepare_warm_start(0, cfg)
    print(f"warm start ({cfg.warm_steps} steps, batch {cfg.warm_batch}): {time.perf_counter() - t:.1f} s")
    for name, (med, lo, hi, rounds) in time_steps(cfg, ["grpo", "grpo+ktae", "dapo+ktae"], a.steps, warm).items():
        print(f"RL step {name:10s} ({cfg.prompts_per_step} prompts x {cfg.group_size}): median {med:.3f} s "
              f"(min {lo:.3f}, max {hi:.3f}; {rounds:.1f} generation rounds)  target <= 0.5 s")
    s = time_sampler(cfg, warm, 5)
    print(f"sampling {cfg.prompts_per_step * cfg.group_size} rollouts: KV-cached loop {s['KV-cached loop']:.3f} s, "
          f"model.generate {s['model.generate']:.3f} s, ratio {s['model.generate'] / s['KV-cached loop']:.2f}x")
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
