"""Rollout-level advantages: re-derived formulas, verl/TRL parity, properties and bad input."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from ktae_lab.advantages import (GRPO_EPS, ESTIMATORS, grpo_advantages, batch_std_advantages, rloo_advantages,
                                 outcome_advantages, token_advantages, outcome_token_advantages)


def _loop_reference(rewards, index, estimator, eps):
    """Slow per-group reference written from the formulas in rl_losses.md §2 (one group at a time)."""
    r = [float(x) for x in rewards]
    groups = {}
    for i, g in enumerate(index): groups.setdefault(g, []).append(i)
    out = [0.0] * len(r)
    batch_std = float(np.std(r, ddof=1)) if len(r) > 1 else 0.0
    for rows in groups.values():
        vals = np.array([r[i] for i in rows], dtype=np.float64)
        n = len(rows)
        for i in rows:
            if estimator == "grpo":
                mean, std = (0.0, 1.0) if n == 1 else (vals.mean(), vals.std(ddof=1))
                out[i] = (r[i] - mean) / (std + eps)
            elif estimator == "dr_grpo":
                out[i] = r[i] - (0.0 if n == 1 else vals.mean())
            elif estimator == "rloo":
                out[i] = r[i] if n == 1 else r[i] - (vals.sum() - r[i]) / (n - 1)
            elif estimator == "batch_std":
                out[i] = (r[i] - vals.mean()) / (batch_std + eps)
    return out


layouts = st.lists(st.integers(0, 4), min_size=1, max_size=24)


@settings(max_examples=60, deadline=None)
@given(index=layouts, data=st.data(), estimator=st.sampled_from(ESTIMATORS))
def test_matches_loop_reference(index, data, estimator):
    rewards = data.draw(st.lists(st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0]), min_size=len(index), max_size=len(index)))
    r = torch.tensor(rewards, dtype=torch.float64)
    got = outcome_advantages(r, index=index, estimator=estimator)
    np.testing.assert_allclose(got.numpy(), _loop_reference(rewards, index, estimator, GRPO_EPS), rtol=1e-9, atol=1e-9)


def test_index_and_group_size_agree():
    r = torch.rand(12)
    for est in ESTIMATORS:
        torch.testing.assert_close(outcome_advantages(r, group_size=4, estimator=est),
                                   outcome_advantages(r, index=np.repeat(["a", "b", "c"], 4), estimator=est))


def test_constant_group_gives_zero_not_nan():
    r = torch.tensor([1., 1., 1., 0., 0., 0.])
    for est in ESTIMATORS:
        a = outcome_advantages(r, group_size=3, estimator=est)
        assert torch.isfinite(a).all()
        if est != "batch_std": assert (a == 0).all()


def test_rloo_is_rescaled_dr_grpo():
    r = torch.rand(16, dtype=torch.float64)
    torch.testing.assert_close(rloo_advantages(r, group_size=8), outcome_advantages(r, group_size=8, estimator="dr_grpo") * 8 / 7)


def test_group_advantages_sum_to_zero():
    r = torch.rand(20, dtype=torch.float64)
    for est in ("grpo", "dr_grpo", "rloo", "batch_std"):
        sums = outcome_advantages(r, group_size=5, estimator=est).view(4, 5).sum(1)
        torch.testing.assert_close(sums, torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)


def test_dtype_and_device_follow_input():
    r = torch.tensor([1., 0., 1., 1.], dtype=torch.float64)
    for est in ESTIMATORS: assert outcome_advantages(r, group_size=2, estimator=est).dtype == torch.float64


def test_token_broadcast():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    adv = outcome_token_advantages(torch.tensor([1., 0.]), mask, group_size=2)
    a = grpo_advantages(torch.tensor([1., 0.]), group_size=2)
    torch.testing.assert_close(adv, a[:, None] * mask)
    k = torch.rand(2, 3)
    torch.testing.assert_close(token_advantages(k, mask), k * mask)


# ---- parity with verl (compared directly when verl imports) ----
def _verl():
    return pytest.importorskip("verl.trainer.ppo.core_algos", reason="verl not installed", exc_type=ImportError)


@pytest.mark.parametrize("norm", [True, False])
def test_grpo_matches_verl(norm):
    ca = _verl()
    g = torch.Generator().manual_seed(0)
    B, L = 24, 7
    scores = torch.randint(0, 3, (B,), generator=g).float() / 2
    index = np.array([f"uid{i}" for i in torch.randint(0, 7, (B,), generator=g).tolist()], dtype=object)
    mask = (torch.rand(B, L, generator=g) > 0.3).float(); mask[:, 0] = 1
    tlr = torch.zeros(B, L); tlr[:, -1] = scores
    ref, ret = ca.compute_grpo_outcome_advantage(tlr, mask, index, epsilon=1e-6, norm_adv_by_std_in_grpo=norm)
    ours = outcome_token_advantages(scores, mask, index=index, estimator="grpo" if norm else "dr_grpo")
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    vec, _ = ca.compute_grpo_vectorized_outcome_advantage(tlr, mask, index, epsilon=1e-6, norm_adv_by_std_in_grpo=norm)
    torch.testing.assert_close(ours, vec, atol=1e-5, rtol=0)


def test_rloo_matches_verl():
    ca = _verl()
    g = torch.Generator().manual_seed(1)
    B, L = 20, 5
    scores = torch.rand(B, generator=g)
    index = np.array([str(i) for i in torch.randint(0, 6, (B,), generator=g).tolist()], dtype=object)
    mask = torch.ones(B, L)
    tlr = torch.zeros(B, L); tlr[:, -1] = scores
    ref, _ = ca.compute_rloo_outcome_advantage(tlr, mask, index, epsilon=1e-6)
    torch.testing.assert_close(outcome_token_advantages(scores, mask, index=index, estimator="rloo"), ref, atol=1e-6, rtol=0)


# ---- parity with TRL's formulas (GRPOTrainer._generate_and_score_completions, sum_then_normalize) ----
def _trl_advantages(rewards, num_generations, scale_rewards, eps=1e-4):
    """TRL 1.16's advantage computation re-derived: nan-aware group mean, unbiased nan-std, eps 1e-4."""
    def nanstd(x, dim=None):
        m = torch.nanmean(x, dim=dim, keepdim=True)
        v = torch.nanmean((x - m) ** 2, dim=dim)
        n = (~torch.isnan(x)).sum(dim=dim) if dim is not None else (~torch.isnan(x)).sum()
        return (v * n / (n - 1)).sqrt()
    mean = torch.nanmean(rewards.view(-1, num_generations), dim=1).repeat_interleave(num_generations)
    if scale_rewards == "group": std = nanstd(rewards.view(-1, num_generations), dim=1).repeat_interleave(num_generations)
    else: std = nanstd(rewards).expand_as(rewards)
    adv = rewards - mean
    return adv if scale_rewards == "none" else adv / (std + eps)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_trl_scale_rewards(scale):
    g = torch.Generator().manual_seed(2)
    r = torch.randint(0, 2, (32,), generator=g).float()
    ref = _trl_advantages(r, 8, scale)
    est = {"group": "grpo", "batch": "batch_std", "none": "dr_grpo"}[scale]
    torch.testing.assert_close(outcome_advantages(r, group_size=8, estimator=est, eps=1e-4), ref, atol=1e-6, rtol=0)
    trl_utils = pytest.importorskip("trl.trainer.utils", reason="trl not installed", exc_type=ImportError)
    if scale != "none":  # TRL's own nanstd, where it imports
        std = trl_utils.nanstd(r.view(-1, 8), dim=1).repeat_interleave(8) if scale == "group" else trl_utils.nanstd(r)
        torch.testing.assert_close(outcome_advantages(r, group_size=8, estimator=est, eps=1e-4),
                                   (r - r.view(-1, 8).mean(1).repeat_interleave(8)) / (std + 1e-4), atol=1e-6, rtol=0)


# ---- bad input ----
def test_bad_input():
    r = torch.tensor([1., 0.])
    with pytest.raises(ValueError, match="valid: grpo, dr_grpo, batch_std, rloo"): outcome_advantages(r, group_size=2, estimator="ppo")
    with pytest.raises(ValueError, match="`rewards` contains NaN"): rloo_advantages(torch.tensor([1., float("nan")]), group_size=2)
    with pytest.raises(ValueError, match="`rewards` must be 1-D"): batch_std_advantages(torch.ones(2, 2), group_size=2)
    with pytest.raises(ValueError, match="exactly one of `index`"): rloo_advantages(r)
    with pytest.raises(ValueError, match="does not divide"): grpo_advantages(r, group_size=3)
    with pytest.raises(ValueError, match="`advantages` shape"): token_advantages(torch.ones(3), torch.ones(2, 4))
    with pytest.raises(TypeError, match="`advantages` must be a floating-point"): token_advantages(torch.ones(2, dtype=torch.long), torch.ones(2, 4))
    with pytest.raises(ValueError, match="`response_mask` must be 2-D"): token_advantages(torch.ones(2), torch.ones(2))


def test_negative_eps_rejected():
    r = torch.tensor([1., 0.])
    for est in ("grpo", "batch_std"):
        with pytest.raises(ValueError, match="`eps` must be a finite number >= 0"): outcome_advantages(r, group_size=2, estimator=est, eps=-1e-6)
