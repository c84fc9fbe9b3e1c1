"""A whole run read and reported: `write_run_report` (what `ktae-lab report RUN_DIR` runs) on a synthetic run folder.

Target (issue 18): 100 steps x 512 rollouts x 1,024 tokens read and reported in <= 90 s on 2 cores, peak memory under
2 GiB (the steps are streamed: one step is in memory at a time). The run is written first (not timed), as ktae-format
step files `{step}.jsonl` with the minimal schema (group_id, token_ids, reward), tokens drawn from a Zipf law over a
32,000-token vocabulary so that tokens recur across the rollouts of a group, as real text does. The report runs in a
fresh process so that its peak RSS is its own. It prints the wall time, the CPU seconds of the report and of its worker
processes (user + system), the peak RSS and the load average before and after (the wall figure of a loaded machine is
not the figure of 2 idle cores; the CPU seconds divided by the cores are a floor for it).

python -m benchmarks.bench_report [--steps 100] [--rollouts 512] [--tokens 1024] [--group 8] [--step-groups 4]
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np

from benchmarks._bench import environment

CHILD = """
import resource, sys, time
from ktae_lab.report import write_run_report
t = time.perf_counter()
write_run_report(sys.argv[1], sys.argv[2], step_groups=int(sys.argv[3]), progress=True)
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{time.perf_counter() - t:.3f} {me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime:.3f} {me.ru_maxrss / 1024:.1f} {kids.ru_maxrss / 1024:.1f}")
"""


def write_run(folder: Path, steps: int, rollouts: int, tokens: int, group: int, vocab: int = 32000, seed: int = 0):
    "Write `steps` step files of `rollouts` rollouts of `tokens` token ids (Zipf over `vocab`), `group` per prompt."
    rng = np.random.default_rng(seed)
    for s in range(1, steps + 1):
        ids = np.minimum(rng.zipf(1.3, (rollouts, tokens)) - 1, vocab - 1)
        reward = rng.integers(0, 2, rollouts)
        with open(folder / f"{s}.jsonl", "w") as f:
            for i in range(rollouts):
                f.write(json.dumps({"group_id": f"p{i // group}", "rollout_id": i % group, "token_ids": ids[i].tolist(),
                                    "reward": float(reward[i])}) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rollouts", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--step-groups", type=int, default=4)
    a = ap.parse_args()
    print(environment())
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"; run.mkdir()
        t = time.perf_counter()
        write_run(run, a.steps, a.rollouts, a.tokens, a.group)
        size = sum(p.stat().st_size for p in run.iterdir()) / 2**20
        print(f"wrote the run: {a.steps} steps x {a.rollouts} rollouts x {a.tokens} tokens ({size:.0f} MiB) in {time.perf_counter() - t:.1f} s")
        load0 = os.getloadavg()
        r = subprocess.run([sys.executable, "-c", CHILD, str(run), str(Path(d) / "site" / "run.html"), str(a.step_groups)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        if r.returncode: sys.exit(r.stderr[-2000:])
        load1 = os.getloadavg()
        wall, cpu, rss, child = map(float, r.stdout.split()[-4:])
        pages = len(list((Path(d) / "site" / "run_steps").glob("*.html")))
        page = (Path(d) / "site" / "run.html").stat().st_size / 1024
    workers = min(4, len(os.sched_getaffinity(0)))
    total = rss + workers * child      # the parent and every worker at its own peak at once: an upper bound
    print(f"read + report: {wall:.1f} s wall ({wall / a.steps * 1000:.0f} ms per step), {cpu:.1f} CPU seconds ({cpu / a.steps * 1000:.0f} ms per step, "
          f"{cpu / workers:.1f} s per core on {workers} cores); load average (1 min) {load0[0]:.1f} before, {load1[0]:.1f} after")
    print(f"peak RSS: parent {rss:.0f} MiB, largest of "
          f"{workers} workers {child:.0f} MiB, together at most {total:.0f} MiB; run page {page:.0f} KiB, {pages} step pages of {a.step_groups} groups")
    print(f"target: <= 90 s and < 2048 MiB -> {'met' if wall <= 90 and total < 2048 else 'NOT met'}")


if __name__ == "__main__":
    main()
