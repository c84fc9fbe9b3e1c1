"""Benchmark the views: how long rendering, explaining a group, an explorer update and the report take.

- token_html: one rollout of n tokens with per-token tooltips (statistics), median time and bytes per token.
- explain_group: one group of G x L Zipf-like tokens (KTAE + table + views), median time.
- KeyTokenExplorer: one knob change with and without the four plots.
- report_html: the shipped sample, with and without plots; page size.

    python -m benchmarks.bench_viz            # default sizes (about a minute on 2 busy CPU cores)
    python -m benchmarks.bench_viz --quick    # smaller
"""
import argparse, os
import torch

from benchmarks._bench import median_time, ratio
torch.set_num_threads(1)


def zipf_group(G, L, vocab=50_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    ids = torch.searchsorted((w.cumsum(0) / w.sum()).float(), torch.rand(G, L, generator=g)).clamp_max(vocab - 1) + 10
    lens = torch.randint(L // 3, L + 1, (G,), generator=g)
    mask = (torch.arange(L)[None] < lens[:, None]).long()
    rewards = (torch.rand(G, generator=g) < 0.5).float(); rewards[0], rewards[1] = 1.0, 0.0
    return ids, mask, rewards


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    from types import SimpleNamespace
    from ktae_lab.viz import token_html, explain_group
    from ktae_lab.widgets import KeyTokenExplorer
    from ktae_lab.report import report_html
    from ktae_lab.data import sample_rollouts_path
    r = a.repeats
    print(f"CPU threads 1, load average {os.getloadavg()[0]:.1f} (2 cores shared: times are indicative)")

    G, L = (8, 1024) if a.quick else (16, 3072)
    ids, mask, rewards = zipf_group(G, L)
    batch = SimpleNamespace(responses=ids, response_mask=mask, rewards=rewards, index=["g"] * G,
                            tokens=[[f"Ġt{i}" for i in row] for row in ids.tolist()], frame=None)
    gv = explain_group(batch, "g")
    t = median_time(lambda: explain_group(batch, "g"), max(1, r // 2))
    print(f"explain_group, one group {G} x {L} ({int(mask.sum())} valid tokens, {len(gv.table)} distinct): {t * 1e3:.0f} ms")
    v = gv.views[0]
    for n in ([256, 1024] if a.quick else [1000, 3000]):
        n = min(n, len(v.tokens))
        toks, sc, st = v.tokens[:n], v.scores[:n], v.stats[:n]
        h = token_html(toks, sc, st)
        t = median_time(lambda: token_html(toks, sc, st), r)
        t0 = median_time(lambda: token_html(toks, sc), r)
        print(f"token_html, {n} tokens: {t * 1e3:.1f} ms with tooltips ({t / n * 1e6:.1f} us/token, {len(h) / n:.0f} bytes/token); "
              f"{t0 * 1e3:.1f} ms without statistics")

    path = sample_rollouts_path()
    ex = KeyTokenExplorer(path, show_plots=False)
    flip = iter([2.0, 1.0] * 50)
    t = median_time(lambda: setattr(ex.alpha, "value", next(flip)), r)
    ex.show_plots.value = True
    t2 = median_time(lambda: setattr(ex.alpha, "value", next(flip)), max(1, r // 2))
    print(f"explorer knob change on the sample group (8 rollouts): {t * 1e3:.0f} ms without plots, {t2 * 1e3:.0f} ms with the 4 plots "
          f"(plots cost {ratio(t2, t):.1f}x)")

    t = median_time(lambda: report_html(path, plots=False), max(1, r // 2))
    page = report_html(path, plots=False)
    tp = median_time(lambda: report_html(path), 1 if a.quick else 2)
    pagep = report_html(path)
    print(f"report_html on the sample (5 groups, 40 rollouts): {t:.2f} s without plots ({len(page) / 1024:.0f} KiB), "
          f"{tp:.2f} s with plots ({len(pagep) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
