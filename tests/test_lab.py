"""Tests for ktae_lab.lab: task, tokenizer, sampler, rewards, RL step wiring and ablation runner (the `ktae-lab ablate` command: test_cli.py)."""
import json
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st

import ktae_lab.lab as lab
from ktae_lab.lab import (LabConfig, make_problems, lab_tokenizer, tiny_lm, encode_prompts, sample_rollouts,
                          score_responses, response_log_probs, algorithm_spec, valid_algorithms, rl_step,
                          prepare_warm_start, WarmStartTooWeak, train_run, run_ablation, summarize, plot_curves)

torch.set_num_threads(1)
TOK = lab_tokenizer()
TINY = dict(n_train=300, n_heldout=16, min_ops=2, max_ops=2, max_operand=3, steps=3, prompts_per_step=4,
            group_size=4, max_new_tokens=12, overlong_buffer=4, eval_every=2, warm_steps=0, warm_batch=16, progress=False)


# ---------------------------------------------------------------- task and tokenizer
@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 5))
def test_problems_are_consistent(seed, max_ops):
    df = make_problems(20, seed=seed, min_ops=2, max_ops=max_ops)
    for r in df.itertuples():
        assert eval(r.prompt[:-1]) == int(r.answer)                       # the answer is the expression's value
        steps = r.solution.split("#")[0].split(",")
        assert len(steps) == r.n_ops - 1
        for s in steps:                                                   # every written step is true arithmetic
            lhs, rhs = s.rsplit("=", 1)
            assert eval(lhs.replace("--", "+")) == int(rhs)
        assert r.solution.endswith("#" + r.answer) and r.direct == "#" + r.answer


def test_problems_seeded_and_exclude():
    a, b = make_problems(50, seed=3), make_problems(50, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = make_problems(200, seed=4, exclude=set(a["prompt"]))
    assert not set(c["prompt"]) & set(a["prompt"])


@pytest.mark.parametrize("kw,msg", [(dict(min_ops=1), "min_ops"), (dict(min_ops=4, max_ops=3), "max_ops"),
                                    (dict(max_operand=0), "max_operand")])
def test_problems_bad_input(kw, msg):
    with pytest.raises(ValueError, match=msg): make_problems(3, **kw)


@settings(max_examples=30, deadline=None)
@given(st.text(alphabet=lab.LAB_ALPHABET, min_size=1, max_size=30))
def test_tokenizer_round_trip(s):
    ids = TOK(s, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(s) and TOK.unk_token_id not in ids
    assert TOK.decode(ids) == s


def test_tiny_lm_sized_from_tokenizer():
    m = tiny_lm(TOK, d_model=32, n_layers=1, n_heads=2, device="cpu")
    assert m.config.vocab_size == len(TOK) and m.config.eos_token_id == TOK.eos_token_id
    assert not m.training


# ---------------------------------------------------------------- sampler
def _model(seed=0):
    return tiny_lm(TOK, d_model=32, n_layers=2, n_heads=2, seed=seed, device="cpu")


def test_sampler_mask_layout_and_determinism():
    m = _model()
    ids, am = encode_prompts(TOK, ["1+2:", "3-1+2:", "2+2:"] * 3)
    out1 = sample_rollouts(m, ids, am, 10, TOK.eos_token_id, TOK.pad_token_id, generator=torch.Generator().manual_seed(1))
    out2 = sample_rollouts(m, ids, am, 10, TOK.eos_token_id, TOK.pad_token_id, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out1[0], out2[0]) and torch.equal(out1[1], out2[1])
    resp, mask = out1
    assert resp.shape == mask.shape == (9, 10)
    assert (mask[:, 1:] <= mask[:, :-1]).all()                            # ones then zeros
    assert ((resp == TOK.pad_token_id) | mask.bool()).all()
    n = mask.sum(1)
    finished = (resp == TOK.eos_token_id).any(1)
    assert (resp[finished, n[finished] - 1] == TOK.eos_token_id).all()     # EOS is the last masked token
    assert (n[~finished] == 10).all()                                     # unfinished rows are truncated at the limit


def test_greedy_sampler_matches_generate():
    m = _model(seed=3)
    ids, am = encode_prompts(TOK, ["1+2:", "3-1+2-1:", "2+2:"])
    resp, mask = sample_rollouts(m, ids, am, 8, TOK.eos_token_id, TOK.pad_token_id, temperature=0.0)
    ref = m.generate(input_ids=ids, attention_mask=am, do_sample=False, max_new_tokens=8,
                     eos_token_id=TOK.eos_token_id, pad_token_id=TOK.pad_token_id)[:, ids.shape[1]:]
    for r, k, g in zip(resp, mask, ref):
        n = int(k.sum())
        assert r[:n].tolist() == g[:n].tolist()


def test_log_probs_match_prefix_by_prefix_reference():
    m = _model(seed=5)
    ids, am = encode_prompts(TOK, ["1+2:", "3-1+2:"])
    resp, mask = sample_rollouts(m, ids, am, 6, TOK.eos_token_id, TOK.pad_token_id, generator=torch.Generator().manual_seed(0))
    lp, ent = response_log_probs(m, ids, am, resp, mask, with_entropy=True)
    for i in range(2):                                                   # slow reference: one unpadded prefix at a time
        p = ids[i][am[i].bool()]
        for t in range(int(mask[i].sum())):
            x = torch.cat([p, resp[i, :t]])[None]
            logits = m(input_ids=x).logits[0, -1].float()
            ref = torch.log_softmax(logits, -1)
            assert abs(ref[resp[i, t]].item() - lp[i, t].item()) < 1e-4
            assert abs(-(ref.exp() * ref).sum().item() - ent[i, t].item()) < 1e-4


# ---------------------------------------------------------------- rewards
def _resp(texts, finished):
    enc = TOK(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    r = torch.cat([enc["input_ids"], torch.zeros(len(texts), 1, dtype=torch.long)], 1)
    k = torch.cat([enc["attention_mask"], torch.zeros(len(texts), 1, dtype=torch.long)], 1)
    n = k.sum(1)
    for i, f in enumerate(finished):
        if f: r[i, n[i]] = TOK.eos_token_id; k[i, n[i]] = 1
    return r, k


def test_score_responses_cases():
    r, k = _resp(["1+2=3#3", "#3", "#4", "1+2=3", "#3#3", "1+2=3#3"], [True, True, True, True, True, False])
    s = score_responses(TOK, r, k, ["3"] * 6)
    assert s["reward"].tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]         # no marker or truncated: 0
    assert s["uses_steps"].tolist() == [True, False, False, True, False, True]
    with pytest.raises(ValueError, match="answers"): score_responses(TOK, r, k, ["3"])


# ---------------------------------------------------------------- algorithms and config
def test_algorithm_names():
    assert valid_algorithms() == ["grpo", "grpo+ktae", "drgrpo", "drgrpo+ktae", "dapo", "dapo+ktae"]
    with pytest.raises(ValueError, match="valid algorithms: grpo, grpo\\+ktae, drgrpo"): algorithm_spec("ppo+ktae")
    d = algorithm_spec("dapo")
    assert d["dynamic_sampling"] and d["overlong"] and d["clip_ratio_high"] == 0.28 and d["kl_coef"] == 0
    assert algorithm_spec("grpo")["loss_agg_mode"] == "token-mean"


@pytest.mark.parametrize("kw,msg", [(dict(group_size=1), "group_size"), (dict(steps=0), "steps"),
                                    (dict(overlong_buffer=60, max_new_tokens=48), "overlong_buffer"),
                                    (dict(ktae={"bta": 1.0}), "valid names"), (dict(ktae_preset="nope"), "valid presets")])
def test_config_bad_input(kw, msg):
    with pytest.raises(ValueError, match=msg): LabConfig(**kw).validate()


# ---------------------------------------------------------------- RL step wiring (with a scripted verifier)
@pytest.fixture
def scripted_rewards(monkeypatch):
    "Replace the verifier by a seeded coin so groups are mixed without training a policy."
    gen = torch.Generator().manual_seed(0)
    def fake(tokenizer, responses, response_mask, answers, marker="#"):
        B, dev = responses.shape[0], responses.device
        c = (torch.rand(B, generator=gen) < 0.5).float()
        c[:4] = 1.0                                                       # group 0 all correct: no signal
        ones = torch.ones(B, dtype=torch.bool, device=dev)
        return dict(reward=c.to(dev), finished=ones, uses_steps=ones)
    monkeypatch.setattr(lab, "score_responses", fake)


def _step(algo, spy=None, **kw):
    cfg = LabConfig(**{**TINY, **kw}).validate()
    tr, _ = lab.lab_data(cfg)
    pol = _model(); ref = _model()
    opt = torch.optim.AdamW(pol.parameters(), lr=1e-3)
    return rl_step(pol, opt, TOK, tr, cfg, algorithm_spec(algo), np.random.default_rng(0), torch.Generator().manual_seed(0), ref)


def test_rl_step_uses_package_losses_and_ktae(scripted_rewards, monkeypatch):
    seen = {}
    real_pl, real_k = lab.policy_loss, lab.key_token_values
    def spy_pl(old, lp, adv, mask, **kw):
        seen.setdefault("adv", []).append(adv.detach().clone()); seen.setdefault("kw", []).append(kw)
        return real_pl(old, lp, adv, mask, **kw)
    def spy_k(*a, **kw):
        seen["k_calls"] = seen.get("k_calls", 0) + 1; return real_k(*a, **kw)
    monkeypatch.setattr(lab, "policy_loss", spy_pl); monkeypatch.setattr(lab, "key_token_values", spy_k)
    m = _step("grpo+ktae")
    assert seen["k_calls"] == 1 and len(seen["adv"]) == 2                 # two mini-batches
    assert seen["kw"][0] == dict(clip_ratio_low=0.2, clip_ratio_high=0.2, clip_ratio_c=3.0, loss_agg_mode="token-mean")
    adv = torch.cat(seen["adv"])
    assert m["mean_abs_k"] > 0 and m["mixed_share"] > 0
    # with KTAE the advantage varies along a row; without it, it is constant over each row's valid tokens
    seen.clear(); _step("grpo")
    plain = torch.cat(seen["adv"])
    assert any(len(set(r[r != 0].tolist())) > 1 for r in adv)
    assert all(len(set(r[r != 0].tolist())) <= 1 for r in plain)
    for k in ["accuracy", "response_length", "entropy", "pg_clipfrac", "pg_clipfrac_lower", "ppo_kl", "kl",
              "mixed_share", "mean_abs_k", "gen_rounds", "groups_used", "step_time"]:
        assert k in m and np.isfinite(m[k]), k


def test_dynamic_sampling_keeps_only_mixed_groups(scripted_rewards):
    m = _step("dapo", max_gen_rounds=3)
    assert m["gen_rounds"] >= 2                                           # group 0 is always dropped, so >1 round
    assert m["groups_used"] <= 4 and m["groups_used"] >= 3


def test_rl_step_needs_reference_for_kl():
    cfg = LabConfig(**TINY).validate(); tr, _ = lab.lab_data(cfg); pol = _model()
    with pytest.raises(ValueError, match="reference"):
        rl_step(pol, torch.optim.SGD(pol.parameters(), lr=0.1), TOK, tr, cfg, algorithm_spec("grpo"), np.random.default_rng(0))


# ---------------------------------------------------------------- warm start, runs, ablations, CLI
def test_weak_warm_start_is_reported():
    with pytest.raises(WarmStartTooWeak, match="increase the warm-start steps"):
        prepare_warm_start(0, LabConfig(**TINY))


def _fake_warm(monkeypatch):
    "Skip the supervised warm start (a random policy + a scripted verifier stand in for it)."
    monkeypatch.setattr(lab, "prepare_warm_start", lambda seed, cfg, progress=False: {"state": lab._new_policy(TOK, cfg, seed).state_dict()})


def test_tiny_ablation_writes_tidy_outputs(tmp_path, scripted_rewards, monkeypatch):
    _fake_warm(monkeypatch)
    cfg = LabConfig(**TINY)
    df = run_ablation(["grpo", "dapo+ktae"], 2, cfg, tmp_path, progress=False)
    assert set(df["algo"]) == {"grpo", "dapo+ktae"} and set(df["seed"]) == {0, 1}
    assert len(df) == 2 * 2 * (cfg.steps + 1)
    assert not df.duplicated(["algo", "seed", "step"]).any()
    for f in ["metrics.csv", "config.json", "curves.png", "summary.csv", "summary.md"]: assert (tmp_path / f).exists()
    summ = summarize(df)
    assert list(summ.index) == ["dapo+ktae", "grpo"] and (summ["seeds"] == 2).all()
    # resuming runs nothing new; adding a seed runs only that seed
    df2 = run_ablation(["grpo", "dapo+ktae"], [0, 1, 2], cfg, tmp_path, progress=False)
    assert len(df2) == 3 * 2 * (cfg.steps + 1) and len(pd.read_csv(tmp_path / "metrics.csv")) == len(df2)
    # another configuration in the same directory is refused
    with pytest.raises(ValueError, match="another configuration.*lr"):
        run_ablation(["grpo"], 1, LabConfig(**{**TINY, "lr": 1.0}), tmp_path, progress=False)
    fig, axes = plot_curves(df, ["eval_acc", "entropy"]); assert axes.shape == (1, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_gpu(scripted_rewards, monkeypatch):
    _fake_warm(monkeypatch)
    cfg = LabConfig(**{**TINY, "device": "cuda"})
    assert next(lab._new_policy(TOK, cfg, 0).parameters()).is_cuda
    df = train_run("dapo+ktae", 0, cfg, warm={"state": lab._new_policy(TOK, cfg, 0).state_dict()})
    assert len(df) == cfg.steps + 1 and df["mean_abs_k"].iloc[1:].notna().all()
