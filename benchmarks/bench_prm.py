"""Time budgets of the PRM chapter (issue 13): the `ktae-lab prm` pipeline and the process-reward ablation.

    python -m benchmarks.bench_prm --what quick              # `ktae-lab prm --quick`: budget 5 min on 2 cores
    python -m benchmarks.bench_prm --what default            # `ktae-lab prm` (3 seeds): budget 20 min on 2 cores
    python -m benchmarks.bench_prm --what step --prm FILE [--policy DIR/seed0/policy.pt]   # one RL step of each algorithm
    python -m benchmarks.bench_prm --what ablate [--prm FILE]  # ktae-lab ablate --algos grpo,grpo+ktae,grpo+prm,grpo+truth --seeds 3

Budgets: `--quick` <= 5 min and the default pipeline <= 20 min of wall time on an idle 2-core CPU; the 4-algorithm
process-reward ablation (grpo, grpo+ktae, grpo+prm, grpo+truth, 3 seeds, default LabConfig) <= 20 min with 2 workers
(the default 4-algorithm ablation keeps its own 15-minute budget, bench_lab.py). Each figure is printed with the CPU
seconds of the process as well as the wall time: on a shared machine the CPU time is the figure an idle machine would show
(one torch thread per process). FILE is a PRM checkpoint, e.g. DIR/seed0/prm/epic_adaptive.pt written by `ktae-lab prm`;
without --prm, the ablation trains each seed's PRM on EpicPRM labels of its own warm-start policy (`prm_lab.lab_prm`,
what the command does), and that time is part of the figure.
"""
import argparse, statistics, tempfile, time
from pathlib import Path
import numpy as np
import torch
from benchmarks._bench import environment


def _cpu_children() -> float:
    import resource
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def pipeline(quick:bool, seeds, out):
    from ktae_lab.prm_lab import run_prm_pipeline
    t, c = time.perf_counter(), _cpu_children()
    r = run_prm_pipeline(out, quick=quick, device="cpu", progress=False, seeds=seeds)
    wall, cpu = time.perf_counter() - t, _cpu_children() - c
    print(r["summary"])
    print(f"{'quick' if quick else 'default'} pipeline: wall {wall:.0f} s, CPU {cpu:.0f} s (budget {300 if quick else 1200} s)")


def step(prm, n, policy=None):
    from ktae_lab import lab
    cfg = lab.LabConfig(device="cpu", prm_path=prm).validate()
    tok, (train, _) = lab.lab_tokenizer(), lab.lab_data(cfg)
    prompt_len = int(train["prompt"].str.len().max()) + 1
    from ktae_lab.data import load_torch
    warm = {"state": load_torch(policy, "policy checkpoint")} if policy else lab.prepare_warm_start(0, cfg)
    from ktae_lab.prm import load_prm
    p = load_prm(prm, tok, task=lab.LAB_TASK, device="cpu")
    for name in ("grpo", "grpo+ktae", "grpo+prm", "grpo+truth"):
        spec = lab.algorithm_spec(name)
        pol = lab._new_policy(tok, cfg, 0); pol.load_state_dict(warm["state"])
        ref = lab._new_policy(tok, cfg, 0); ref.load_state_dict(warm["state"]); ref.requires_grad_(False)
        opt = torch.optim.AdamW(pol.parameters(), lr=cfg.lr)
        rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
        ts = []
        for _ in range(n + 1):
            t = time.perf_counter(); lab.rl_step(pol, opt, tok, train, cfg, spec, rng, gen, ref, prompt_len, prm=p); ts.append(time.perf_counter() - t)
        print(f"{name:<11} one RL step: median {statistics.median(ts[1:]):.3f} s (min {min(ts[1:]):.3f} s)")


def ablate(prm, out, workers):
    from ktae_lab.lab import LabConfig, run_ablation
    from ktae_lab.prm_lab import lab_prm
    cfg = LabConfig(prm_path=prm, progress=False)
    t, c = time.perf_counter(), _cpu_children()
    run_ablation(["grpo", "grpo+ktae", "grpo+prm", "grpo+truth"], 3, cfg, out, workers=workers, progress=False,
                 prm=None if prm else lab_prm)
    wall, cpu = time.perf_counter() - t, _cpu_children() - c
    print((Path(out) / "summary.md").read_text())
    if not prm:
        for f in sorted(Path(out, "checkpoints").glob("prm-seed*/cost.json")): print(f.parent.name, f.read_text().replace("\n", " "))
    print(f"process-reward ablation (4 algorithms x 3 seeds, {workers} workers): wall {wall:.0f} s, CPU {cpu:.0f} s (budget 1200 s wall)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", choices=["quick", "default", "step", "ablate"], default="quick")
    ap.add_argument("--prm", default=None, help="PRM checkpoint for step / ablate")
    ap.add_argument("--policy", default=None, help="--what step: a warm-started policy state (DIR/seed0/policy.pt of `ktae-lab prm`) instead of a fresh warm start")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=5, help="timed RL steps per algorithm (--what step)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(environment("cpu"))
    with tempfile.TemporaryDirectory() as d:
        out = a.out or d
        if a.what == "step" and not a.prm: ap.error("--what step needs --prm FILE (a checkpoint written by `ktae-lab prm`)")
        if a.what == "quick": pipeline(True, a.seeds, out)
        elif a.what == "default": pipeline(False, a.seeds, out)
        elif a.what == "step": step(a.prm, a.steps, a.policy)
        else: ablate(a.prm, out, a.workers)
