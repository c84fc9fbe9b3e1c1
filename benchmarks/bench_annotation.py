"""Benchmark every annotator on the same seeded simulated problems (ktae_lab.simulator).

    python -m benchmarks.bench_annotation [--questions 90] [--seed 0] [--no-ablations]   # from the repository root

Prints first-error accuracy, mean signed position error (early/late bias), step-label F1 and the cost per wrong
solution (probes, rollouts, tokens; baselines and pilots amortised), then the cost ratios next to the authors'
cost table (EpicPRM dataset card). Each method runs at its published setting: Math-Shepherd 8 rollouts per step,
hard label = any success; OmegaPRM binary search with 8 rollouts per probe; EpicPRM k = 48 per completer
(sequential, binary) and the adaptive pilot (72 per completer, k_q = max(16, 8 ceil(i*/8))), alpha = 0.5.
"""
import argparse, sys, time

import torch

# the authors' cost table (EpicPRM dataset card): probes, sampled number, generated tokens for ~800 wrong chains
CARD = {"epic_sequential": (4204, 209.81e3, 76.67e6), "epic_binary": (2620, 133.78e3, 42.52e6),
        "epic_adaptive": (2539, 70.40e3, 27.30e6)}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench_annotation", description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=90, help="simulated questions (6 wrong solutions each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-steps", type=int, default=4)
    ap.add_argument("--max-steps", type=int, default=20)
    ap.add_argument("--lucky-delta", type=float, default=None,
                    help="log-weight penalty of lucky successes after an error (default SimConfig's 0.3; 0 = weighting cannot help)")
    ap.add_argument("--no-ablations", action="store_true", help="skip the ablation rows (no shift, count weights, ...)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import pandas as pd
    from ktae_lab.simulator import SimConfig, simulate_problems, compare_methods

    cfg = SimConfig(min_steps=args.min_steps, max_steps=args.max_steps,
                    **({} if args.lucky_delta is None else dict(lucky_delta=args.lucky_delta)))
    probs = simulate_problems(args.questions, cfg, seed=args.seed)
    wrong = probs.solutions[~probs.solutions.correct]
    print(f"simulated {args.questions} questions, {len(wrong)} wrong solutions, S in [{wrong.S.min()}, {wrong.S.max()}] "
          f"(mean {wrong.S.mean():.2f}), seed {args.seed}, lucky_delta {cfg.lucky_delta}")
    methods = {m: (m, {}) for m in ("math_shepherd", "omega_binary", "epic_sequential", "epic_binary", "epic_adaptive")}
    if not args.no_ablations:
        methods.update({
            "math_shepherd SE tau=0.5": ("math_shepherd", dict(tau=0.5)),
            "epic_binary count-weights": ("epic_binary", dict(weighting="count")),
            "epic_adaptive no-shift": ("epic_adaptive", dict(shift=False)),
            "epic_adaptive count-weights": ("epic_adaptive", dict(weighting="count")),
            "epic_adaptive no-skip": ("epic_adaptive", dict(skip=False)),
            "epic_binary alpha=0.3": ("epic_binary", dict(alpha=0.3)),
            "epic_binary alpha=0.7": ("epic_binary", dict(alpha=0.7)),
        })
    t0 = time.perf_counter()
    rows = []
    for name, spec in methods.items():
        t = time.perf_counter()
        tab = compare_methods(probs, {name: spec})
        tab["seconds"] = time.perf_counter() - t
        rows.append(tab)
    tab = pd.concat(rows)
    pd.set_option("display.width", 200)
    print(tab.round({"coverage": 3, "fe_acc": 3, "fe_acc_all": 3, "offset": 3, "abs_offset": 3, "f1": 3, "probes": 2, "rollouts": 1,
                     "tokens": 0, "seconds": 1}).to_string())

    print("\ncost relative to epic_sequential: ours (simulated) vs the authors' card")
    seq = tab.loc["epic_sequential"]
    lines = []
    for m in ("epic_sequential", "epic_binary", "epic_adaptive"):
        r, c = tab.loc[m], CARD[m]
        lines.append(dict(method=m, probes=r.probes / seq.probes, rollouts=r.rollouts / seq.rollouts, tokens=r.tokens / seq.tokens,
                          card_probes=c[0] / CARD["epic_sequential"][0], card_samples=c[1] / CARD["epic_sequential"][1],
                          card_tokens=c[2] / CARD["epic_sequential"][2], fe_acc=r.fe_acc))
    print(pd.DataFrame(lines).set_index("method").round(3).to_string())
    a, b, s, ms = (tab.loc[m] for m in ("epic_adaptive", "epic_binary", "epic_sequential", "math_shepherd"))
    print(f"\nadaptive fe_acc {a.fe_acc:.3f} (skips as misses: {a.fe_acc_all:.3f}) vs math_shepherd {ms.fe_acc:.3f}: "
          f"{'>=' if min(a.fe_acc, a.fe_acc_all) >= ms.fe_acc else '<'}")
    spread = max(a.fe_acc, b.fe_acc, s.fe_acc) - min(a.fe_acc, b.fe_acc, s.fe_acc)
    print(f"epic accuracies within {100 * spread:.1f} points; rollouts binary/sequential {b.rollouts / s.rollouts:.3f}, "
          f"adaptive/binary {a.rollouts / b.rollouts:.3f}")
    print("fe_acc is over labelled solutions; coverage < 1 means the adaptive pilot skipped too-hard questions "
          "(their pilot cost stays in the per-solution cost)")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
