"""The simulated policy: reproducibility, truth invariants, completer statistics, scoring."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from ktae_lab.epicprm import annotate, annotate_dataset, check_completions, AveragedCompleter, METHODS
from ktae_lab.simulator import SimConfig, simulate_problems, SimCompleter, value_path, score_annotations, compare_methods


@pytest.fixture(scope="module")
def sp():
    return simulate_problems(12, SimConfig(min_steps=4, max_steps=20), seed=5)


def test_reproducible_and_seed_sensitive(sp):
    again = simulate_problems(12, SimConfig(min_steps=4, max_steps=20), seed=5)
    cols = ["S", "first_error", "p0", "benign", "false_positive", "correct"]
    pd.testing.assert_frame_equal(sp.solutions[cols], again.solutions[cols])
    assert all(np.array_equal(a, b) for a, b in zip(sp.solutions["values"], again.solutions["values"]))
    other = simulate_problems(12, SimConfig(min_steps=4, max_steps=20), seed=6)
    assert not np.array_equal(other.solutions.S, sp.solutions.S)


def test_truth_invariants(sp):
    df = sp.solutions
    assert len(df) == 12 * 8 and (~df.correct).sum() == 12 * 6
    assert df.S.between(4, 20).all()
    for _, r in df.iterrows():
        v = np.asarray(r["values"])
        assert len(v) == r.S and ((v >= 0) & (v <= 1)).all()
        if r.correct:
            assert v[-1] == 1.0 and (r.first_error is None) != r.false_positive
        else:
            assert v[-1] == 0.0 and 0 <= r.first_error <= r.S - 1
            if r.first_error < r.S - 1:
                e = r.first_error
                pre = r.p0 if e == 0 else v[e - 1]
                assert v[e] < pre                                   # the error costs value
                assert (v[e + 1:r.S - 1] >= min(sp.config.floor, v[e]) - 1e-12).all()   # residual value floor
        assert r.steps[-1].endswith(f"The answer is {r.reference_answer}") == r.correct


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 25), st.floats(0.01, 0.95), st.data())
def test_value_path_properties(S, p0, data):
    e = data.draw(st.integers(0, S - 1)); seed = data.draw(st.integers(0, 1000))
    v = value_path(S, p0, e, False, np.random.default_rng(seed))
    assert v.shape == (S,) and np.isfinite(v).all() and v[-1] == 0
    clean = value_path(S, p0, None, True, np.random.default_rng(seed))
    assert clean[-1] == 1 and ((clean > 0) & (clean <= 1)).all()


def test_completer_rates_match_values(sp):
    w = sp.solutions[(~sp.solutions.correct) & (sp.solutions.S >= 6)].iloc[0]
    cfg = sp.config
    for bias in (-0.4, 0.3):
        c = SimCompleter(sp, bias=bias, seed=1)
        for t in (0, w.S - 2):
            v = float(w["values"][t])
            pj = 1 / (1 + math.exp(-(math.log(v / (1 - v)) + bias)))
            expect = pj * (1 - cfg.eps_fn) + (1 - pj) * cfg.eps_fp
            got = np.mean([x.correct for x in c(w.question, w.steps[: t + 1], 6000)])
            assert got == pytest.approx(expect, abs=4 * math.sqrt(expect * (1 - expect) / 6000) + 1e-3)


def test_weights_and_tokens(sp):
    w = sp.solutions[(~sp.solutions.correct) & (sp.solutions.S >= 8)].iloc[0]
    c = SimCompleter(sp, seed=2)
    cs = check_completions(c(w.question, [], 4000), 4000)
    lp = np.array([x.mean_logprob for x in cs]); ok = np.array([x.correct for x in cs])
    cfg = sp.config
    assert lp[ok].mean() == pytest.approx(cfg.mu_w, abs=0.02) and lp[~ok].mean() == pytest.approx(cfg.mu_w - cfg.wrong_delta, abs=0.02)
    toks = np.array([x.num_tokens for x in cs])
    assert toks.mean() == pytest.approx(cfg.tokens_base + cfg.tokens_mean, rel=0.05)     # from the bare question
    late = check_completions(c(w.question, w.steps[: w.S - 1], 2000), 2000)
    assert np.mean([x.num_tokens for x in late]) < toks.mean() / 2          # completions from long prefixes are short
    after = [x for x in c(w.question, w.steps[: w.first_error + 1], 4000) if x.correct] if w.first_error < w.S - 1 else []
    if len(after) > 30:                                                      # lucky successes carry lower likelihood
        assert np.mean([x.mean_logprob for x in after]) == pytest.approx(cfg.mu_w - cfg.lucky_delta, abs=0.06)


def test_common_random_numbers(sp):
    w = sp.solutions[~sp.solutions.correct].iloc[3]
    a, b = sp.completer(), sp.completer()
    for pre in ([], w.steps[:1], w.steps[:2]):
        x, y = a(w.question, pre, 10), b(w.question, pre, 10)
        assert [(c.correct, c.mean_logprob, c.num_tokens) for c in x] == [(c.correct, c.mean_logprob, c.num_tokens) for c in y]
    c = SimCompleter(sp, seed=0)
    first, second = c(w.question, [], 10), c(w.question, [], 10)           # a repeated call draws anew
    assert [x.mean_logprob for x in first] != [x.mean_logprob for x in second]
    c.reset()
    assert [x.mean_logprob for x in c(w.question, [], 10)] == [x.mean_logprob for x in first]


def test_every_method_runs_unchanged(sp):
    w = sp.solutions[(~sp.solutions.correct) & (sp.solutions.S >= 6)].iloc[0]
    for m in METHODS:
        a = annotate(w.question, w.steps, w.reference_answer, sp.completer(), m, is_correct=False)
        assert a.rollouts > 0 and (a.labels is None or len(a.labels) == w.S)


def test_emit_text_path_equals_flag_path(sp):
    w = sp.solutions[(~sp.solutions.correct)].iloc[1]
    txt = AveragedCompleter([SimCompleter(sp, b, j, sp.seed, emit_text=True) for j, b in enumerate(sp.config.completer_bias)])
    a = annotate(w.question, w.steps, w.reference_answer, txt, "epic_adaptive", is_correct=False,
                 verifier=lambda t, r: t.rsplit(" ", 1)[-1] == r)
    b = annotate(w.question, w.steps, w.reference_answer, sp.completer(), "epic_adaptive", is_correct=False)
    assert (a.first_error, a.rollouts, a.tokens) == (b.first_error, b.rollouts, b.tokens)


def test_score_perfect_and_wrong_records(sp):
    wrong = sp.solutions[~sp.solutions.correct]
    perfect = [dict(id=r.id, status="ok", first_error=r.first_error, labels=[int(i < r.first_error) for i in range(r.S)],
                    probes=[], rollouts=10, tokens=100) for r in wrong.itertuples()]
    s = score_annotations(perfect, sp.solutions)
    assert (s["fe_acc"], s["fe_acc_all"], s["f1"], s["offset"], s["coverage"], s["rollouts"]) == (1.0, 1.0, 1.0, 0.0, 1.0, 10.0)
    late = [dict(d, first_error=d["first_error"] + 1, labels=[int(i < d["first_error"] + 1) for i in range(len(d["labels"]))])
            for d in perfect]
    s = score_annotations(late, sp.solutions)
    assert s["fe_acc"] == 0 and s["offset"] == 1.0 and s["f1"] < 1
    skipped = [dict(d, status="skipped", first_error=None, labels=None) if i % 2 else d for i, d in enumerate(perfect)]
    s = score_annotations(skipped, sp.solutions)
    assert s["fe_acc"] == 1.0 and s["fe_acc_all"] == pytest.approx(0.5, abs=0.02) and s["coverage"] == pytest.approx(0.5, abs=0.02)


def test_compare_methods_directions():
    probs = simulate_problems(15, SimConfig(min_steps=4, max_steps=20), seed=11)
    tab = compare_methods(probs, {m: (m, {}) for m in ("epic_sequential", "epic_binary", "epic_adaptive")})
    assert tab.loc["epic_binary", "probes"] < tab.loc["epic_sequential", "probes"]
    assert tab.loc["epic_adaptive", "rollouts"] < tab.loc["epic_binary", "rollouts"] < tab.loc["epic_sequential", "rollouts"]


def test_bad_input(sp):
    with pytest.raises(ValueError, match="`n_questions`"): simulate_problems(0)
    with pytest.raises(ValueError, match="`fp_frac`"): SimConfig(fp_frac=1.5)
    with pytest.raises(ValueError, match="min_steps"): SimConfig(min_steps=5, max_steps=4)
    with pytest.raises(ValueError, match="completer_bias"): SimConfig(completer_bias=())
    c = sp.completer()
    with pytest.raises(ValueError, match="`n`"): c.completers[0]("x", [], 0)
    with pytest.raises(KeyError, match="unknown simulated question"): c.completers[0]("not a question", [], 3)
    with pytest.raises(KeyError, match="not a step"): c.completers[0](sp.solutions.question[0], ["Step 1: made up"], 3)


def test_score_annotations_has_one_owner():
    "score_annotations (aggregate) and annotation_outcomes (per solution) live in simulator only; credit calls them."
    import ktae_lab.credit as credit, ktae_lab.simulator as simulator
    assert not hasattr(credit, "score_annotations") and "annotation_outcomes" in simulator.__all__
    assert credit.annotation_outcomes is simulator.annotation_outcomes
