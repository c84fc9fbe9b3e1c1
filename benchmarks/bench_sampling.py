"""Sampling throughput (generated tokens per second) and peak memory (RSS) of `ktae_lab.sampling`.

    python benchmarks/bench_sampling.py                       # tiny random model: the code path's overhead
    python benchmarks/bench_sampling.py --model smollm2 --threads 1 --problems-per-batch 4 --repeats 3

Prints, per repeat, the wall time of the `generate` calls, the tokens kept (up to and including EOS), the token
*slots* computed (rows x steps, padding after EOS included), and their medians; then the process's peak RSS.
Throughput on a shared machine varies with its load: the load average is printed beside each figure.
"""
import argparse, os, statistics, sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ktae_lab.lm import load_model, render_prompt, tiny_random_lm
from ktae_lab.sampling import DEFAULT_SYSTEM_PROMPT, SampleConfig, _peak_rss_mb, generate_group_batch, load_problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="'tiny' (random 2-layer Llama), 'smollm2', or a model directory")
    ap.add_argument("--problems", default=str(Path(__file__).resolve().parent.parent / "data" / "problems.jsonl"))
    ap.add_argument("--num-rollouts", "-G", type=int, default=16)
    ap.add_argument("--problems-per-batch", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--system-prompt", default=DEFAULT_SYSTEM_PROMPT)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    rss0 = _peak_rss_mb()
    t0 = time.perf_counter()
    lm, tok, name = tiny_random_lm() if a.model == "tiny" else load_model(a.model)
    load_s = time.perf_counter() - t0
    rss_model = _peak_rss_mb()
    problems = load_problems(a.problems)
    print(f"model {name}: loaded in {load_s:.1f} s; threads {a.threads}; batch {a.problems_per_batch} problems x "
          f"{a.num_rollouts} rollouts; max_new_tokens {a.max_new_tokens}; load average {os.getloadavg()[0]:.1f}")
    rates, slot_rates = [], []
    for r in range(a.repeats):
        batch = problems[r * a.problems_per_batch:(r + 1) * a.problems_per_batch] or problems[:a.problems_per_batch]
        prompts = [render_prompt(tok, p["question"], a.system_prompt, True) for p in batch]
        cfg = SampleConfig(num_rollouts=a.num_rollouts, temperature=a.temperature, top_p=0.95, max_new_tokens=a.max_new_tokens,
                           seed=r, system_prompt=a.system_prompt, problems_per_batch=a.problems_per_batch)
        t = time.perf_counter()
        rows = generate_group_batch(lm, tok, prompts, [p["problem_id"] for p in batch], cfg)
        dt = time.perf_counter() - t
        kept = sum(len(x["token_ids"]) for x in rows)
        slots = len(rows) * max(len(x["token_ids"]) for x in rows)
        rates.append(kept / dt); slot_rates.append(slots / dt)
        print(f"  repeat {r}: {dt:6.1f} s  kept {kept:6d} tokens ({kept / dt:7.1f} tok/s)  computed {slots:6d} slots "
              f"({slots / dt:7.1f} slot/s)  truncated {sum(x['truncated'] for x in rows)}/{len(rows)}  "
              f"load {os.getloadavg()[0]:.1f}")
    print(f"median: {statistics.median(rates):.1f} tokens/s kept, {statistics.median(slot_rates):.1f} slots/s computed; "
          f"ratio kept/computed {statistics.median(rates) / statistics.median(slot_rates):.2f}")
    print(f"peak RSS: {_peak_rss_mb():.0f} MiB (interpreter + imports {rss0:.0f} MiB, after loading the model "
          f"{rss_model:.0f} MiB)")


if __name__ == "__main__":
    main()
