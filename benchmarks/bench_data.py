"""to_batch padding (flat scatter) vs pad_sequence over per-row tensors, and read_rollouts throughput.

python -m benchmarks.bench_data [--rows 2048] [--max-len 1024] [--repeats 5]   # from the repository root
"""
import argparse, tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks._bench import fmt_time, median_time, ratio
from ktae_lab.data import read_rollouts, to_batch, write_rollouts


def pad_sequence_batch(df, pad_id=0):
    "The obvious alternative: one tensor per row, then torch's pad_sequence."
    ids = [torch.tensor(x, dtype=torch.long) for x in df.token_ids]
    masks = [torch.tensor(m, dtype=torch.long) for m in df.response_mask]
    pad = torch.nn.utils.rnn.pad_sequence
    return pad(ids, batch_first=True, padding_value=pad_id), pad(masks, batch_first=True, padding_value=0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, a.max_len + 1, a.rows)
    recs = [{"group_id": i // 16, "rollout_id": i % 16, "token_ids": rng.integers(0, 150000, n).tolist(),
             "reward": float(rng.integers(0, 2))} for i, n in enumerate(lengths)]
    with tempfile.TemporaryDirectory() as d:
        p = write_rollouts(recs, Path(d) / "r.jsonl")
        t_read = median_time(lambda: read_rollouts(p), max(1, a.repeats // 2))
        df = read_rollouts(p)
    b = to_batch(df)
    r, m = pad_sequence_batch(df)
    assert torch.equal(b.responses, r) and torch.equal(b.response_mask, m)
    t_ours = median_time(lambda: to_batch(df), a.repeats)
    t_pad = median_time(lambda: pad_sequence_batch(df), a.repeats)
    ntok = int(lengths.sum())
    print(f"{a.rows} rows, {ntok} tokens, L={b.responses.shape[1]}")
    print(f"read_rollouts: median {fmt_time(t_read)} ({ntok / t_read / 1e6:.2f} M tokens/s)")
    print(f"to_batch (flat scatter): median {fmt_time(t_ours)}")
    print(f"pad_sequence over rows:  median {fmt_time(t_pad)}   ratio pad_sequence/to_batch = {ratio(t_pad, t_ours):.2f}")


if __name__ == "__main__":
    main()
