"""Policy loss, aggregation, KL and entropy: re-derived formulas, hand-derived gradients, verl/TRL parity, bad input."""
import math
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from ktae_lab.losses import (AGG_MODES, TRL_LOSS_TYPES, KL_KINDS, agg_loss, clipped_surrogate, policy_loss, kl_penalty,
                             entropy_from_logits, entropy_bonus, actor_loss, resolve_agg_mode)


def _batch(seed=0, B=6, L=9, spread=0.6, token_adv=False):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, L, generator=g, dtype=torch.float64) * 3
    new = old + (torch.rand(B, L, generator=g, dtype=torch.float64) - 0.5) * 2 * spread
    lens = torch.randint(1, L + 1, (B,), generator=g)
    mask = (torch.arange(L)[None] < lens[:, None]).to(torch.float64)
    adv = torch.randn(B, L, generator=g, dtype=torch.float64) if token_adv else torch.randn(B, generator=g, dtype=torch.float64)
    return old, new, adv, mask


# ---- re-derived formulas (explicit per-token / per-row loops) ----
def _token_loss_ref(lr, a, lo, hi, c):
    r = math.exp(max(-20.0, min(20.0, lr)))
    loss = max(-a * r, -a * min(max(r, 1 - lo), 1 + hi))
    clipped = -a * min(max(r, 1 - lo), 1 + hi) > -a * r
    dual = False
    if c is not None and a < 0:
        dual = loss > -a * c
        loss = min(loss, -a * c)
    return loss, clipped, dual


def _agg_ref(lm, mk, mode, C=None):
    rows = [(sum(l * m for l, m in zip(lr, mr)), sum(mr)) for lr, mr in zip(lm.tolist(), mk.tolist())]
    nonempty = [(s, n) for s, n in rows if n > 0]
    if mode == "token-mean": return sum(s for s, _ in rows) / max(sum(n for _, n in rows), 1e-300)
    if mode == "token-sum": return sum(s for s, _ in rows)
    if mode == "seq-mean-token-mean": return sum(s / n for s, n in nonempty) / len(nonempty)
    if mode == "seq-mean-token-sum": return sum(s for s, _ in nonempty) / len(nonempty)
    if mode == "seq-mean-token-sum-norm": return sum(s for s, _ in nonempty) / len(nonempty) / (C or lm.shape[1])


@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("clip", [(0.2, 0.2, 3.0), (0.2, 0.28, 10.0), (0.1, 0.3, None)])
@pytest.mark.parametrize("token_adv", [False, True])
def test_policy_loss_matches_loop_reference(mode, clip, token_adv):
    old, new, adv, mask = _batch(seed=3, spread=1.5, token_adv=token_adv)
    loss, met = policy_loss(old, new, adv, mask, *clip, loss_agg_mode=mode)
    A = adv if token_adv else adv[:, None].expand_as(old)
    per = [[_token_loss_ref(new[i, t].item() - old[i, t].item(), A[i, t].item(), *clip) for t in range(old.shape[1])]
           for i in range(old.shape[0])]
    lm = torch.tensor([[p[0] for p in row] for row in per], dtype=torch.float64)
    assert loss.item() == pytest.approx(_agg_ref(lm, mask, mode), abs=1e-10)
    n = mask.sum().item()
    assert float(met["pg_clipfrac"]) == pytest.approx(sum(p[1] * m for row, mr in zip(per, mask.tolist()) for p, m in zip(row, mr)) / n)
    assert float(met["pg_clipfrac_lower"]) == pytest.approx(sum(p[2] * m for row, mr in zip(per, mask.tolist()) for p, m in zip(row, mr)) / n)
    assert float(met["ppo_kl"]) == pytest.approx(((old - new) * mask).sum().item() / n)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_agg_loss_matches_reference_and_ignores_padding_values(mode):
    g = torch.Generator().manual_seed(5)
    lm = torch.randn(5, 7, generator=g, dtype=torch.float64)
    mask = (torch.rand(5, 7, generator=g) > 0.4).double(); mask[2] = 0            # one fully masked row
    assert agg_loss(lm, mask, mode).item() == pytest.approx(_agg_ref(lm, mask, mode), abs=1e-12)
    poisoned = torch.where(mask.bool(), lm, torch.full_like(lm, float("nan")))
    assert agg_loss(poisoned, mask, mode).item() == pytest.approx(_agg_ref(lm, mask, mode), abs=1e-12)
    assert agg_loss(lm, torch.zeros_like(mask), mode).item() == 0.0


def test_agg_loss_global_normalisers_split_exactly():
    """Micro-batches normalised by the global counts add up to the full-batch loss (verl's dp invariance)."""
    lm = torch.randn(8, 6, dtype=torch.float64)
    mask = (torch.rand(8, 6) > 0.3).double(); mask[:, 0] = 1
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"):
        full = agg_loss(lm, mask, mode)
        parts = sum(agg_loss(lm[s], mask[s], mode, batch_num_tokens=mask.sum(), global_batch_size=8)
                    for s in (slice(0, 3), slice(3, 8)))
        assert parts.item() == pytest.approx(full.item(), abs=1e-12), mode


def test_trl_aliases():
    lm = torch.randn(4, 5, dtype=torch.float64); mask = torch.ones(4, 5, dtype=torch.float64); mask[1, 3:] = 0
    for alias, mode in TRL_LOSS_TYPES.items():
        assert resolve_agg_mode(alias) == mode
        assert agg_loss(lm, mask, alias).item() == agg_loss(lm, mask, mode).item()


# ---- hand-derived gradients: d loss_t / d log_prob_t = -A r where the plain term is active, else 0 ----
@pytest.mark.parametrize("a,ratio,lo,hi,c,active", [
    (1.0, 1.1, 0.2, 0.2, 3.0, True),     # A > 0 inside the clip range
    (1.0, 1.5, 0.2, 0.2, 3.0, False),    # A > 0 above 1 + eps_high: clipped
    (1.0, 1.25, 0.2, 0.28, 3.0, True),   # A > 0, inside thanks to clip-higher
    (1.0, 0.5, 0.2, 0.2, 3.0, True),     # A > 0 below 1 - eps_low: min picks the unclipped term
    (-1.0, 0.9, 0.2, 0.2, 3.0, True),    # A < 0 inside
    (-1.0, 0.5, 0.2, 0.2, 3.0, False),   # A < 0 below 1 - eps_low: clipped
    (-1.0, 2.0, 0.2, 0.2, 3.0, True),    # A < 0 above 1 + eps_high: unclipped, below c
    (-1.0, 5.0, 0.2, 0.2, 3.0, False),   # A < 0 beyond c: dual clip
    (-1.0, 5.0, 0.2, 0.2, None, True),   # same without dual clip: gradient -A r
])
def test_token_gradient_hand_derived(a, ratio, lo, hi, c, active):
    lp = torch.tensor([[math.log(ratio)]], dtype=torch.float64, requires_grad=True)
    loss, _, _ = clipped_surrogate(lp - 0.0, torch.tensor([[a]], dtype=torch.float64), lo, hi, c)
    loss.sum().backward()
    expected = -a * ratio if active else 0.0
    assert lp.grad.item() == pytest.approx(expected, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(AGG_MODES), st.sampled_from([3.0, 10.0, None]))
def test_batch_gradient_hand_derived(seed, mode, c):
    old, new, adv, mask = _batch(seed=seed, spread=1.5, token_adv=True)
    new = new.clone().requires_grad_()
    loss, _ = policy_loss(old, new, adv, mask, 0.2, 0.28, c, mode)
    loss.backward()
    r = (new - old).detach().exp()
    _, clipped, dual = clipped_surrogate((new - old).detach(), adv, 0.2, 0.28, c)
    g_tok = torch.where(clipped | dual, torch.zeros_like(r), -adv * r) * mask
    # d agg / d loss_mat for each mode
    count = mask.sum(-1, keepdim=True); nseq = (count > 0).sum()
    w = {"token-mean": mask / mask.sum(), "token-sum": mask,
         "seq-mean-token-mean": mask / count.clamp_min(1) / nseq, "seq-mean-token-sum": mask / nseq,
         "seq-mean-token-sum-norm": mask / nseq / mask.shape[1]}[mode]
    torch.testing.assert_close(new.grad, g_tok * w, atol=1e-12, rtol=1e-9)


# ---- properties ----
@settings(max_examples=60, deadline=None)
@given(st.floats(-5, 5), st.floats(0.01, 50), st.floats(0, 0.9), st.floats(0, 2), st.floats(1.01, 20))
def test_surrogate_bounds(a, ratio, lo, hi, c):
    l, clipped, dual = clipped_surrogate(torch.tensor([[math.log(ratio)]], dtype=torch.float64),
                                         torch.tensor([[a]], dtype=torch.float64), lo, hi, c)
    l = l.item()
    assert l >= -a * ratio - 1e-9 or a < 0                       # PPO is pessimistic: loss >= -A r (before dual clip)
    if a > 0: assert l >= -a * (1 + hi) - 1e-9                  # gain from A > 0 is capped at A (1 + eps_high)
    if a < 0: assert l <= -a * c + 1e-9                          # dual clip caps the loss for A < 0
    if a == 0: assert l == 0


def test_no_nan_on_degenerate_input():
    old = torch.zeros(2, 3); new = torch.full((2, 3), 1e4)   # log-ratio far beyond the clamp
    loss, m = policy_loss(old, new, torch.tensor([1., -1.]), torch.zeros(2, 3))
    assert loss.item() == 0.0 and all(float(v) == 0.0 for v in m.values())
    loss, m = policy_loss(old, new, torch.tensor([1., -1.]), torch.ones(2, 3))
    assert torch.isfinite(loss) and all(math.isfinite(float(v)) for v in m.values())


def test_float64_and_bool_mask():
    old, new, adv, mask = _batch()
    l1, _ = policy_loss(old, new, adv, mask)
    l2, _ = policy_loss(old, new, adv, mask.bool())
    assert l1.dtype == torch.float64 and l1.item() == l2.item()


# ---- KL ----
@pytest.mark.parametrize("kind", list(KL_KINDS) + ["k1+", "k3+", "low_var_kl+", "abs+"])
def test_kl_formulas(kind):
    lp = torch.tensor([[-1.0, -0.2, -3.0, -0.1]], dtype=torch.float64)
    ref = torch.tensor([[-1.5, -0.2, -0.5, -30.0]], dtype=torch.float64)
    base = kind.rstrip("+"); d = ref - lp
    expect = {"k1": -d, "kl": -d, "abs": d.abs(), "k2": 0.5 * d * d, "mse": 0.5 * d * d,
              "k3": (d.clamp(-20, 20).exp() - d.clamp(-20, 20) - 1).clamp(-10, 10)}
    expect["low_var_kl"] = expect["k3"]
    torch.testing.assert_close(kl_penalty(lp, ref, kind), expect[base])
    x = lp.clone().requires_grad_(); kl_penalty(x, ref, kind).sum().backward()
    if kind.endswith("+"): torch.testing.assert_close(x.grad, (lp - ref))      # k2 gradient (straight-through)


def test_k3_nonnegative_and_small_for_close_policies():
    lp = torch.randn(4, 8, dtype=torch.float64); ref = lp + 1e-3 * torch.randn(4, 8, dtype=torch.float64)
    k3 = kl_penalty(lp, ref, "k3")
    assert (k3 >= 0).all() and k3.max() < 1e-5


def test_entropy():
    logits = torch.randn(3, 4, 11, dtype=torch.float64)
    p = logits.softmax(-1)
    torch.testing.assert_close(entropy_from_logits(logits), -(p * p.log()).sum(-1))
    mask = torch.ones(3, 4); mask[0, 2:] = 0
    H = entropy_from_logits(logits)
    assert entropy_bonus(H, mask, 0.01).item() == pytest.approx(-0.01 * (H * mask).sum().item() / mask.sum().item())


# ---- parity with verl core_algos (compared directly when verl imports) ----
def _verl():
    return pytest.importorskip("verl.trainer.ppo.core_algos", reason="verl not installed", exc_type=ImportError)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm", "token-sum"])
@pytest.mark.parametrize("clip", [(0.2, 0.2, 3.0), (0.2, 0.28, 10.0), (0.2, 0.24, 10.0)])
@pytest.mark.parametrize("token_adv", [False, True])
def test_policy_loss_matches_verl(mode, clip, token_adv):
    ca = _verl()
    import warnings
    from omegaconf import OmegaConf
    old, new, adv, mask = _batch(seed=11, B=8, L=12, spread=1.5, token_adv=token_adv)
    old, new, adv, mask = old.float(), new.float(), adv.float(), mask.float()
    A = adv if token_adv else adv[:, None] * mask
    lo, hi, c = clip
    ours, met = policy_loss(old, new, A if token_adv else adv, mask, lo, hi, c, mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, clipfrac, ppo_kl, lower = ca.compute_policy_loss(old, new, A, mask, cliprange=0.2, cliprange_low=lo,
                                                              cliprange_high=hi, clip_ratio_c=c, loss_agg_mode=mode)
    assert abs(ours.item() - ref.item()) < 1e-6
    assert abs(float(met["pg_clipfrac"]) - clipfrac.item()) < 1e-6
    assert abs(float(met["pg_clipfrac_lower"]) - lower.item()) < 1e-6
    assert abs(float(met["ppo_kl"]) - ppo_kl.item()) < 1e-6
    cfg = OmegaConf.create({"clip_ratio": 0.2, "clip_ratio_low": lo, "clip_ratio_high": hi, "clip_ratio_c": c,
                            "global_batch_info": {}})
    ref2, m2 = ca.get_policy_loss_fn("vanilla")(old, new, A, mask, loss_agg_mode=mode, config=cfg)
    assert abs(ours.item() - ref2.item()) < 1e-6
    assert abs(float(met["pg_clipfrac"]) - m2["actor/pg_clipfrac"]) < 1e-6
    # gradients agree too
    x = new.clone().requires_grad_(); y = new.clone().requires_grad_()
    policy_loss(old, x, A, mask, lo, hi, c, mode)[0].backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ca.compute_policy_loss(old, y, A, mask, cliprange=0.2, cliprange_low=lo, cliprange_high=hi,
                               clip_ratio_c=c, loss_agg_mode=mode)[0].backward()
    torch.testing.assert_close(x.grad, y.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", ["token-mean", "token-sum", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"])
def test_agg_loss_matches_verl(mode):
    ca = _verl()
    g = torch.Generator().manual_seed(4)
    lm = torch.randn(6, 10, generator=g); mask = (torch.rand(6, 10, generator=g) > 0.5).float(); mask[4] = 0
    mask[[0, 1, 2, 3, 5], 0] = 1
    assert abs(agg_loss(lm, mask, mode).item() - ca.agg_loss(lm, mask, mode).item()) < 1e-6
    if mode == "seq-mean-token-sum-norm":
        assert abs(agg_loss(lm, mask, mode, 4096).item() - ca.agg_loss(lm, mask, mode, loss_scale_factor=4096).item()) < 1e-6
    if mode != "token-sum":
        a = agg_loss(lm, mask, mode, batch_num_tokens=77, global_batch_size=13)
        b = ca.agg_loss(lm, mask, mode, batch_num_tokens=77, global_batch_size=13)
        assert abs(a.item() - b.item()) < 1e-6


@pytest.mark.parametrize("kind", ["kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3", "k3+", "low_var_kl+"])
def test_kl_matches_verl(kind):
    ca = _verl()
    g = torch.Generator().manual_seed(6)
    lp = -torch.rand(5, 7, generator=g) * 4; ref = -torch.rand(5, 7, generator=g) * 4
    ref[0, 0] = -40.0   # exercise the clamps
    torch.testing.assert_close(kl_penalty(lp, ref, kind), ca.kl_penalty(lp, ref, kind), atol=1e-6, rtol=0)
    x = lp.clone().requires_grad_(); y = lp.clone().requires_grad_()
    kl_penalty(x, ref, kind).sum().backward(); ca.kl_penalty(y, ref, kind).sum().backward()
    torch.testing.assert_close(x.grad, y.grad, atol=1e-6, rtol=0)


def test_entropy_matches_verl():
    _verl()
    import verl.utils.torch_functional as vF
    logits = torch.randn(3, 5, 17)
    torch.testing.assert_close(entropy_from_logits(logits), vF.entropy_from_logits(logits), atol=1e-6, rtol=0)


# ---- parity with TRL's GRPOTrainer._compute_loss (called directly on a stand-in trainer when trl imports) ----
def _trl_loss(loss_type, old, new, adv, mask, eps_lo, eps_hi, beta=0.0, ref=None, entropy=None, entropy_coef=0.0,
              max_completion_length=None):
    mod = pytest.importorskip("trl.trainer.grpo_trainer", reason="trl not installed", exc_type=ImportError)
    B, T = new.shape
    acc = SimpleNamespace(num_processes=1, gather=lambda x: x, gather_for_metrics=lambda x: x,
                          reduce=lambda x, reduction="sum": x, sync_gradients=True)
    ent = torch.zeros_like(new) if entropy is None else entropy
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (new, ent, None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token", beta=beta,
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False), loss_type=loss_type,
        epsilon_low=eps_lo, epsilon_high=eps_hi, use_vllm=False, vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=False), current_gradient_accumulation_steps=1,
        max_completion_length=max_completion_length or T, accelerator=acc, _entropy_bonus_enabled=entropy_coef != 0,
        use_adaptive_entropy=False, entropy_coef=entropy_coef, aux_loss_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)})
    inputs = {"prompt_ids": torch.zeros(B, 1, dtype=torch.long), "prompt_mask": torch.ones(B, 1, dtype=torch.long),
              "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old, "num_items_in_batch": mask.sum()}
    if ref is not None: inputs["ref_per_token_logps"] = ref
    return mod.GRPOTrainer._compute_loss(fake, None, inputs)


def _trl_formula(loss_type, old, new, adv, mask, lo, hi, beta=0.0, ref=None, max_completion_length=None):
    """TRL 1.16 GRPOTrainer._compute_loss re-derived (single process, no accumulation): runs without trl."""
    A = adv[:, None] if adv.dim() == 1 else adv
    r = (new - old).exp()
    per_tok = -torch.min(r * A, r.clamp(1 - lo, 1 + hi) * A)
    if beta: per_tok = per_tok + beta * ((ref - new).exp() - (ref - new) - 1)
    if loss_type == "grpo": return ((per_tok * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type in ("bnpo", "dapo"): return (per_tok * mask).sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo": return (per_tok * mask).sum() / (per_tok.size(0) * max_completion_length)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("token_adv", [False, True])
def test_policy_loss_matches_trl_formula(loss_type, token_adv):
    old, new, adv, mask = _batch(seed=23, B=8, L=10, spread=1.0, token_adv=token_adv)
    ref_lp = new + 0.3 * torch.randn_like(new)
    kw = {"loss_scale_factor": 16} if loss_type == "dr_grpo" else {}
    ours, _ = actor_loss(old, new, adv, mask, 0.2, 0.28, None, loss_type, ref_log_prob=ref_lp, kl_loss_coef=0.04,
                         kl_loss_type="k3", **kw)
    ref = _trl_formula(loss_type, old, new, adv, mask, 0.2, 0.28, 0.04, ref_lp, 16)
    assert abs(ours.item() - ref.item()) < 1e-10


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("eps", [(0.2, 0.2), (0.2, 0.28)])
@pytest.mark.parametrize("token_adv", [False, True])
def test_policy_loss_matches_trl(loss_type, eps, token_adv):
    old, new, adv, mask = _batch(seed=21, B=8, L=10, spread=1.0, token_adv=token_adv)
    old, new, adv, mask = old.float(), new.float(), adv.float(), mask.float()
    ref = _trl_loss(loss_type, old, new, adv, mask, *eps, max_completion_length=16)
    kw = {"loss_scale_factor": 16} if loss_type == "dr_grpo" else {}
    ours, _ = policy_loss(old, new, adv, mask, *eps, clip_ratio_c=None, loss_agg_mode=loss_type, **kw)
    assert abs(ours.item() - ref.item()) < 1e-6


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_actor_loss_with_kl_and_entropy_matches_trl(loss_type):
    old, new, adv, mask = _batch(seed=22, B=6, L=8, spread=0.5)
    old, new, adv, mask = old.float(), new.float(), adv.float(), mask.float()
    ref_lp = new + 0.3 * torch.randn_like(new)
    H = torch.rand_like(new) * 3
    ref = _trl_loss(loss_type, old, new, adv, mask, 0.2, 0.28, beta=0.04, ref=ref_lp, entropy=H, entropy_coef=0.01)
    ours, _ = actor_loss(old, new, adv, mask, 0.2, 0.28, None, loss_type, ref_log_prob=ref_lp, kl_loss_coef=0.04,
                         kl_loss_type="k3")
    ours = ours + entropy_bonus(H, mask, 0.01, "token-mean")   # TRL's entropy bonus is always a token mean
    assert abs(ours.item() - ref.item()) < 1e-6


# ---- bad input ----
def test_bad_input():
    old, new, adv, mask = _batch()
    with pytest.raises(ValueError, match="valid: token-mean, token-sum, seq-mean-token-mean"): policy_loss(old, new, adv, mask, loss_agg_mode="mean")
    with pytest.raises(ValueError, match="`clip_ratio_c`"): policy_loss(old, new, adv, mask, clip_ratio_c=1.0)
    with pytest.raises(ValueError, match="`clip_ratio_c`"): policy_loss(old, new, adv, mask, clip_ratio_c=0.5)
    with pytest.raises(ValueError, match="`clip_ratio_low`"): policy_loss(old, new, adv, mask, clip_ratio_low=-0.1)
    with pytest.raises(ValueError, match="`clip_ratio_low`"): policy_loss(old, new, adv, mask, clip_ratio_low=1.0)
    with pytest.raises(ValueError, match="`clip_ratio_high`"): policy_loss(old, new, adv, mask, clip_ratio_high=-0.2)
    with pytest.raises(ValueError, match="`old_log_prob` shape"): policy_loss(old[:, :-1], new, adv, mask)
    with pytest.raises(TypeError, match="`old_log_prob` dtype"): policy_loss(old.float(), new, adv, mask)
    with pytest.raises(TypeError, match="`log_prob` must be a floating-point"): policy_loss(old, new.long(), adv, mask)
    with pytest.raises(ValueError, match="`response_mask` shape"): policy_loss(old, new, adv, mask[:, :-1])
    with pytest.raises(ValueError, match="`response_mask` must contain only 0 and 1"): policy_loss(old, new, adv, mask * 2)
    with pytest.raises(ValueError, match="`advantages` shape"): policy_loss(old, new, adv[:-1], mask)
    with pytest.raises(TypeError, match="`advantages` must be a torch.Tensor"): policy_loss(old, new, adv.tolist(), mask)
    with pytest.raises(ValueError, match="`loss_scale_factor` must be a finite number > 0"): agg_loss(old, mask, "seq-mean-token-sum-norm", 0)
    with pytest.raises(ValueError, match="`loss_mat` must be 2-D"): agg_loss(old[0], mask[0], "token-mean")
    with pytest.raises(ValueError, match="valid: k1, kl, abs, k2, mse, k3, low_var_kl"): kl_penalty(old, new, "full")
    with pytest.raises(ValueError, match="`ref_log_prob` shape"): kl_penalty(old, new[:1], "k3")
    with pytest.raises(ValueError, match="`entropy` is required"): actor_loss(old, new, adv, mask, entropy_coeff=0.1)
