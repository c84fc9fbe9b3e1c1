"""Who finds the mistake: EpicPRM's annotators and KTAE's token credit against the lab task's exact first wrong step.

    python -m benchmarks.bench_credit            # 3 seeds x (warm start, GRPO) x >= 500 wrong solutions x 5 methods
    python -m benchmarks.bench_credit --quick    # CI-sized: 1 seed, 60 wrong solutions, shorter warm start
    python -m benchmarks.bench_credit --out DIR  # also write the tidy tables as CSV, this report (summary.md), config.json
Target (issue 12): the full table in <= 10 minutes on 2 CPU cores. The shipped run: `--out data/bench_credit`.
"""
import argparse, json, os, sys, time
from pathlib import Path
import torch



def load():
    "Load average and CPU count, so that timings on a shared machine can be read."
    try: la = os.getloadavg()
    except OSError: la = (float("nan"),) * 3
    return f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} CPUs"


def fmt(df, spread_cols):
    "Print mean +- std columns as one string per metric."
    out = df.copy()
    for c in spread_cols:
        out[c] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(df[c], df[c + "_std"])]
        out = out.drop(columns=c + "_std")
    return out.to_string(index=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized run")
    ap.add_argument("--seeds", type=int, default=None, help="policy seeds 0..N-1 (default 3; --quick 1)")
    ap.add_argument("--n-wrong", type=int, default=None, help="wrong solutions per policy (default 500; --quick 60)")
    ap.add_argument("--rl-steps", type=int, default=None, help="GRPO steps of the second policy (default 10; --quick 2)")
    ap.add_argument("--warm-steps", type=int, default=None, help="warm-start steps (default the lab's 600; --quick 300)")
    ap.add_argument("--group-size", type=int, default=8, help="rollouts per held-out problem")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--perms", type=int, default=1000, help="permutations of KTAE's within-group null")
    ap.add_argument("--out", "-o", default=None, help="folder for the CSV tables")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from ktae_lab.lab import LabConfig
    from ktae_lab.credit import credit_benchmark, method_table, seed_spread, pairwise_intervals, machine_info, BENCH_PARAMS
    q = a.quick
    seeds = range(a.seeds if a.seeds is not None else (1 if q else 3))
    n_wrong = a.n_wrong if a.n_wrong is not None else (60 if q else 500)
    rl = a.rl_steps if a.rl_steps is not None else (2 if q else 10)
    warm = a.warm_steps if a.warm_steps is not None else (300 if q else LabConfig().warm_steps)
    # held-out problems: enough groups of 8 for >= n_wrong wrong solutions (the train pool excludes them)
    cfg = LabConfig(warm_steps=warm, n_heldout=max(64, n_wrong // 2), progress=False)
    head = (f"# bench_credit: seeds {list(seeds)}, {n_wrong} wrong solutions per policy, warm start {warm} steps, "
            f"GRPO {rl} steps, groups of {a.group_size}, {cfg.n_heldout} held-out problems, budgets {BENCH_PARAMS}\n"
            f"# {load()}, torch threads {a.threads}; {machine_info()}")
    print(head)
    t0, c0 = time.perf_counter(), time.process_time()
    r = credit_benchmark(tuple(seeds), cfg, rl, n_wrong, a.group_size, progress=True, n_perm=a.perms)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    import pandas as pd
    pd.set_option("display.width", 200)
    lines = [head]
    def say(x): print(x); lines.append(x)
    say("\n## Policies (per seed)\n" + r["policies"].round(3).to_string(index=False))
    per_seed = method_table(r["scores"], by=("policy", "method", "seed"))
    cols = ["accuracy", "acc_covered", "coverage", "offset", "rollouts", "tokens", "wall_ms"]
    say("\n## Annotators against the exact first wrong step (mean ± std over seeds)\n" +
        fmt(seed_spread(per_seed, ["policy", "method"], cols), cols))
    pairs = pd.concat([pairwise_intervals(g, by=("seed",)).assign(policy=pol) for pol, g in r["scores"].groupby("policy", sort=False)])
    say("\n## Which annotator finds more first errors? Paired bootstrap 95% intervals of accuracy differences (solutions of "
        "all seeds resampled, 2000 resamples); an interval containing 0 is unresolved\n" +
        pairs[["policy", "a", "b", "diff", "lo", "hi", "verdict"]].round(3).to_string(index=False))
    by_ops = method_table(r["scores"], by=("policy", "method", "n_ops"))
    say("\n## First-error accuracy by number of operands (all seeds)\n" +
        by_ops.pivot(index=["policy", "method"], columns="n_ops", values="accuracy").round(3).to_string())
    by_step = method_table(r["scores"], by=("policy", "method", "truth"))
    say("\n## First-error accuracy by true wrong step (all seeds)\n" +
        by_step.pivot(index=["policy", "method"], columns="truth", values="accuracy").round(3).to_string())
    k = r["ktae"].assign(signal=r["ktae"].auroc_within - r["ktae"].null_mean)
    kc = ["auroc_within", "null_mean", "signal", "auroc", "inside_at_step0"]
    say(f"\n## KTAE: AUROC of -K, inside vs before the first wrong step (wrong rollouts of mixed groups; mean ± std over seeds)\n"
        f"# auroc_within: per rollout with both classes, then averaged; null: correctness shuffled within groups, {a.perms} "
        f"permutations, K recomputed; signal = auroc_within - null_mean; auroc: pooled over all tokens (mixes groups); "
        f"inside_at_step0: share of inside tokens from rollouts wrong at step 0 (no before token)\n" +
        fmt(seed_spread(k, ["policy", "setting"], kc), kc))
    say("\n## KTAE per seed: within-rollout AUROC against its permutation null (95% band), one-sided empirical p\n" +
        k[["policy", "setting", "seed", "auroc_within", "null_mean", "null_lo", "null_hi", "p_value", "signal", "rollouts_within"]]
        .round(4).to_string(index=False))
    ec = ["auroc_within", "auroc", "V_before", "V_inside"]
    say("\n## Annotators' step values mapped to tokens: AUROC of -V on the same rollouts (mean ± std over seeds)\n" +
        fmt(seed_spread(r["epic"], ["policy", "method"], ec), ec))
    say(f"\n# total wall time {wall:.0f} s, CPU time {cpu:.0f} s of this process ({load()})")
    if a.out:
        out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
        for key, v in r.items(): v.to_csv(out / f"{key}.csv", index=False)
        (out / "summary.md").write_text("```\n" + "\n".join(lines) + "\n```\n")
        (out / "config.json").write_text(json.dumps(dict(argv=sys.argv[1:] if argv is None else list(argv), seeds=list(seeds),
            n_wrong=n_wrong, rl_steps=rl, warm_steps=warm, group_size=a.group_size, n_heldout=cfg.n_heldout, perms=a.perms,
            threads=a.threads, budgets=BENCH_PARAMS, wall_s=round(wall, 1), cpu_s=round(cpu, 1), machine=machine_info()), indent=1) + "\n")
        print(f"# tables written to {out}")
    return 0


if __name__ == "__main__": sys.exit(main())
