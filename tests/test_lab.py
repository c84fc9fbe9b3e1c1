"""Tests for ktae_lab.lab: task, tokenizer, sampler, rewards, RL step wiring, checkpoints and the ablation runner."""
import json
import os
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st

import ktae_lab.lab as lab
from ktae_lab.lab import (LabConfig, make_problems, lab_tokenizer, score_responses, algorithm_spec, valid_algorithms,
                          rl_step, prepare_warm_start, WarmStartTooWeak, train_run, run_ablation, summarize, plot_curves)
from ktae_lab.lm import tiny_random_lm, generate, token_log_probs
from ktae_lab.data import OutputLockedError, output_lock

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


def test_policy_sized_from_tokenizer_and_config():
    m = lab._new_policy(TOK, LabConfig(d_model=32, n_layers=1, n_heads=2, device="cpu"), 0)
    assert m.config.vocab_size == len(TOK) and m.config.eos_token_id == TOK.eos_token_id
    assert (m.config.hidden_size, m.config.num_hidden_layers, m.config.num_key_value_heads) == (32, 1, 2)
    assert not m.training


# ---------------------------------------------------------------- sampler
def _model(seed=0):
    return tiny_random_lm(seed, TOK, d_model=32, n_layers=2, n_heads=2, max_positions=128)[0]


encode_prompts = lab._encode


def sample_rollouts(m, ids, am, n, eos, pad, temperature=1.0, generator=None):
    return tuple(generate(m, ids, am, n, eos, pad, temperature, generator=generator)[:2])


response_log_probs = token_log_probs


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
    assert valid_algorithms() == [b + s for b in ("grpo", "drgrpo", "dapo") for s in ("", "+ktae", "+prm", "+truth")]
    with pytest.raises(ValueError, match="valid algorithms: grpo, grpo\\+ktae, grpo\\+prm, grpo\\+truth, drgrpo"): algorithm_spec("ppo+ktae")
    assert algorithm_spec("dapo+prm")["process"] == "prm" and algorithm_spec("dapo+prm")["base"] == "dapo"
    assert algorithm_spec("grpo+truth")["process"] == "truth" and algorithm_spec("grpo+ktae")["process"] is None
    d = algorithm_spec("dapo")
    assert d["dynamic_sampling"] and d["overlong"] and d["clip_ratio_high"] == 0.28 and d["kl_coef"] == 0
    assert algorithm_spec("grpo")["loss_agg_mode"] == "token-mean"


@pytest.mark.parametrize("kw,msg", [(dict(group_size=1), "group_size"), (dict(steps=0), "steps"),
                                    (dict(overlong_buffer=60, max_new_tokens=48), "overlong_buffer"),
                                    (dict(ktae={"bta": 1.0}), "valid names"), (dict(ktae_preset="nope"), "valid presets"),
                                    (dict(temperature=float("nan")), "`temperature` must be a finite number"),
                                    (dict(temperature=0.0), "`temperature` must be in"),
                                    (dict(grad_clip=0.0), "`grad_clip`"), (dict(grad_clip=float("inf")), "`grad_clip`"),
                                    (dict(overlong_factor=-0.5), "`overlong_factor`"),
                                    (dict(overlong_factor=float("nan")), "`overlong_factor`"),
                                    (dict(lr=0.0), "`lr`"), (dict(warm_lr=-1.0), "`warm_lr`"),
                                    (dict(warm_label_smoothing=1.0), "`warm_label_smoothing`"),
                                    (dict(shortcut_frac=1.5), "`shortcut_frac`"), (dict(data_seed=-1), "`data_seed`"),
                                    (dict(min_ops=1), "`min_ops`"), (dict(min_ops=3, max_ops=2), "`max_ops`"),
                                    (dict(max_operand=0), "`max_operand`"), (dict(warm_batch=0), "`warm_batch`"),
                                    (dict(d_model=30, n_heads=4), "divisible"), (dict(steps=2.5), "`steps` must be an int"),
                                    (dict(mini_batches=True), "`mini_batches` must be an int"),
                                    (dict(device="gpu"), "`device`"), (dict(progress="yes"), "`progress`"),
                                    (dict(ktae=[1]), "`ktae` must be a dict"), (dict(ktae_preset=3), "`ktae_preset`")])
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
    real_al, real_ka = lab.actor_loss, lab.ktae_advantages
    def spy_al(old, lp, adv, mask, **kw):
        seen.setdefault("adv", []).append(adv.detach().clone()); seen.setdefault("kw", []).append(kw)
        return real_al(old, lp, adv, mask, **kw)
    def spy_ka(*a, **kw):
        seen.setdefault("ka", []).append(kw); return real_ka(*a, **kw)
    monkeypatch.setattr(lab, "actor_loss", spy_al); monkeypatch.setattr(lab, "ktae_advantages", spy_ka)
    m = _step("grpo+ktae")
    assert len(seen["ka"]) == 1 and len(seen["adv"]) == 2                # one KTAE advantage, two mini-batches
    assert seen["ka"][0]["outcome_advantage"].shape == (16,)              # the lab's estimator, passed in
    kw = {k: v for k, v in seen["kw"][0].items() if k != "ref_log_prob"}
    assert kw == dict(clip_ratio_low=0.2, clip_ratio_high=0.2, clip_ratio_c=3.0, loss_agg_mode="token-mean",
                      kl_loss_coef=0.001, kl_loss_type="low_var_kl")
    assert seen["kw"][0]["ref_log_prob"] is not None
    adv = torch.cat(seen["adv"])
    assert m["mean_abs_k"] > 0 and m["mixed_share"] > 0
    # with KTAE the advantage varies along a row; without it, it is constant over each row's valid tokens
    seen.clear(); _step("grpo")
    plain = torch.cat(seen["adv"])
    assert "ka" not in seen                                               # no KTAE for plain GRPO
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


# ---------------------------------------------------------------- every recorded field is honoured
def test_grad_clip_and_overlong_factor_are_honoured(scripted_rewards, monkeypatch):
    norms, factors = [], []
    real_clip, real_pen = torch.nn.utils.clip_grad_norm_, lab.overlong_penalty
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm, *a, **k: norms.append(max_norm) or real_clip(params, max_norm, *a, **k))
    monkeypatch.setattr(lab, "overlong_penalty", lambda *a: factors.append(a[3]) or real_pen(*a))
    _step("dapo", grad_clip=0.25, overlong_factor=0.5)
    assert set(norms) == {0.25} and set(factors) == {0.5}
    norms.clear(); factors.clear(); _step("dapo")
    assert set(norms) == {1.0} and set(factors) == {1.0}                  # the defaults are the presets' values
    assert "grad_clip" not in algorithm_spec("dapo") and "overlong_factor" not in algorithm_spec("dapo")


def test_duplicate_seeds_and_bad_seeds_are_refused(tmp_path):
    for seeds, msg in [([1, 1], "duplicates"), ([0, 2, 0], "duplicates"), (0, "count >= 1"), ([], "empty list"),
                       ([-1], "distinct ints in"), (["a"], "got str 'a' in it"), (True, "got bool True"), ("12", "got str '12'"),
                       (2.5, "got float 2.5"), ([0, 10**20], "got 100000000000000000000 in it")]:
        with pytest.raises((ValueError, TypeError), match=msg): run_ablation(["grpo"], seeds, LabConfig(**TINY), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()                                  # refused before anything is written


# ---------------------------------------------------------------- faults: checkpoints, torn files, a second writer
@pytest.fixture
def parity_rewards(monkeypatch):
    "A deterministic stand-in verifier (reward from the response's content), so runs can be compared across a resume."
    def fake(tokenizer, responses, response_mask, answers, marker="#"):
        c = ((responses * response_mask).sum(1) % 3 == 0).float()
        ones = torch.ones(responses.shape[0], dtype=torch.bool, device=responses.device)
        return dict(reward=c, finished=ones, uses_steps=ones)
    monkeypatch.setattr(lab, "score_responses", fake)


class Interrupt(Exception): pass


def _strip(df): return df.drop(columns=["step_time"]).reset_index(drop=True)


def test_interrupted_run_resumes_from_checkpoint_with_the_same_metrics(tmp_path, parity_rewards, monkeypatch):
    cfg = LabConfig(**{**TINY, "steps": 6, "eval_every": 2})
    warm = {"state": lab._new_policy(TOK, cfg, 0).state_dict()}
    whole = train_run("dapo+ktae", 0, cfg, warm)
    ck = tmp_path / "run.pt"
    real, calls = lab.rl_step, []
    def dying(*a, **k):
        calls.append(1)
        if len(calls) == 5: raise Interrupt("killed at step 5")
        return real(*a, **k)
    monkeypatch.setattr(lab, "rl_step", dying)
    with pytest.raises(Interrupt): train_run("dapo+ktae", 0, cfg, warm, checkpoint=ck)
    assert torch.load(ck, weights_only=True)["step"] == 4                 # saved at the last evaluation
    monkeypatch.setattr(lab, "rl_step", lambda *a, **k: calls.append(1) or real(*a, **k))
    calls.clear()
    resumed = train_run("dapo+ktae", 0, cfg, warm, checkpoint=ck)
    assert len(calls) == 2                                                # steps 5 and 6 only, not from step 0
    pd.testing.assert_frame_equal(_strip(resumed), _strip(whole))
    with pytest.raises(ValueError, match="another run"): train_run("grpo", 0, cfg, warm, checkpoint=ck)


_ABLATE_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
import ktae_lab.lab as lab
def fake(tokenizer, responses, response_mask, answers, marker="#"):
    c = ((responses * response_mask).sum(1) % 3 == 0).float()
    ones = torch.ones(responses.shape[0], dtype=torch.bool)
    return dict(reward=c, finished=ones, uses_steps=ones)
lab.score_responses = fake
lab.prepare_warm_start = lambda seed, cfg, progress=False: {"state": lab._new_policy(lab.lab_tokenizer(), cfg, seed).state_dict()}
cfg = lab.LabConfig(**eval(sys.argv[2]))
lab.run_ablation(["grpo", "grpo+ktae"], [0], cfg, sys.argv[1], progress=False)
"""


def test_killed_ablation_resumes_with_the_same_metrics(tmp_path, parity_rewards, monkeypatch):
    "kill -9 an ablation process once it has a checkpoint; the resumed ablation's metrics equal an uninterrupted one's."
    import subprocess, sys, time, signal
    _fake_warm(monkeypatch)
    kw = {**TINY, "steps": 8, "eval_every": 1}
    whole = run_ablation(["grpo", "grpo+ktae"], [0], LabConfig(**kw), tmp_path / "whole", progress=False)
    out = tmp_path / "cut"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    p = subprocess.Popen([sys.executable, "-c", _ABLATE_SCRIPT, str(out), repr(kw)], env=env)
    deadline = time.time() + 180
    while time.time() < deadline and p.poll() is None and not list((out / "checkpoints").glob("grpo_ktae-seed0.pt")): time.sleep(0.01)
    p.send_signal(signal.SIGKILL); p.wait()
    assert list((out / "checkpoints").glob("*-seed0.pt"))                   # killed mid-run, with a checkpoint
    resumed = run_ablation(["grpo", "grpo+ktae"], [0], LabConfig(**kw), out, progress=False)   # takes over the stale lock
    pd.testing.assert_frame_equal(_strip(resumed), _strip(whole))
    pd.testing.assert_frame_equal(_strip(pd.read_csv(out / "metrics.csv")).sort_values(["algo", "step"], ignore_index=True),
                                  _strip(pd.read_csv(tmp_path / "whole" / "metrics.csv")).sort_values(["algo", "step"], ignore_index=True))
    assert not list((out / "checkpoints").glob("grpo*-seed0.pt"))          # finished runs leave no checkpoint


def test_torn_or_empty_metrics_are_repaired_on_resume(tmp_path, parity_rewards, monkeypatch):
    _fake_warm(monkeypatch)
    cfg = LabConfig(**TINY)
    df = run_ablation(["grpo", "grpo+ktae"], [0], cfg, tmp_path, progress=False)
    f = tmp_path / "metrics.csv"
    text = f.read_text()
    f.write_text(text[: len(text) - 40])                                  # a torn last line (an older, non-atomic writer)
    again = run_ablation(["grpo", "grpo+ktae"], [0], cfg, tmp_path, progress=False)
    pd.testing.assert_frame_equal(_strip(again), _strip(df))
    f.write_text("")                                                      # empty (disk full): the runs are redone
    again = run_ablation(["grpo", "grpo+ktae"], [0], cfg, tmp_path, progress=False)
    pd.testing.assert_frame_equal(_strip(again), _strip(df))
    assert len(pd.read_csv(f)) == len(df)


def test_second_ablation_into_the_same_directory_is_refused(tmp_path, parity_rewards, monkeypatch):
    _fake_warm(monkeypatch)
    (tmp_path / "o").mkdir()
    with output_lock(tmp_path / "o" / "metrics.csv"):
        with pytest.raises(OutputLockedError, match="another process"):
            run_ablation(["grpo"], 1, LabConfig(**TINY), tmp_path / "o", progress=False)
    f = tmp_path / "file"; f.write_text("x")
    with pytest.raises(ValueError, match="is a file"): run_ablation(["grpo"], 1, LabConfig(**TINY), f, progress=False)


# ---------------------------------------------------------------- batched seeds (issue 20)
def _warm_state(seed):
    return {"state": lab._new_policy(TOK, LabConfig(**TINY, d_model=32, n_heads=2), seed).state_dict()}


def test_batched_resume_per_seed_and_after_a_kill_between_two_seeds_files(tmp_path):
    "Per-seed checkpoints of a batch resume to the uninterrupted result, also when a kill left the seeds at two steps."
    warms = [_warm_state(0), _warm_state(1)]
    cfg6 = LabConfig(**{**TINY, "steps": 6, "eval_every": 2, "n_heldout": 8, "max_new_tokens": 8}, d_model=32, n_heads=2)
    full6 = lab.train_many("grpo", [0, 1], cfg6, warms).drop(columns="step_time")
    # a run of 6 steps that leaves checkpoints at steps 2 and 4 (train_many keeps them; run_ablation deletes finished ones)
    lab.train_many("grpo", [0, 1], cfg6, warms, checkpoints=tmp_path)
    st = torch.load(tmp_path / "grpo-seed1.pt", weights_only=True)
    assert st["step"] == 4 and st["prev"]["step"] == 2 and st["identity"]["batch"] == [0, 1]
    torch.save(st["prev"], tmp_path / "grpo-seed1.pt")                 # killed after seed 0's step-4 file, before seed 1's
    again = lab.train_many("grpo", [0, 1], cfg6, warms, checkpoints=tmp_path).drop(columns="step_time")
    pd.testing.assert_frame_equal(again, full6)                          # both resumed from step 2: the same result
    assert len(full6) == 2 * 7 and set(full6["seed"]) == {0, 1}


# ---------------------------------------------------------------- evaluation noise: samples per problem, last evaluations averaged
@settings(max_examples=8, deadline=None)
@given(st.integers(1, 4), st.integers(0, 1000))
def test_evaluate_with_k_samples_is_k_copies_of_each_problem(k, seed):
    pol, probs = lab._new_policy(TOK, LabConfig(d_model=16, n_heads=2), 0), make_problems(5, seed=seed, max_ops=2)
    ev = lambda p, s: lab.evaluate(pol, TOK, p, 6, generator=torch.Generator().manual_seed(seed), greedy=False, samples=s)
    assert ev(probs, k) == ev(probs.loc[probs.index.repeat(k)], 1)


def _evals_df(accs, algo="grpo", seed=0, every=10):
    "Tidy metrics of one run evaluated at steps 0, every, 2*every, ... (NaN in between, as train_run writes them)."
    rows = []
    for i, a in enumerate(accs):
        for j in range(every if i else 1):
            step = max(0, (i - 1) * every + j + 1) if i else 0
            ev = step % every == 0 or step == (len(accs) - 1) * every
            rows.append(dict(algo=algo, seed=seed, step=step, eval_acc=a if ev else np.nan, eval_greedy_acc=a if ev else np.nan,
                             eval_len=10 * a if ev else np.nan, entropy=1.0, mixed_share=0.5, mean_abs_k=0.1, step_time=0.1))
    return pd.DataFrame(rows)


def test_final_metrics_average_the_last_evaluations():
    df = _evals_df([0.1, 0.2, 0.3, 0.4, 0.5, 0.9])             # steps 0, 10, ..., 50
    assert df.loc[df.eval_acc.notna(), "step"].tolist() == [0, 10, 20, 30, 40, 50]
    s = summarize(df)                                            # default: the last 3 evaluations (steps 30-50)
    assert s.loc["grpo", "final_acc_mean"] == pytest.approx((0.4 + 0.5 + 0.9) / 3)
    assert s.loc["grpo", "gain_mean"] == pytest.approx((0.4 + 0.5 + 0.9) / 3 - 0.1)
    assert s.loc["grpo", "final_len"] == pytest.approx(10 * (0.4 + 0.5 + 0.9) / 3)
    assert (s.loc["grpo", "final_from"], s.loc["grpo", "final_to"]) == (30, 50)
    assert summarize(df, 1).loc["grpo", "final_acc_mean"] == pytest.approx(0.9)           # the old step-50-only metric
    assert summarize(df, 99).loc["grpo", "final_acc_mean"] == pytest.approx(np.mean([0.2, 0.3, 0.4, 0.5, 0.9]))  # never step 0
    assert "steps 30-50" in lab.summary_markdown(s) and "at step 50" in lab.summary_markdown(summarize(df, 1))
    only0 = _evals_df([0.3])                                     # a run without RL: its warm start is its final value
    assert summarize(only0).loc["grpo", "final_acc_mean"] == pytest.approx(0.3)
    # paired differences use the same window
    other = _evals_df([0.1, 0.2, 0.3, 0.2, 0.2, 0.2], algo="grpo+ktae")
    pairs = lab.paired_differences(pd.concat([df, other]), metrics="final_acc")
    assert pairs["diff_mean"].iloc[0] == pytest.approx(0.2 - (0.4 + 0.5 + 0.9) / 3)
    assert lab.paired_differences(pd.concat([df, other]), metrics="final_acc", final_evals=1)["diff_mean"].iloc[0] == pytest.approx(0.2 - 0.9)
    with pytest.raises(ValueError, match="`final_evals`"): summarize(df, 0)


def test_train_run_evaluates_with_eval_samples(monkeypatch):
    seen = []
    real = lab.evaluate
    monkeypatch.setattr(lab, "evaluate", lambda *a, **k: seen.append(k.get("samples")) or real(*a, **k))
    cfg = LabConfig(**{**TINY, "steps": 2, "eval_every": 1, "eval_samples": 3})
    train_run("grpo", 0, cfg, {"state": lab._new_policy(TOK, cfg, 0).state_dict()})
    assert seen == [3, 3, 3]
    assert LabConfig().eval_samples > 1 and LabConfig().final_evals > 1            # the defaults average


@pytest.mark.parametrize("seed_batch", [1, None])
def test_interrupted_ablation_leaves_no_lock_file(tmp_path, monkeypatch, seed_batch):
    "A notebook cell interrupted mid-ablation (KeyboardInterrupt) releases the output lock: nothing is left beside metrics.csv."
    _fake_warm(monkeypatch)
    def interrupted(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(lab, "train_run", interrupted)     # the one-seed path
    monkeypatch.setattr(lab, "warm_starts", interrupted)   # the batched path (its first call under the lock)
    with pytest.raises(KeyboardInterrupt): run_ablation(["grpo"], 1, LabConfig(**TINY), tmp_path, progress=False, seed_batch=seed_batch)
    assert not list(tmp_path.glob("*.lock"))
