"""Speed of the advantage, loss and DAPO helpers against verl's implementations and plain loops.

    python -m benchmarks.bench_losses                  # CPU, 1 thread (run from the repository root)
    python -m benchmarks.bench_losses --device cuda    # also checks that GPU results equal the CPU ones

Prints medians (ms) and ratios; verl rows are skipped when verl is not importable.
"""
import argparse

import numpy as np
import torch

from benchmarks._bench import median_time, ratio
from ktae_lab.advantages import grpo_advantages
from ktae_lab.losses import policy_loss
from ktae_lab.ktae import ktae_advantages
from ktae_lab.dapo import groups_with_spread, overlong_penalty


def median_ms(fn, repeat=7, sync=None):
    "Median milliseconds over `repeat` calls after one warm-up call."
    return median_time(fn, repeat, warmup=1, sync=sync) * 1e3


def row(name, ours, ref=None, ref_name=""):
    extra = f"   {ref_name} {ref:9.2f} ms   ratio {ratio(ref, ours):7.1f}x" if ref is not None else ""
    print(f"{name:42s} ours {ours:9.2f} ms{extra}")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    try:
        from verl.trainer.ppo import core_algos as ca
    except Exception:
        ca = None
    g = torch.Generator().manual_seed(0)

    # 1. GRPO advantages: 1024 prompts x 16 rollouts (one KTAE step)
    B, G = 16384, 16
    scores = torch.randint(0, 2, (B,), generator=g).float()
    uid = np.repeat(np.array([f"u{i}" for i in range(B // G)], dtype=object), G)
    ours = median_ms(lambda: grpo_advantages(scores.to(dev), index=uid), sync=sync)
    if ca is not None:
        tlr, mask1 = scores[:, None].clone(), torch.ones(B, 1)
        loop = median_ms(lambda: ca.compute_grpo_outcome_advantage(tlr.clone(), mask1, uid), repeat=3)
        vec = median_ms(lambda: ca.compute_grpo_vectorized_outcome_advantage(tlr.clone(), mask1, uid))
        row(f"grpo_advantages B={B} (uid strings)", ours, loop, "verl loop")
        row("", ours, vec, "verl vectorized")
    else:
        row(f"grpo_advantages B={B} (uid strings)", ours)

    # 2. policy loss forward + backward: 64 x 3072 tokens
    B2, L = 64, 3072
    old = -torch.rand(B2, L, generator=g) * 3
    new = old + (torch.rand(B2, L, generator=g) - 0.5)
    adv = torch.randn(B2, L, generator=g)
    m = (torch.rand(B2, L, generator=g) > 0.2).float()
    old_d, new_d, adv_d, m_d = (t.to(dev) for t in (old, new, adv, m))
    def ours_pl():
        x = new_d.clone().requires_grad_(); policy_loss(old_d, x, adv_d, m_d, 0.2, 0.28, 10.0)[0].backward()
    t_ours = median_ms(ours_pl, sync=sync)
    if ca is not None:
        import warnings
        warnings.simplefilter("ignore")
        def verl_pl():
            x = new_d.clone().requires_grad_()
            ca.compute_policy_loss(old_d, x, adv_d, m_d, cliprange=0.2, cliprange_low=0.2, cliprange_high=0.28,
                                   clip_ratio_c=10.0, loss_agg_mode="token-mean")[0].backward()
        row(f"policy_loss fwd+bwd {B2}x{L}", t_ours, median_ms(verl_pl, sync=sync), "verl")
    else:
        row(f"policy_loss fwd+bwd {B2}x{L}", t_ours)

    # 3. dynamic-sampling filter: 2048 prompts x 16
    B3 = 2048 * 16
    acc = torch.randint(0, 2, (B3,), generator=g)
    uid3 = np.repeat(np.array([f"p{i}" for i in range(2048)], dtype=object), 16)
    def loop_filter():
        vals = {}
        for v, u in zip(acc.tolist(), uid3): vals.setdefault(u, []).append(v)
        keep = {u for u, v in vals.items() if np.std(v) > 0 or len(v) == 1}
        return [u in keep for u in uid3]
    row(f"groups_with_spread B={B3}", median_ms(lambda: groups_with_spread(acc.to(dev), index=uid3), sync=sync),
        median_ms(loop_filter, repeat=3), "python loop (verl-style)")

    # 4. overlong penalty over the batch
    lens = torch.randint(0, 3073, (B3,), generator=g)
    def loop_overlong():
        return [min(-(n - 2560) / 512, 0) for n in lens.tolist()]
    row(f"overlong_penalty B={B3}", median_ms(lambda: overlong_penalty(lens.to(dev), 3072, 512), sync=sync),
        median_ms(loop_overlong, repeat=3), "python loop (verl-style)")

    # 5. KTAE token advantages on a small step (64 prompts x 16 x 512 tokens)
    B5, L5 = 64 * 16, 512
    resp = torch.randint(0, 5000, (B5, L5), generator=g)
    m5 = (torch.arange(L5)[None] < torch.randint(16, L5 + 1, (B5,), generator=g)[:, None]).long()
    r5 = torch.randint(0, 2, (B5,), generator=g).float()
    row(f"ktae_advantages {B5}x{L5}", median_ms(lambda: ktae_advantages(resp.to(dev), m5.to(dev), r5.to(dev), group_size=16),
                                                       repeat=3, sync=sync))

    # 6. the recorder of 15_interop (record_dir=): off costs nothing (one `is None` test), on costs one JSONL append
    import tempfile
    from types import SimpleNamespace
    from ktae_lab.interop import patch_verl_compute_advantage
    tlr = torch.zeros(B5, L5); tlr[torch.arange(B5), m5.sum(1) - 1] = r5
    uid = np.array([f"u{i // 16}" for i in range(B5)], dtype=object)
    data = SimpleNamespace(batch={"responses": resp.to(dev), "response_mask": m5.to(dev), "token_level_rewards": tlr.to(dev)},
                           non_tensor_batch={"uid": uid})
    off = SimpleNamespace(compute_advantage=lambda d, e, **k: d); patch_verl_compute_advantage(module=off)
    with tempfile.TemporaryDirectory() as d:
        on = SimpleNamespace(compute_advantage=lambda d, e, **k: d); patch_verl_compute_advantage(module=on, record_dir=d)
        t_off = median_ms(lambda: off.compute_advantage(data, "ktae"), repeat=5, sync=sync)
        t_on = median_ms(lambda: on.compute_advantage(data, "ktae"), repeat=5, sync=sync)
    t_plain = median_ms(lambda: ktae_advantages(resp.to(dev), m5.to(dev), r5.to(dev), index=uid), repeat=5, sync=sync)
    row(f"patched compute_advantage, record off", t_off, t_plain, "ktae_advantages alone")
    row(f"patched compute_advantage, record on", t_on, t_off, "record off")

    if dev.type != "cpu":                                     # device parity
        cpu_l, cpu_m = policy_loss(old, new, adv, m, 0.2, 0.28, 10.0)
        dev_l, dev_m = policy_loss(old_d, new_d, adv_d, m_d, 0.2, 0.28, 10.0)
        A_cpu = ktae_advantages(resp, m5, r5, group_size=16)
        A_dev = ktae_advantages(resp.to(dev), m5.to(dev), r5.to(dev), group_size=16)
        print(f"device parity: |loss diff| {abs(cpu_l.item() - dev_l.item()):.2e}, loss on {dev_l.device}, "
              f"metrics on {dev_m['pg_clipfrac'].device}; KTAE max |diff| {(A_cpu - A_dev.cpu()).abs().max().item():.2e}, "
              f"advantages on {A_dev.device}")


if __name__ == "__main__":
    main()
