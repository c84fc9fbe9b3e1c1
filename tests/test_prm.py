"""Tests of the process reward model (`ktae_lab.prm`) and its lab loop (`ktae_lab.prm_lab`): bad inputs, checkpoints,
scoring shapes, training, best-of-N and ProcessBench metrics, and a killed pipeline that resumes."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st

from ktae_lab.task import lab_tokenizer
from ktae_lab.lm import tiny_tokenizer
from ktae_lab.epicprm import Annotation, Probe, Baseline
from ktae_lab.prm import (PRMConfig, ProcessRewardModel, encode_steps, score_steps, train_prm, prm_loss, annotation_targets,
                          save_prm, load_prm, vocab_fingerprint)
from ktae_lab import prm_lab
from ktae_lab.prm_lab import PRMLabConfig, best_of_n, processbench_scores, predicted_first_error, label_sets, run_prm_pipeline

torch.set_num_threads(1)
TOK = lab_tokenizer()
SMALL = PRMConfig(d_model=16, n_layers=1, n_heads=2, steps=5, batch_size=8, max_positions=48)


def _prm(label="truth", task="t", **kw):
    from dataclasses import replace
    return ProcessRewardModel(TOK, replace(SMALL, **kw), label, task, device="cpu")


def _addition_set(n=128, seed=0):
    rng = np.random.default_rng(seed)
    ps, rs, ys = [], [], []
    for _ in range(n):
        a, b = (int(x) for x in rng.integers(1, 5, 2)); ok = bool(rng.random() < 0.5)
        c = a + b if ok else a + b + int(rng.choice([-1, 1]))
        ps.append(f"{a}+{b}:"); rs.append([f"{a}+{b}={c}#{c}"]); ys.append([float(ok)])
    return ps, rs, ys


# ---- bad inputs -------------------------------------------------------------------------------------------------
def test_checkpoint_of_another_tokenizer_or_task_is_refused(tmp_path):
    f = save_prm(_prm(task="arith"), tmp_path / "p.pt")
    with pytest.raises(ValueError, match="another tokenizer"): load_prm(f, tiny_tokenizer(), device="cpu")
    with pytest.raises(ValueError, match="task 'arith'"): load_prm(f, TOK, task="gsm8k", device="cpu")
    with pytest.raises(ValueError, match="labels 'truth'"): load_prm(f, TOK, label_source="outcome", device="cpu")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt. is unreadable"): load_prm(tmp_path / "junk.pt", TOK)
    with pytest.raises(FileNotFoundError): load_prm(tmp_path / "missing.pt", TOK)


def test_checkpoint_round_trip_records_config_and_label_source(tmp_path):
    p = _prm(label="epic_adaptive", task="arith")
    f = save_prm(p, tmp_path / "p.pt")
    st = torch.load(f, weights_only=True)
    assert st["label_source"] == "epic_adaptive" and st["task"] == "arith" and st["config"]["d_model"] == 16
    assert st["vocab_fingerprint"] == vocab_fingerprint(TOK)
    q = load_prm(f, TOK, task="arith", label_source="epic_adaptive", device="cpu")
    assert q.cfg == p.cfg and q.label_source == "epic_adaptive"
    np.testing.assert_allclose(sum(score_steps(q, ["1+2:"], ["1+2=3#3"]), []), sum(score_steps(p, ["1+2:"], ["1+2=3#3"]), []), atol=1e-6)


def test_too_long_responses_raise():
    p = _prm()
    with pytest.raises(ValueError, match=r"responses\[1\].*longer than the model's context of 48"):
        score_steps(p, ["1+2:", "1+2:"], ["1+2=3#3", "1" * 60])
    with pytest.raises(ValueError, match="longer than the model's context"):
        train_prm(p, ["1+2:"], ["1" * 60], [[1.0]])


def test_bad_targets_and_inputs_raise():
    p = _prm()
    with pytest.raises(ValueError, match=r"targets\[0\]` has 1 values but `responses\[0\]` has 2 steps"):
        train_prm(p, ["1+2+3:"], ["1+2=3,3+3=6#6"], [[1.0]])
    with pytest.raises(ValueError, match=r"numbers in \[0, 1\]"): train_prm(p, ["1+2:"], ["1+2=3#3"], [[2.0]])
    with pytest.raises(ValueError, match="same length"): score_steps(p, ["1+2:"], ["a", "b"])
    with pytest.raises(TypeError, match="ProcessRewardModel"): score_steps(object(), ["1+2:"], ["1+2=3#3"])
    with pytest.raises(TypeError, match=r"responses\[0\]"): encode_steps(TOK, ["1+2:"], [3])
    with pytest.raises(ValueError, match="divisible"): PRMConfig(d_model=10, n_heads=4).validate()


def test_n_larger_than_samples_raises():
    c = np.ones((3, 8))
    with pytest.raises(ValueError, match="N=16 needs 16 samples per problem, but only 8 are available"):
        best_of_n(c, {"oracle": c}, ns=(4, 16))
    with pytest.raises(ValueError, match="N=32"): PRMLabConfig(n_samples=16).validate()
    with pytest.raises(ValueError, match="shape"): best_of_n(c, {"x": np.ones((3, 4))}, ns=(4,))


# ---- scoring and training ------------------------------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["1+2=3", "3-1=2", "", "9#9", "4+4=8#8"]), min_size=0, max_size=4), min_size=1, max_size=6),
       st.integers(1, 4))
def test_score_steps_shapes_and_batch_invariance(responses, bs):
    p = _prm()
    prompts = ["1+2-1:"] * len(responses)
    a, b = score_steps(p, prompts, responses, batch_size=bs), score_steps(p, prompts, responses, batch_size=64)
    assert [len(x) for x in a] == [len(r) for r in responses]
    assert all(0 < v < 1 for x in a for v in x)
    np.testing.assert_allclose(sum(a, []), sum(b, []), atol=1e-5)      # padding and batch layout do not change a score


def test_strings_and_step_lists_score_the_same():
    p = _prm()
    assert score_steps(p, ["7-3+5:"], ["7-3=4,4+5=9#9"]) == score_steps(p, ["7-3+5:"], [["7-3=4", "4+5=9#9"]])


def test_a_step_only_sees_its_prefix():
    p = _prm()
    a = score_steps(p, ["7-3+5:"], [["7-3=4", "4+5=9#9"]])[0]
    b = score_steps(p, ["7-3+5:"], [["7-3=4", "4+5=1#1"]])[0]
    assert a[0] == pytest.approx(b[0], abs=1e-6) and a[1] != pytest.approx(b[1], abs=1e-6)


def test_an_empty_last_step_has_its_own_scoring_position():
    "A response ending in the separator: its empty (wrong) last step is scored at the end marker, not at the step before."
    e = encode_steps(TOK, ["4-2+2+1:"] * 2, ["4-4=0,0+2=2,", "4-4=0,0+2=2,2+1=3#3"])
    b = e["boundaries"]
    assert e["n_steps"] == [3, 3] and len(set(b[0].tolist())) == 3 and b[0, 2] > b[0, 1]
    assert TOK.convert_ids_to_tokens(e["input_ids"][0, b[0]].tolist()) == [",", ",", TOK.eos_token]
    # a PRM can now learn that the cut-off answer's last step is wrong and the finished one's right
    p = _prm(steps=150, lr=1e-2, batch_size=2, d_model=32, n_heads=4)
    train_prm(p, ["4-2+2+1:"] * 2, ["4-4=0,0+2=2,", "4-4=0,0+2=2,2+1=3#3"], [[1, 1, 0], [1, 1, 1]])
    cut, done = score_steps(p, ["4-2+2+1:"] * 2, ["4-4=0,0+2=2,", "4-4=0,0+2=2,2+1=3#3"])
    assert cut[2] < 0.5 < done[2] and abs(cut[2] - cut[1]) > 0.2


def test_training_reduces_loss_and_separates_right_from_wrong():
    ps, rs, ys = _addition_set()
    p = _prm(steps=120, lr=3e-3, d_model=32, n_heads=4, n_layers=2, batch_size=64)
    losses = train_prm(p, ps, rs, ys)
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    s, y = np.array(sum(score_steps(p, ps, rs), [])), np.array(sum(ys, []))
    assert s[y == 1].mean() > s[y == 0].mean()


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.floats(0, 1), st.integers(0, 10**6))
def test_prm_loss_is_masked_mean_bce(B, S, y, seed):
    g = torch.Generator().manual_seed(seed)
    z, m = torch.randn(B, S, generator=g), torch.rand(B, S, generator=g) < 0.5
    t = torch.full((B, S), y)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(z[m], t[m]) if m.any() else torch.tensor(0.0)
    assert prm_loss(z, t, m).item() == pytest.approx(ref.item(), abs=1e-5)
    assert torch.isfinite(prm_loss(z, t, torch.zeros_like(m)))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.data())
def test_annotation_targets_in_unit_interval(n, data):
    fe = data.draw(st.integers(0, n - 1))
    probes = [Probe(s, data.draw(st.floats(0, 1)), data.draw(st.floats(0, 1)), 8, 0) for s in range(n)]
    for m in ("epic_binary", "omega_binary", "math_shepherd"):
        a = Annotation(m, [int(i < fe) for i in range(n)], fe, probes, soft_labels=[p.count_estimate for p in probes],
                       baseline=Baseline(8, data.draw(st.floats(0.01, 1))))
        hard, soft = annotation_targets(a, n), annotation_targets(a, n, soft=True)
        assert hard == [float(i < fe) for i in range(n)] and len(soft) == n and all(0 <= v <= 1 for v in soft)
    with pytest.raises(ValueError, match="labels but the solution has"): annotation_targets(a, n + 1)


# ---- evaluation --------------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(4, 12), st.integers(0, 10**6))
def test_best_of_n_oracle_bounds_every_selector(P, K, seed):
    rng = np.random.default_rng(seed)
    c = (rng.random((P, K)) < 0.4).astype(float)
    sc = {"oracle": c, "random": np.zeros((P, K)), "prm:x": rng.random((P, K)), "majority": rng.integers(0, 3, (P, K))}
    ns = sorted({1, 4, K})
    df = best_of_n(c, sc, ns=ns, draws=8, seed=seed).set_index(["selector", "N"])["accuracy"]
    for n in ns:
        assert all(df[(s, n)] <= df[("oracle", n)] + 1e-12 for s in sc)
    assert df[("oracle", K)] == pytest.approx(float((c.max(1)).mean()))      # N = K: any correct sample is found
    for s in sc: assert df[(s, 1)] == pytest.approx(df[("random", 1)], abs=0.5)  # N = 1: no choice (different draws of the same subsets)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 3)), st.one_of(st.none(), st.integers(0, 3))), min_size=1, max_size=20))
def test_processbench_f1_between_its_accuracies(pairs):
    pred, truth = [p for p, _ in pairs], [t for _, t in pairs]
    r = processbench_scores(pred, truth)
    assert min(r["acc_wrong"], r["acc_right"]) - 1e-12 <= r["f1"] <= max(r["acc_wrong"], r["acc_right"]) + 1e-12
    assert r["n_wrong"] + r["n_right"] == len(pairs)


def test_predicted_first_error_threshold():
    assert predicted_first_error([[0.6, 0.4, 0.9], [0.51], []], 0.5) == [1, None, None]


# ---- the pipeline: resume after a kill ---------------------------------------------------------------------------
TINY = dict(warm_steps=150, n_train_problems=6, train_group=2, n_eval_problems=3, threshold_folds=2, n_samples=4, ns=(2, 4), draws=4,
            methods=("math_shepherd",), soft=("math_shepherd",), prm_steps=4, prm_d_model=16, chunk=4)


@pytest.fixture(scope="module")
def warm_policy(tmp_path_factory):
    "One warm-started lab policy (policy.pt), shared by the pipeline tests (the pipeline reads it instead of training one)."
    d = tmp_path_factory.mktemp("warm")
    cfg = PRMLabConfig(**TINY).validate()
    prm_lab._seed_policy(d, 0, cfg, "cpu")
    return d / "policy.pt"


def _with_policy(out, warm_policy):
    (out / "seed0").mkdir(parents=True, exist_ok=True); shutil.copy(warm_policy, out / "seed0" / "policy.pt")
    return out


@pytest.mark.xdist_group("warm_policy")   # one worker builds the shared warm start once
def test_pipeline_resumes_without_redoing_finished_work(tmp_path, warm_policy, monkeypatch):
    cfg = PRMLabConfig(**TINY)
    out = _with_policy(tmp_path / "killed", warm_policy)
    calls = {"train": 0, "annotate": 0}
    real_train, real_ann = prm_lab.train_prm, prm_lab.annotate_many
    def dying_train(*a, **k):                      # the run is killed while training the third PRM
        calls["train"] += 1
        if calls["train"] == 3: raise KeyboardInterrupt
        return real_train(*a, **k)
    def counting_ann(*a, **k): calls["annotate"] += 1; return real_ann(*a, **k)
    monkeypatch.setattr(prm_lab, "train_prm", dying_train); monkeypatch.setattr(prm_lab, "annotate_many", counting_ann)
    with pytest.raises(KeyboardInterrupt): run_prm_pipeline(out, cfg=cfg, device="cpu", progress=False, seeds=1)
    ann = out / "seed0" / "annotations" / "math_shepherd.jsonl"
    n_lines, n_ann = len(ann.read_text().splitlines()), calls["annotate"]
    assert n_lines == 12 and n_ann == 3                              # 12 solutions in chunks of 4
    done = {p.name: p.stat().st_mtime_ns for p in (out / "seed0" / "prm").iterdir()}
    assert len(done) == 2
    calls.update(train=-100, annotate=0)                             # the rerun must train only the missing PRMs
    res = run_prm_pipeline(out, cfg=cfg, device="cpu", progress=False, seeds=1)
    assert calls["annotate"] == 0 and calls["train"] == -100 + len(cfg.validate().sources()) - 2
    assert len(ann.read_text().splitlines()) == n_lines
    assert {p.name: p.stat().st_mtime_ns for p in (out / "seed0" / "prm").iterdir() if p.name in done} == done
    assert {"majority", "random", "orm", "oracle", "prm:truth", "prm:outcome", "prm:math_shepherd", "prm:math_shepherd_soft"} <= set(res["eval"]["selector"])
    assert set(res["eval"]["N"]) == {2, 4} and res["eval"]["accuracy"].between(0, 1).all()
    for f in ("eval.csv", "steplevel.csv", "cost.csv", "best_of_n.png", "summary.md"): assert (out / f).exists()
    # an uninterrupted run writes the same annotations and the same evaluation: the pipeline is bit-reproducible
    monkeypatch.setattr(prm_lab, "train_prm", real_train)
    fresh = _with_policy(tmp_path / "fresh", warm_policy)
    run_prm_pipeline(fresh, cfg=cfg, device="cpu", progress=False, seeds=1)
    assert (fresh / "seed0" / "annotations" / "math_shepherd.jsonl").read_text() == ann.read_text()
    assert (fresh / "eval.csv").read_text() == (out / "eval.csv").read_text()


@pytest.mark.xdist_group("warm_policy")   # one worker builds the shared warm start once
def test_pipeline_refuses_another_configuration(tmp_path, warm_policy):
    out = _with_policy(tmp_path, warm_policy)
    (out / "config.json").write_text(json.dumps({"warm_steps": 1}))
    with pytest.raises(ValueError, match="another configuration"):
        run_prm_pipeline(out, cfg=PRMLabConfig(**TINY), device="cpu", progress=False)


@pytest.mark.xdist_group("warm_policy")   # one worker builds the shared warm start once
def test_pipeline_resumes_after_sigkill(tmp_path, warm_policy):
    out = _with_policy(tmp_path / "run", warm_policy)
    code = (f"import torch; torch.set_num_threads(1)\nfrom ktae_lab.prm_lab import PRMLabConfig, run_prm_pipeline\n"
            f"run_prm_pipeline({str(out)!r}, cfg=PRMLabConfig(**{TINY!r}), device='cpu', progress=False, seeds=1)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    ann = out / "seed0" / "annotations" / "math_shepherd.jsonl"
    t0 = time.time()
    while not (ann.exists() and ann.stat().st_size) and proc.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
    proc.send_signal(signal.SIGKILL); proc.wait()
    lines = ann.read_text().splitlines() if ann.exists() else []
    assert all(json.loads(l)["row"] >= 0 for l in lines)           # only complete lines (a torn one is repaired on resume)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(l)["row"] for l in ann.read_text().splitlines()]
    assert sorted(rows) == list(range(12))                           # every solution once: nothing redone, nothing lost
    assert (out / "eval.csv").exists() and (out / "seed0" / "results.json").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_score_steps_on_gpu_matches_cpu():
    p = _prm()
    a = score_steps(p, ["1+2:", "3-1:"], ["1+2=3#3", "3-1=2#2"])
    p.to("cuda")
    b = score_steps(p, ["1+2:", "3-1:"], ["1+2=3#3", "3-1=2#2"])
    np.testing.assert_allclose(sum(a, []), sum(b, []), atol=1e-4)
    ps, rs, ys = _addition_set(32)
    assert len(train_prm(p, ps, rs, ys)) == SMALL.steps


# ---- the command line and the lab's process rewards ----------------------------------------------------------------
def test_cli_prm_errors(run_cli, tmp_path):
    rc, _, err = run_cli(["prm"])
    assert rc == 2 and err.startswith("ktae-lab prm: error: the following arguments are required: -o/--out")
    (tmp_path / "f").write_text("x")
    rc, _, err = run_cli(["prm", "-o", tmp_path / "f"])
    assert rc == 2 and "is an existing file; give a folder" in err and "Traceback" not in err
    rc, _, err = run_cli(["prm", "-o", tmp_path / "o", "--device", "gpu"])
    assert rc == 2 and "'gpu' is not a device name" in err
    rc, out, _ = run_cli(["--help"])
    assert rc == 0 and "prm" in out


def test_cli_ablate_prm_bad_input(run_cli, tmp_path):
    rc, _, err = run_cli(["ablate", "--algos", "grpo,grpo+prm", "-o", tmp_path / "ab", "--steps", "1", "--prm-method", "nope"])
    assert rc == 2 and "--prm-method must be one of epic_adaptive" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(["ablate", "--algos", "grpo+prm", "-o", tmp_path / "ab", "--lab", f"prm_path={tmp_path / 'none.pt'}"])
    assert rc == 2 and "`prm_path` must be the file of a PRM checkpoint" in err


# a tiny task whose 150-step warm start gets about half its answers right (so EpicPRM has labels to give)
TINY_LAB = dict(n_train=300, n_heldout=16, min_ops=2, max_ops=2, max_operand=3, steps=2, prompts_per_step=4, group_size=4,
                max_new_tokens=12, overlong_buffer=4, eval_every=1, warm_steps=150, warm_batch=16, device="cpu", progress=False)


def test_run_ablation_prm_needs_a_source(tmp_path):
    from ktae_lab.lab import LabConfig, run_ablation
    with pytest.raises(ValueError, match=r"pass `prm=ktae_lab.prm_lab.lab_prm`"):
        run_ablation(["grpo", "grpo+prm"], 1, LabConfig(**TINY_LAB), progress=False)
    with pytest.raises(ValueError, match="`prm` must be a function"):
        run_ablation(["grpo+prm"], 1, LabConfig(**TINY_LAB), progress=False, prm=str(tmp_path / "x.pt"))


@pytest.mark.parametrize("workers", [1, 2])
def test_ablation_trains_one_prm_per_seed_on_its_warm_start(tmp_path, workers):
    from functools import partial
    from ktae_lab.lab import LabConfig, run_ablation
    from ktae_lab.prm_lab import lab_prm
    make = partial(lab_prm, n_problems=8, group=2, prm_steps=3)
    df = run_ablation(["grpo", "grpo+prm"], 2, LabConfig(**TINY_LAB), tmp_path, workers=workers, progress=False, prm=make)
    assert set(df["algo"]) == {"grpo", "grpo+prm"} and set(df["seed"]) == {0, 1}
    cks = [tmp_path / "checkpoints" / f"prm-seed{s}" / "epic_adaptive.pt" for s in (0, 1)]
    assert all(f.is_file() for f in cks)
    assert load_prm(cks[1], TOK, task="ktae_lab.arithmetic").label_source == "epic_adaptive"
    pairs = pd.read_csv(tmp_path / "paired.csv")
    assert set(pairs["algo"]) == {"grpo+prm"} and set(pairs["baseline"]) == {"grpo"} and (pairs["seeds"] == 2).all()
    assert "## Paired differences across seeds" in (tmp_path / "summary.md").read_text()
    if workers > 1: return   # the resume below is the same code path with 1 or 2 workers (`lab_prm` finds its checkpoint)
    # a resumed ablation with one more algorithm trains no PRM again
    stamps = [f.stat().st_mtime_ns for f in cks]
    run_ablation(["grpo", "grpo+prm", "grpo+truth"], 2, LabConfig(**TINY_LAB), tmp_path, workers=workers, progress=False, prm=make)
    assert [f.stat().st_mtime_ns for f in cks] == stamps


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 5), st.integers(0, 10**6))
def test_process_advantages_properties(n_groups, G, S, seed):
    from ktae_lab.lab import process_advantages
    g = torch.Generator().manual_seed(seed)
    B, L = n_groups * G, 2 * S + 1
    n_steps = torch.randint(1, S + 1, (B,), generator=g)
    valid = torch.arange(S)[None] < n_steps[:, None]
    r = torch.rand(B, S, generator=g).round()
    # each step two tokens long, the last padding
    steps = torch.arange(L)[None].expand(B, L) // 2
    steps = torch.where(steps < n_steps[:, None], steps, torch.full_like(steps, -1))
    a = process_advantages(r, valid, steps, G)
    assert a.shape == (B, L) and torch.isfinite(a).all() and (a[steps < 0] == 0).all()
    # tokens of one step share its advantage; the last step's advantage is that step's normalised reward alone
    assert (a[:, 0::2][:, :S] == a[:, 1::2][:, :S]).all()
    same = process_advantages(torch.ones(B, S), valid, steps, G)
    assert (same == 0).all()                                                    # no contrast in any group: zeros, never NaN
    shifted = process_advantages(r * 3 + 1, valid, steps, G)                  # invariant to an affine change of the rewards
    torch.testing.assert_close(shifted, a, atol=1e-3, rtol=1e-3)


def test_truth_step_rewards_match_first_wrong_step():
    from ktae_lab.lab import step_rewards, _encode
    ids, am = _encode(TOK, ["1+2+3:"] * 3)
    resp = TOK(["1+2=3,3+3=6#6<eos>", "1+2=3,3+3=7#7<eos>", "1+2=4,4+3=7#7<eos>"], add_special_tokens=False,
               padding=True, return_tensors="pt")
    r, v = step_rewards(TOK, ids, am, resp["input_ids"], resp["attention_mask"], "truth")
    assert r.tolist() == [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]] and v.all()
    p = _prm()
    r2, _ = step_rewards(TOK, ids, am, resp["input_ids"], resp["attention_mask"], "prm", p)
    assert torch.allclose(r2, torch.tensor(score_steps(p, ["1+2+3:"] * 3, ["1+2=3,3+3=6#6", "1+2=3,3+3=7#7", "1+2=4,4+3=7#7"])))
    with pytest.raises(ValueError, match="needs a `prm`"): step_rewards(TOK, ids, am, resp["input_ids"], resp["attention_mask"], "prm")


def test_cli_ablate_trains_the_prm_of_each_seed(run_cli, tmp_path):
    "The issue's command shape, on the tiny task: +prm without --lab prm_path trains the seed's PRM (cached in checkpoints/)."
    lab = [x for k, v in TINY_LAB.items() if k not in ("steps", "warm_steps", "eval_every", "device", "progress")
           for x in ("--lab", f"{k}={v}")]
    argv = ["ablate", "--algos", "grpo,grpo+prm", "--seeds", "1", "--steps", "2", "--warm-steps", "150", "--eval-every", "1",
            "--workers", "1", "--no-progress", "--device", "cpu", "-o", tmp_path / "ab", *lab]
    rc, out, err = run_cli(argv)
    assert rc == 0, err
    assert "+prm: each seed's PRM is trained on epic_adaptive labels" in err
    assert (tmp_path / "ab" / "checkpoints" / "prm-seed0" / "epic_adaptive.pt").is_file()
    assert "## Paired differences across seeds" in out and "grpo+prm − grpo" in out
    pairs = pd.read_csv(tmp_path / "ab" / "paired.csv")
    assert set(pairs["algo"]) == {"grpo+prm"} and len(pairs) == 4


SMALL_QUICK = dict(warm_steps=150, n_train_problems=12, n_eval_problems=6, draws=4, prm_steps=20)


@pytest.mark.xdist_group("warm_policy")
def test_cli_prm_quick_end_to_end(run_cli, tmp_path, monkeypatch, warm_policy):
    """`ktae-lab prm --quick` as README gives it (every promised file and eval.csv row), end to end, on a smaller quick
    configuration: the same annotators, soft labels and N; fewer problems, draws and PRM steps. Its 150-step warm start
    is the pipeline tests' (the same lab configuration, so the same policy.pt), which `warm_policy` trains through the
    pipeline's own `_seed_policy` once per worker."""
    from dataclasses import replace
    quick = PRMLabConfig.quick
    monkeypatch.setattr(PRMLabConfig, "quick", classmethod(lambda cls: replace(quick(), **SMALL_QUICK)))
    assert PRMLabConfig.quick().lab("cpu") == PRMLabConfig(**TINY).lab("cpu")     # what makes the shared policy valid here
    out = _with_policy(tmp_path / "prm", warm_policy)
    rc, text, err = run_cli(["prm", "-o", out, "--quick", "--no-progress", "--device", "cpu"])
    assert rc == 0, err
    ev = pd.read_csv(out / "eval.csv")
    assert {"majority", "random", "orm", "oracle", "prm:truth", "prm:outcome", "prm:epic_adaptive", "prm:math_shepherd",
            "prm:math_shepherd_soft"} <= set(ev["selector"]) and set(ev["N"]) == {4, 8, 16, 32}
    assert set(ev["candidates"]) == {"all", "complete"} and ev["accuracy"].between(0, 1).all()
    for _, part in ev.groupby("candidates"):   # every answer, and complete answers only (a final `#`)
        wide = part.pivot(index="selector", columns="N", values="accuracy")
        assert wide.le(wide.loc["oracle"] + 1e-12).all().all()   # nothing beats the oracle
    for f in ("cost.csv", "steplevel.csv", "best_of_n.png", "summary.md", "seed0/annotations/epic_adaptive.jsonl",
              "seed0/annotations/math_shepherd.jsonl", "seed0/results.json"): assert (out / f).is_file(), f
    assert sorted(p.stem for p in (out / "seed0" / "prm").glob("*.pt")) == sorted(PRMLabConfig.quick().sources())
    ck = load_prm(out / "seed0" / "prm" / "epic_adaptive.pt", TOK, task="ktae_lab.arithmetic")
    assert ck.label_source == "epic_adaptive"


def test_tampered_checkpoint_names_the_file_and_the_fault(tmp_path):
    f = save_prm(_prm(task="arith"), tmp_path / "p.pt")
    st = torch.load(f, weights_only=True)
    cases = [({k: v for k, v in st.items() if k != "vocab_fingerprint"}, "'vocab_fingerprint' missing"),
             (dict(st, vocab_size="64"), "'vocab_size' is a str, not int"),
             (dict(st, config=dict(st["config"], d_model=-4)), "invalid config"),
             (dict(st, config=dict(st["config"], evil=1)), "unknown config fields"),
             (dict(st, state={**st["state"], next(iter(st["state"])): torch.zeros(3, 5)}), "does not fit this model .*size mismatch"),
             (dict(st, state={k: v for i, (k, v) in enumerate(st["state"].items()) if i}), "does not fit this model .*Missing key"),
             (dict(st, state=[1, 2]), "'state' is a list, not dict")]
    for i, (bad, msg) in enumerate(cases):
        g = tmp_path / f"bad{i}.pt"; torch.save(bad, g)
        with pytest.raises(ValueError, match=msg) as e: load_prm(g, TOK, device="cpu")
        assert str(g) in str(e.value), e.value
