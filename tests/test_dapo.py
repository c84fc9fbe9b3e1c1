"""DAPO pieces: overlong shaping vs the paper and verl's reward manager, dynamic sampling vs a loop reference, presets."""
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from ktae_lab.dapo import (overlong_penalty, overlong_reward_shaping, response_lengths, groups_with_spread,
                           DynamicSampler, dynamic_sampling, RUN_PRESETS, RunPreset, run_preset, run_presets_table)


# ---- overlong shaping ----
def _paper(n, L_max, L_cache):
    """DAPO eq. 13, case by case."""
    if n <= L_max - L_cache: return 0.0
    if n <= L_max: return ((L_max - L_cache) - n) / L_cache
    return -1.0


def _verl(n, L_max, L_cache, factor):
    """verl DAPORewardManager: min(-exceed / L_cache * factor, 0), no floor."""
    return min(-(n - (L_max - L_cache)) / L_cache * factor, 0)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 5000), st.data(), st.floats(0, 3))
def test_overlong_matches_paper_and_verl(L_max, data, factor):
    L_cache = data.draw(st.integers(1, L_max))
    lens = data.draw(st.lists(st.integers(0, L_max + 100), min_size=1, max_size=30))
    got = overlong_penalty(torch.tensor(lens), L_max, L_cache, factor).double()
    np.testing.assert_allclose(got.numpy(), [factor * _paper(n, L_max, L_cache) for n in lens], rtol=1e-6, atol=1e-6)
    within = [i for i, n in enumerate(lens) if n <= L_max]    # generation stops at L_max: verl agrees there
    np.testing.assert_allclose(got.numpy()[within], [_verl(lens[i], L_max, L_cache, factor) for i in within], rtol=1e-6, atol=1e-6)


def test_overlong_ktae_run_values():
    p = run_preset("dapo-ktae-1.5b")
    pen = overlong_penalty(torch.tensor([2560, 2561, 2816, 3071, 3072]), **{k: v for k, v in p.overlong_kwargs().items()})
    torch.testing.assert_close(pen, torch.tensor([0., -1 / 512, -0.5, -511 / 512, -1.]))


def test_overlong_monotone_and_bounded():
    pen = overlong_penalty(torch.arange(0, 200), 150, 40, 0.7)
    assert (pen[1:] <= pen[:-1]).all() and pen.min() == pytest.approx(-0.7) and pen.max() == 0


def test_overlong_reward_shaping_from_mask():
    mask = torch.zeros(3, 10, dtype=torch.long); mask[0, :2] = 1; mask[1, :8] = 1; mask[2] = 1
    torch.testing.assert_close(response_lengths(mask), torch.tensor([2, 8, 10]))
    out = overlong_reward_shaping(torch.tensor([1, 0, 1]), mask, 10, 4)
    torch.testing.assert_close(out, torch.tensor([1.0, -0.5, 0.0]))
    assert out.dtype == torch.get_default_dtype()
    assert overlong_reward_shaping(torch.tensor([1., 0, 1], dtype=torch.float64), mask, 10, 4).dtype == torch.float64


# ---- dynamic sampling ----
def _keep_reference(metric, uids):
    """verl's filter: per uid, keep if np.std(values) > 0 or the group has one row."""
    vals = {}
    for m, u in zip(metric, uids): vals.setdefault(u, []).append(m)
    kept = {u for u, v in vals.items() if np.std(v) > 0 or len(v) == 1}
    return [u in kept for u in uids]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from([0.0, 1.0, 0.5])), min_size=1, max_size=40))
def test_groups_with_spread_matches_reference(rows):
    uids = [f"u{u}" for u, _ in rows]; metric = [m for _, m in rows]
    assert groups_with_spread(torch.tensor(metric), index=uids).tolist() == _keep_reference(metric, uids)


def test_spread_is_exact_for_equal_floats():
    m = torch.tensor([0.1, 0.1, 0.1, 0.3, 0.1 + 0.2, 0.3], dtype=torch.float64)   # 0.1+0.2 != 0.3 in binary
    assert groups_with_spread(m, group_size=3).tolist() == [False] * 3 + [True] * 3


def _round(seed, n_prompts=6, G=4, p=0.5, offset=0):
    g = torch.Generator().manual_seed(seed)
    acc = (torch.rand(n_prompts * G, generator=g) < p).long()
    uid = np.repeat([f"r{seed}p{i + offset}" for i in range(n_prompts)], G).astype(object)
    return {"uid": uid, "acc": acc, "responses": torch.arange(n_prompts * G)[:, None].expand(-1, 3) + 1000 * seed,
            "texts": [f"{seed}-{i}" for i in range(n_prompts * G)], "meta": "m"}


def _dynamic_reference(rounds, target, max_rounds):
    """verl's loop: concat kept rows round by round, stop at >= target groups, truncate to target groups."""
    kept_rows, n_groups = [], 0
    for r, b in enumerate(rounds, 1):
        keep = _keep_reference(b["acc"].tolist(), list(b["uid"]))
        kept_rows += [(b["uid"][i], b["texts"][i]) for i in range(len(keep)) if keep[i]]
        n_groups = len(dict.fromkeys(u for u, _ in kept_rows))
        if n_groups >= target:
            order = list(dict.fromkeys(u for u, _ in kept_rows))[:target]
            return [t for u, t in kept_rows if u in set(order)], r
        if r >= max_rounds: return None, r
    return None, len(rounds)


@pytest.mark.parametrize("target", [1, 3, 7, 12])
@pytest.mark.parametrize("p", [0.5, 0.9])
def test_dynamic_sampling_matches_loop_reference(target, p):
    rounds = [_round(s, p=p) for s in range(1, 9)]
    ref, n = _dynamic_reference(rounds, target, 8)
    if ref is None:
        with pytest.raises(RuntimeError): dynamic_sampling(rounds, target, max_num_gen_batches=8)
        return
    out, stats = dynamic_sampling(rounds, target, max_num_gen_batches=8)
    assert out["texts"] == ref and stats["num_gen_batches"] == n
    assert len(dict.fromkeys(out["uid"])) == target == stats["num_groups_returned"]
    assert out["responses"].shape == (len(ref), 3) and out["meta"] == "m"
    rows = [int(t.split("-")[1]) for t in ref]; seeds = [int(t.split("-")[0]) for t in ref]
    torch.testing.assert_close(out["responses"][:, 0], torch.tensor([r + 1000 * s for r, s in zip(rows, seeds)]))
    assert groups_with_spread(out["acc"], index=list(out["uid"])).all()


def test_dynamic_sampling_callable_and_unlimited():
    state = {"i": 0}
    def gen():
        state["i"] += 1
        return _round(state["i"], n_prompts=2, p=0.97)          # mostly all-correct groups: many rounds
    out, stats = dynamic_sampling(gen, 3, max_num_gen_batches=0)
    assert len(dict.fromkeys(out["uid"])) == 3 and stats["num_gen_batches"] == state["i"]


def test_dynamic_sampling_errors():
    flat = {"uid": ["a", "a", "b", "b"], "acc": torch.tensor([1, 1, 0, 0])}
    with pytest.raises(RuntimeError, match="after 3 generation rounds"): dynamic_sampling(lambda: flat, 1, max_num_gen_batches=3)
    with pytest.raises(RuntimeError, match="ran out of batches"): dynamic_sampling([flat, flat], 1, max_num_gen_batches=10)
    with pytest.raises(KeyError, match="no column 'score'"): dynamic_sampling([flat], 1, metric="score")
    with pytest.raises(ValueError, match="`target_num_prompts`"): DynamicSampler(0)


def test_sampler_reuse_and_custom_container():
    class Proto:                                                   # a DataProto-like container
        def __init__(self, d): self.d = d
        def __getitem__(self, k): return self.d[k]
    take = lambda b, rows: Proto({k: v[rows] for k, v in b.d.items()})
    concat = lambda bs: Proto({k: torch.cat([b.d[k] for b in bs]) for k in bs[0].d})
    s = DynamicSampler(2, index_key="uid", take=take, concat=concat)
    b = Proto({"uid": torch.tensor([0, 0, 1, 1, 2, 2]), "acc": torch.tensor([1., 0, 1, 0, 1, 1])})
    out = s.add(b)
    assert out.d["uid"].tolist() == [0, 0, 1, 1] and s.num_gen_batches == 0   # reset after a full batch
    assert s.add(Proto({"uid": torch.tensor([5, 5]), "acc": torch.tensor([1., 1.])})) is None


# ---- presets ----
def test_presets_match_rl_losses_table():
    assert set(RUN_PRESETS) == {f"{a}{k}-{s}" for a in ("grpo", "dapo") for k in ("", "-ktae") for s in ("1.5b", "7b")}
    for name, p in RUN_PRESETS.items():
        assert (p.train_prompts_per_step, p.n_rollouts, p.ppo_mini_batch_prompts, p.lr) == (1024, 16, 128, 1e-6)
        assert (p.max_prompt_length, p.max_response_length, p.temperature, p.top_p) == (1024, 3072, 1.0, 1.0)
        assert p.loss_agg_mode == "token-mean" and p.entropy_coeff == 0 and p.clip_ratio_low == 0.2
        assert p.adv_estimator == ("ktae" if "ktae" in name else "grpo")
        assert (p.ktae_preset == "official") == ("ktae" in name)
        if p.algorithm == "grpo":
            assert (p.clip_ratio_high, p.clip_ratio_c, p.gen_prompts_per_step) == (0.2, 3.0, 1024)
            assert not p.overlong_buffer_enable and not p.filter_groups_enable
            assert (p.use_kl_loss, p.kl_loss_coef) == ((True, 0.001) if "1.5b" in name else (False, 0.0))
        else:
            assert (p.clip_ratio_high, p.clip_ratio_c, p.gen_prompts_per_step) == ((0.28 if "1.5b" in name else 0.24), 10.0, 2048)
            assert p.overlong_buffer_enable and p.overlong_buffer_len == 512 and p.filter_groups_enable
            assert p.filter_groups_metric == "acc" and p.max_num_gen_batches == 10 and not p.use_kl_loss
    # the pairs differ only in the estimator
    for a in ("grpo", "dapo"):
        for s in ("1.5b", "7b"):
            x, y = dataclasses.asdict(RUN_PRESETS[f"{a}-{s}"]), dataclasses.asdict(RUN_PRESETS[f"{a}-ktae-{s}"])
            assert {k for k in x if x[k] != y[k]} == {"name", "adv_estimator", "ktae_preset"}


def test_presets_frozen_and_overrides():
    p = run_preset("grpo-ktae-7b")
    with pytest.raises(dataclasses.FrozenInstanceError): p.lr = 1.0
    with pytest.raises(ValueError, match="unknown RunPreset field"): run_preset("grpo-7b", learning_rate=1.0)
    with pytest.raises(ValueError, match="valid: grpo-1.5b"): run_preset("ppo")
    assert run_presets_table().shape == (len(dataclasses.fields(RunPreset)) - 1, 8)


# ---- bad input ----
def test_bad_input():
    with pytest.raises(ValueError, match="`max_response_length`"): overlong_penalty(torch.tensor([1]), 0, 1)
    with pytest.raises(ValueError, match="`overlong_buffer_len`"): overlong_penalty(torch.tensor([1]), 10, 11)
    with pytest.raises(ValueError, match="`penalty_factor`"): overlong_penalty(torch.tensor([1]), 10, 5, -1)
    with pytest.raises(ValueError, match="`response_length` must be >= 0"): overlong_penalty(torch.tensor([-1]), 10, 5)
    with pytest.raises(ValueError, match="`response_length` must be 1-D"): overlong_penalty(torch.ones(2, 2), 10, 5)
    with pytest.raises(ValueError, match="`rewards` has 3 entries"): overlong_reward_shaping(torch.ones(3), torch.ones(2, 4), 4, 2)
    with pytest.raises(ValueError, match="`metric` contains NaN"): groups_with_spread(torch.tensor([1., float("nan")]), group_size=2)
    with pytest.raises(ValueError, match="`metric` must be 1-D"): groups_with_spread(torch.ones(2, 2), group_size=2)
