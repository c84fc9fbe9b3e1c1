"""EpicPRM annotation: searches, estimates, pilot, accounting, retries, resume and bad input."""
import json, math, os, warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from ktae_lab.epicprm import (Completion, AveragedCompleter, CompleterProtocolError, CompleterError, check_completions,
                              split_steps, mc_estimate, sequential_first_error, binary_first_error, pilot_k, epic_baseline,
                              annotate, annotate_dataset, read_annotations, to_epic50k, METHODS, num_sources)


def prefix_completer(first_error, p_ok=0.7, p_bad=0.02, lp=-0.3, tokens=20):
    "Deterministic toy: outcomes depend on (prefix length, call number for that prefix)."
    calls = {}
    def comp(q, prefix, n):
        key = (q, len(prefix)); c = calls.get(key, 0); calls[key] = c + 1
        rng = np.random.default_rng([len(prefix), c, sum(map(ord, q))])
        p = p_ok if len(prefix) <= first_error else p_bad
        return [Completion("t", bool(x), lp, tokens) for x in rng.random(n) < p]
    return comp


class Counting:
    "Wraps a completer and counts what it produced."
    def __init__(self, inner): self.inner, self.n, self.tokens, self.calls = inner, 0, 0, 0
    def __call__(self, q, p, n):
        out = self.inner(q, p, n); self.calls += 1; self.n += len(out); self.tokens += sum(c.num_tokens for c in out); return out


STEPS = [f"Step {i + 1}: s{i}" for i in range(9)]


# ---------------------------------------------------------------- searches
@given(st.integers(1, 40), st.data())
def test_binary_finds_monotone_error(M, data):
    e = data.draw(st.integers(0, M)); start = data.draw(st.sampled_from(["middle", "early", "late"]))
    fe, probes = binary_first_error(M, lambda m: m >= e, start)
    assert fe == e
    assert len(probes) <= math.floor(math.log2(M)) + 2 + (start != "middle")
    assert len({p[0] for p in probes}) == len(probes)              # never re-probes


@given(st.integers(1, 40), st.data())
def test_sequential_cost(M, data):
    e = data.draw(st.integers(0, M))
    fe, probes = sequential_first_error(M, lambda m: m >= e)
    assert fe == e and len(probes) == min(e + 1, M)


@pytest.mark.parametrize("S,avg_bin,avg_seq", [(4, 2.0, 2.25), (10, 3.4, 5.4), (16, 4.0, 8.44), (20, 4.4, 10.45)])
def test_probe_counts_match_reference_table(S, avg_bin, avg_seq):
    M = S - 1
    b = np.mean([len(binary_first_error(M, lambda m: m >= e)[1]) for e in range(S)])
    s = np.mean([len(sequential_first_error(M, lambda m: m >= e)[1]) for e in range(S)])
    assert b == pytest.approx(avg_bin, abs=0.01) and s == pytest.approx(avg_seq, abs=0.01)


def test_shift_moves_first_probe_only_when_long_enough():
    assert binary_first_error(9, lambda m: True, "early")[1][0][0] == 4 - 2
    assert binary_first_error(9, lambda m: False, "late")[1][0][0] == 4 + 2
    assert binary_first_error(4, lambda m: True, "early")[1][0][0] == 1    # hi = 3 < 4: no shift


# ---------------------------------------------------------------- estimates and pilot
@given(st.lists(st.tuples(st.booleans(), st.floats(-5, 0), st.integers(0, 2)), min_size=1, max_size=30),
       st.sampled_from(["ppl", "count"]))
def test_mc_estimate_matches_loop(rows, weighting):
    ok, lp, src = zip(*rows)
    per = []
    for j in sorted(set(src)):
        num = den = 0.0
        for o, l, s in rows:
            if s != j: continue
            w = math.exp(l) if weighting == "ppl" else 1.0
            num += w * o; den += w
        per.append(num / den)
    assert mc_estimate(ok, lp, src, weighting) == pytest.approx(sum(per) / len(per))


def pilot_reference(correct, source, min_correct=10):
    K = max(source) + 1
    cols = [[c for c, s in zip(correct, source) if s == j] for j in range(K)]
    if sum(correct) <= min_correct: return None
    cum = 0
    for i in range(max(map(len, cols))):
        cum += sum(col[i] for col in cols if i < len(col))
        if cum >= min_correct: return min(max(16, 8 * math.ceil(i / 8)), max(map(len, cols)))


@settings(max_examples=60)
@given(st.lists(st.booleans(), min_size=144, max_size=144))
def test_pilot_k_matches_reference(correct):
    src = [0] * 72 + [1] * 72
    assert pilot_k(correct, src) == pilot_reference(list(map(int, correct)), src)


def test_pilot_k_by_difficulty():
    rng = np.random.default_rng(0)
    ks = {p: pilot_k(rng.random(144) < p, [0] * 72 + [1] * 72) for p in (0.5, 0.2, 0.1, 0.03)}
    assert ks[0.5] == 16 and 16 < ks[0.2] <= ks[0.1] <= 72 and ks[0.03] is None


# ---------------------------------------------------------------- accounting
@pytest.mark.parametrize("method", METHODS)
def test_accounting_counts_every_completion(method):
    c1, c2 = Counting(prefix_completer(3)), Counting(prefix_completer(3, p_ok=0.5, tokens=7))
    pair = AveragedCompleter([c1, c2])
    a = annotate("q", STEPS, "1", pair, method, is_correct=False)
    assert a.rollouts == c1.n + c2.n and a.tokens == c1.tokens + c2.tokens
    assert sum(p.rollouts for p in a.probes) + (a.baseline.rollouts if a.baseline else 0) == a.rollouts
    assert a.first_error == 3


def test_epic_static_k_per_completer():
    pair = AveragedCompleter([prefix_completer(3), prefix_completer(3)])
    a = annotate("q", STEPS, "1", pair, "epic_binary", is_correct=False)
    assert {p.rollouts for p in a.probes} == {96} and a.baseline.rollouts == 96 and num_sources(pair) == 2
    a = annotate("q", STEPS, "1", pair, "epic_adaptive", is_correct=False)
    assert a.baseline.rollouts == 144 + 2 * a.baseline.k and {p.rollouts for p in a.probes} == {2 * a.baseline.k}


def test_math_shepherd_labels():
    a = annotate("q", STEPS, "1", prefix_completer(3, p_bad=0.0), "math_shepherd", is_correct=False)
    assert a.labels == [1, 1, 1, 0, 0, 0, 0, 0, 0] and len(a.soft_labels) == 9 and a.rollouts == 8 * 8
    assert all((s > 0) == bool(l) for s, l in zip(a.soft_labels, a.labels))
    a = annotate("q", STEPS, "1", prefix_completer(3, p_bad=0.0), "math_shepherd", is_correct=True)
    assert a.labels[-1] == 1 and a.rollouts == 64                  # correct solutions are rolled out too


def test_correct_solution_is_free_for_searches():
    for m in ("epic_adaptive", "epic_binary", "epic_sequential", "omega_binary"):
        a = annotate("q", STEPS, "1", prefix_completer(3), m, is_correct=True)
        assert a.labels == [1] * 9 and a.rollouts == 0 and a.first_error is None


def test_single_step_solution():
    a = annotate("q", ["The answer is 5"], "4", prefix_completer(0), "epic_binary", is_correct=False)
    assert a.labels == [0] and a.first_error == 0 and not a.probes


def test_verifier_called_when_correct_is_none():
    seen = []
    def comp(q, p, n): return [Completion(f"answer {len(p) <= 2}", None, -0.1, 3) for _ in range(n)]
    def ver(text, ref): seen.append(ref); return text.endswith("True")
    a = annotate("q", STEPS, "42", comp, "epic_sequential", k=4, verifier=ver, is_correct=False)
    assert a.first_error == 2 and set(seen) == {"42"}


def test_default_verifier_is_numeric_verifier():
    pytest.importorskip("ktae_lab.verify")
    def comp(q, p, n): return [Completion("so \\boxed{12}" if len(p) <= 1 else "The answer is 13", None, -0.1, 3) for _ in range(n)]
    a = annotate("q", ["a", "b", "c", "The answer is 13"], "12", comp, "epic_sequential", k=2)
    assert a.is_correct is False and a.first_error == 1


def test_solution_correctness_from_verifier():
    a = annotate("q", ["x", "The answer is 4"], "4", prefix_completer(0), "epic_binary", verifier=lambda t, r: r in t)
    assert a.is_correct and a.labels == [1, 1]


def test_skip_and_shared_baseline():
    hard = lambda q, p, n: [Completion("", False, -0.2, 5) for _ in range(n)]
    a = annotate("q", STEPS, "1", hard, "epic_adaptive", is_correct=False)
    assert a.status == "skipped" and a.labels is None and a.rollouts == 72
    b = epic_baseline("q", prefix_completer(3), "1")
    a = annotate("q", STEPS, "1", prefix_completer(3), "epic_adaptive", baseline=b, is_correct=False)
    assert a.rollouts == sum(p.rollouts for p in a.probes)          # a passed-in baseline is not paid again


# ---------------------------------------------------------------- retries and protocol errors
def test_retry_then_success():
    inner, fails = prefix_completer(3), [2]
    def flaky(q, p, n):
        if fails[0]: fails[0] -= 1; raise ConnectionError("blip")
        return inner(q, p, n)
    assert annotate("q", STEPS, "1", flaky, "epic_binary", is_correct=False, max_retries=2).first_error == 3


def test_retry_exhausted():
    calls = [0]
    def down(q, p, n): calls[0] += 1; raise ConnectionError("down")
    with pytest.raises(CompleterError, match="ConnectionError"):
        annotate("q", STEPS, "1", down, "epic_binary", is_correct=False, max_retries=3)
    assert calls[0] == 4


@pytest.mark.parametrize("bad,msg", [
    (lambda n: [Completion("a", True, -0.1, 1)] * (n + 1), "expected n="),
    (lambda n: "nope", "list"),
    (lambda n: [{"text": "a", "correct": True}] * n, "lacks"),
    (lambda n: [Completion(3, True, -0.1, 1)] * n, "`text`"),
    (lambda n: [Completion("a", "yes", -0.1, 1)] * n, "`correct`"),
    (lambda n: [Completion("a", True, 0.5, 1)] * n, "`mean_logprob`"),
    (lambda n: [Completion("a", True, float("inf"), 1)] * n, "`mean_logprob`"),
    (lambda n: [Completion("a", True, -0.1, -1)] * n, "`num_tokens`"),
    (lambda n: [Completion("a", True, -0.1, 1.5)] * n, "`num_tokens`"),
])
def test_malformed_completer_is_not_retried(bad, msg):
    calls = [0]
    def comp(q, p, n): calls[0] += 1; return bad(n)
    with pytest.raises(CompleterProtocolError, match=msg):
        annotate("q", STEPS, "1", comp, "epic_binary", is_correct=False, max_retries=5)
    assert calls[0] == 1


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw,exc,msg", [
    (dict(steps=[]), ValueError, "`steps` is empty"),
    (dict(question=""), ValueError, "`question`"),
    (dict(steps="Step 1: a\nStep 2: b"), TypeError, "split_steps"),
    (dict(steps=["a", 3]), TypeError, r"`steps\[1\]`"),
    (dict(reference_answer=4), TypeError, "`reference_answer`"),
    (dict(method="prm800k"), ValueError, "`method`"),
    (dict(alpha=0.0), ValueError, "`alpha`"),
    (dict(alpha=1.0), ValueError, "`alpha`"),
    (dict(alpha=-0.5), ValueError, "`alpha`"),
    (dict(k=0), ValueError, "`k`"),
    (dict(k=2.5), ValueError, "`k`"),
    (dict(method="math_shepherd", n=0), ValueError, "`n`"),
    (dict(method="omega_binary", n=-3), ValueError, "`n`"),
    (dict(method="omega_binary", alpha=0.5), ValueError, "unknown parameter"),
    (dict(weighting="log"), ValueError, "`weighting`"),
    (dict(max_retries=-1), ValueError, "`max_retries`"),
    (dict(completer="nope"), TypeError, "`completer`"),
])
def test_bad_input(kw, exc, msg):
    args = dict(question="q", steps=STEPS, reference_answer="1", completer=prefix_completer(3), method="epic_binary")
    args.update(kw)
    with pytest.raises(exc, match=msg):
        annotate(args.pop("question"), args.pop("steps"), args.pop("reference_answer"), args.pop("completer"),
                 args.pop("method"), is_correct=False, **args)


def test_bad_completers_and_splitting():
    with pytest.raises(ValueError, match="`completers`"): AveragedCompleter([])
    with pytest.raises(ValueError, match="`style`"): split_steps("a", "para")
    with pytest.raises(TypeError, match="`text`"): split_steps(None)
    assert split_steps("") == [] and split_steps("Step 1: a Step 2: b") == ["Step 1: a Step 2: b"]
    assert split_steps("Step 1: a\nStep 12. b\n  Step 3) c") == ["Step 1: a", "Step 12. b", "Step 3) c"]
    with pytest.raises(CompleterProtocolError, match="completers\\[1\\]"):
        AveragedCompleter([prefix_completer(1), lambda q, p, n: []])("q", [], 4)


# ---------------------------------------------------------------- dataset runs
def frame(n=6):
    return pd.DataFrame(dict(id=[f"s{i}" for i in range(n)], question=[f"q{i // 3}" for i in range(n)], reference_answer="1",
                             steps=[STEPS[: 4 + i] for i in range(n)], correct=[False] * n))


class Crash(BaseException): pass


def test_resume_after_crash(tmp_path):
    path = tmp_path / "ann.jsonl"
    full = annotate_dataset(frame(), prefix_completer(2), None, "epic_adaptive", progress=False)
    inner, budget = prefix_completer(2), [9]
    def crashy(q, p, n):
        budget[0] -= 1
        if budget[0] < 0: raise Crash()
        return inner(q, p, n)
    with pytest.raises(Crash): annotate_dataset(frame(), crashy, path, "epic_adaptive", progress=False)
    first = read_annotations(path)
    assert 0 < len(first) < 6
    counting = Counting(prefix_completer(2))
    res = annotate_dataset(frame(), counting, path, "epic_adaptive", progress=False)
    recs = read_annotations(path)
    assert [r["id"] for r in recs] == list(frame().id) and recs[: len(first)] == first     # nothing lost or redone
    assert res.first_error.tolist() == full.first_error.tolist()
    n_probes = sum(len(r["probes"]) for r in recs[len(first):])
    assert counting.calls == n_probes + sum(1 for r in recs[len(first):] if r["baseline"] and not r.get("baseline_shared")) * 2
    again = Counting(prefix_completer(2))
    annotate_dataset(frame(), again, path, "epic_adaptive", progress=False)
    assert again.calls == 0


def test_torn_line_is_kept_and_skipped(tmp_path):
    path = tmp_path / "ann.jsonl"
    annotate_dataset(frame(3), prefix_completer(2), path, "epic_binary", progress=False)
    with open(path, "a") as f: f.write('{"id": "s3", "quest')            # crash in the middle of a write
    with pytest.warns(UserWarning, match="removed a torn last line"):
        res = annotate_dataset(frame(5), prefix_completer(2), path, "epic_binary", progress=False)
    assert list(res.id) == [f"s{i}" for i in range(5)]
    assert '"quest\n' not in path.read_text()                             # cut off, kept beside the file
    assert (tmp_path / "ann.jsonl.torn").read_text() == '{"id": "s3", "quest\n'
    assert len(read_annotations(path)) == 5


def test_failed_solution_recorded_and_run_goes_on(tmp_path):
    path = tmp_path / "ann.jsonl"
    inner = prefix_completer(2)
    def comp(q, p, n):
        if q == "q1": raise TimeoutError("server down")
        return inner(q, p, n)
    res = annotate_dataset(frame(), comp, path, "omega_binary", progress=False, max_retries=1)
    assert list(res.status) == ["ok"] * 3 + ["failed"] * 3
    assert all("TimeoutError" in e for e in res.error[3:])
    assert len(read_annotations(path)) == 6


def test_protocol_error_stops_run_without_losing_records(tmp_path):
    path = tmp_path / "ann.jsonl"
    inner = prefix_completer(2)
    def comp(q, p, n):
        if q == "q1": return inner(q, p, n)[:-1]
        return inner(q, p, n)
    with pytest.raises(CompleterProtocolError, match="expected n="):
        annotate_dataset(frame(), comp, path, "epic_binary", progress=False)
    before = path.read_text()
    assert len(read_annotations(path)) == 3
    with pytest.raises(CompleterProtocolError): annotate_dataset(frame(), comp, path, "epic_binary", progress=False)
    assert path.read_text() == before


def test_resume_with_another_method_is_refused(tmp_path):
    path = tmp_path / "ann.jsonl"
    annotate_dataset(frame(2), prefix_completer(2), path, "epic_binary", progress=False)
    with pytest.raises(ValueError, match="`path`.*epic_binary"):
        annotate_dataset(frame(2), prefix_completer(2), path, "math_shepherd", progress=False)


def test_dataset_bad_input(tmp_path):
    with pytest.raises(TypeError, match="`df`"): annotate_dataset([1], prefix_completer(1))
    with pytest.raises(ValueError, match="lacks column"): annotate_dataset(pd.DataFrame(dict(question=["q"])), prefix_completer(1))
    df = frame(); df.loc[1, "id"] = "s0"
    with pytest.raises(ValueError, match="unique"): annotate_dataset(df, prefix_completer(1), progress=False)
    with pytest.raises(ValueError, match="`alpha`"): annotate_dataset(frame(), prefix_completer(1), alpha=2, progress=False)
    df = frame(2); df.at[0, "steps"] = []
    with pytest.raises(ValueError, match="`steps` is empty"): annotate_dataset(df, prefix_completer(1), tmp_path / "a.jsonl", progress=False)


def test_text_steps_and_epic50k_layout():
    df = pd.DataFrame(dict(id=[0], question=["q"], reference_answer="1", correct=[False],
                           steps=["Step 1: a\nStep 2: b\nStep 3: c\nStep 4: d"]))
    rec = annotate_dataset(df, prefix_completer(1), None, "epic_sequential", progress=False).iloc[0].to_dict()
    assert [s["rating"] for s in rec["steps"]] == [1, 0, 0, 0]
    e = to_epic50k(rec)
    assert e["state2"] == "Problem:q\nSelected steps:\nStep 1: a\nStep 2: b" and e["step3"][0]["rating"] == -1 and e["total_steps"] == 4
    json.dumps(rec, default=str)


# ---------------------------------------------------------------- transformers completer on a tiny random model
def test_transformers_completer_logprobs_match_forward():
    torch = pytest.importorskip("torch")
    from ktae_lab.completers import TransformersCompleter, completion_prompt
    from ktae_lab.lm import tiny_random_lm, encode_prompts, generate, token_log_probs, derive_seed
    torch.set_num_threads(1)
    model, tok, _ = tiny_random_lm(seed=3)
    tc = TransformersCompleter(model, tok, max_new_tokens=10, batch_size=3, seed=0, temperature=1.0)
    out = check_completions(tc("What is 2 + 2?", ["Step 1: 2 + 2 = 4."], 4), 4)
    prompt, chat = completion_prompt(tok, "What is 2 + 2?", ["Step 1: 2 + 2 = 4."])
    ids, am = encode_prompts(tok, [prompt] * 3, add_special_tokens=not chat)
    # regenerate the first chunk with the completer's generator (call 0), then score it with a teacher-forced pass
    g = generate(model, ids, am, 10, tok.eos_token_id, tok.pad_token_id, 1.0, generator=torch.Generator().manual_seed(derive_seed(0, 0)))
    with torch.no_grad(): lp = token_log_probs(model, ids, am, g.responses, g.response_mask)
    n = g.response_mask.sum(1)
    mean = (lp * g.response_mask).sum(1) / n
    for c, k, m in zip(out[:3], n.tolist(), mean.tolist()):
        assert c.num_tokens == k and c.mean_logprob == pytest.approx(m, abs=1e-4)
    assert out[0].text == tok.decode(g.responses[0, :n[0]], skip_special_tokens=True)
    # the second call draws from another generator; the same seed repeats the whole sequence of calls
    again = TransformersCompleter(model, tok, max_new_tokens=10, batch_size=3, seed=0, temperature=1.0)
    assert [c.text for c in again("What is 2 + 2?", ["Step 1: 2 + 2 = 4."], 4)] == [c.text for c in out]


def test_transformers_completer_greedy_and_global_rng_untouched():
    torch = pytest.importorskip("torch")
    from ktae_lab.completers import TransformersCompleter
    from ktae_lab.lm import tiny_random_lm
    model, tok, _ = tiny_random_lm(seed=2)
    state = torch.random.get_rng_state()
    outs = TransformersCompleter(model, tok, max_new_tokens=6, temperature=0.0)("What is 3 + 5?", [], 3)
    assert len({c.text for c in outs}) == 1                              # greedy: all completions coincide
    TransformersCompleter(model, tok, max_new_tokens=6, seed=None)("What is 3 + 5?", [], 2)
    assert torch.equal(torch.random.get_rng_state(), state)               # private generators only


@pytest.mark.parametrize("kw, msg", [(dict(max_new_tokens=0), "max_new_tokens"), (dict(batch_size=0), "batch_size"),
                                     (dict(temperature=-1.0), "temperature"), (dict(temperature=float("nan")), "temperature"),
                                     (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(seed="0"), "seed"),
                                     (dict(max_new_tokens=2.5), "max_new_tokens")])
def test_transformers_completer_bad_settings(kw, msg):
    pytest.importorskip("torch")
    from ktae_lab.completers import TransformersCompleter
    from ktae_lab.lm import tiny_random_lm
    model, tok, _ = tiny_random_lm()
    with pytest.raises(ValueError, match=f"`{msg}`"): TransformersCompleter(model, tok, **kw)


def test_transformers_completer_end_to_end_dataset(tmp_path):
    pytest.importorskip("torch")
    from ktae_lab.completers import TransformersCompleter
    from ktae_lab.lm import tiny_random_lm
    model, tok, _ = tiny_random_lm(chat_template=False)
    tc = Counting(TransformersCompleter(model, tok, max_new_tokens=4, batch_size=8, seed=0))
    df = pd.DataFrame(dict(id=[0, 1], question=["2+2?", "3+3?"], reference_answer=["4", "6"],
                           steps=[["2+2=5", "The answer is 5"], ["3+3=7", "so 7", "The answer is 7"]]))
    res = annotate_dataset(df, tc, tmp_path / "a.jsonl", "math_shepherd", n=3, verifier=lambda t, r: r in t, progress=False)
    assert list(res.status) == ["ok", "ok"] and res.rollouts.sum() == tc.n and res.tokens.sum() == tc.tokens
    with pytest.raises(ValueError, match="`n`"): tc.inner("q", [], 0)
