"""Tests for ktae_lab.credit: the lab policy as a completer, batched annotation, truth per token, credit AUROCs."""
import importlib.util, json, math
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st

import ktae_lab.credit as credit
from ktae_lab.credit import (LabCompleter, annotate_many, policy_solutions, token_truth, auroc, ktae_credit,
                             rollout_auroc, ktae_null, pairwise_intervals,
                             probe_step_values, epic_credit, method_table, plot_credit,
                             sentence_steps, hand_agreement, seed_spread, KTAE_SETTINGS)
from ktae_lab.epicprm import Completion, annotate, check_completions, METHODS
from ktae_lab.simulator import annotation_outcomes
from ktae_lab.task import lab_tokenizer, reference_solution, solution_steps, first_wrong_step, token_steps
from ktae_lab.lm import tiny_random_lm, Generation

def tiny_lm(tok, seed=0, device="cpu"): return tiny_random_lm(seed, tok, d_model=64, max_positions=128)[0]

torch.set_num_threads(1)
TOK = lab_tokenizer()
DATA = Path(__file__).resolve().parents[1] / "data"


# ---------------------------------------------------------------- an oracle completer: knows the reference solution
class Oracle:
    "Deterministic completer: a continuation is right exactly when the prefix is a prefix of the reference."
    def __init__(self): self.calls = 0
    def __call__(self, question, prefix_steps, n):
        ref = solution_steps(reference_solution(question))
        ok = len(prefix_steps) <= len(ref) and list(prefix_steps) == ref[:len(prefix_steps)]
        self.calls += 1
        return [Completion("x#0", ok, -0.1, 3) for _ in range(n)]


@st.composite
def wrong_solutions(draw):
    "A lab problem and a wrong response made by corrupting, cutting or extending its reference."
    ops = draw(st.lists(st.integers(1, 9), min_size=2, max_size=4))
    signs = draw(st.lists(st.sampled_from("+-"), min_size=len(ops) - 1, max_size=len(ops) - 1))
    prompt = str(ops[0]) + "".join(s + str(o) for s, o in zip(signs, ops[1:])) + ":"
    ref = reference_solution(prompt)
    kind = draw(st.sampled_from(["corrupt", "cut", "extend"]))
    if kind == "corrupt":
        j = draw(st.integers(0, len(ref) - 1))
        resp = ref[:j] + draw(st.sampled_from([c for c in "0123456789" if c != ref[j]])) + ref[j + 1:]
    elif kind == "cut": resp = ref[:draw(st.integers(1, len(ref) - 1))]
    else: resp = ref + ",1+1=2"
    return prompt, resp


@settings(max_examples=25, deadline=None)
@given(st.lists(wrong_solutions(), min_size=1, max_size=6), st.sampled_from(METHODS))
def test_oracle_annotators_find_the_exact_truth(sols, method):
    "With a completer that knows the truth, every annotator finds exactly `first_wrong_step`, batched or not."
    prompts, resps = zip(*sols)
    steps = [solution_steps(r) for r in resps]
    truth = [first_wrong_step(p, r) for p, r in sols]
    ans = [reference_solution(p).rsplit("#", 1)[1] for p in prompts]
    params = {"epic_adaptive": dict(pilot=16, min_pilot_correct=2)}.get(method, {})
    many = annotate_many(list(prompts), steps, ans, Oracle(), method, is_correct=[False] * len(sols), progress=False, **params)
    assert [a.first_error for a in many] == truth
    one = [annotate(p, s, a, Oracle(), method, is_correct=False, **params) for p, s, a in zip(prompts, steps, ans)]
    assert [a.first_error for a in one] == truth
    assert [a.labels for a in many] == [a.labels for a in one]
    few = annotate_many(list(prompts), steps, ans, Oracle(), method, is_correct=[False] * len(sols), workers=1, progress=False, **params)
    assert [a.first_error for a in few] == truth


def test_annotate_many_batches_calls_and_shares_baselines():
    class Counting(Oracle):
        def __init__(self): super().__init__(); self.batches = 0
        def complete_many(self, reqs): self.batches += 1; return [self(*r) for r in reqs]
    c = Counting()
    q = ["7-3+5+1:"] * 6
    steps = [["7-3=4", "4+5=8", "8+1=9#9"]] * 6
    anns = annotate_many(q, steps, ["10"] * 6, c, "epic_binary", is_correct=[False] * 6, progress=False, k=4)
    assert c.batches <= 4                                             # baseline + at most 2 probe rounds (+ slack)
    assert anns[0].rollouts > anns[1].rollouts == anns[2].rollouts     # the shared baseline is charged once
    assert all(a.first_error == 1 for a in anns)


def test_annotate_many_is_reproducible_with_a_sampling_completer():
    "Threads wake in any order; the batches are ordered by job, so the completer's random draws land on the same requests."
    from ktae_lab.lab import LabConfig, prepare_warm_start, lab_data, _new_policy
    lc = LabConfig(n_train=300, n_heldout=16, min_ops=2, max_ops=3, max_operand=3, warm_steps=150, warm_batch=16,
                   max_new_tokens=16, overlong_buffer=4, device="cpu", progress=False)
    pol = _new_policy(TOK, lc, 0); pol.load_state_dict(prepare_warm_start(0, lc)["state"]); pol.eval()
    df = policy_solutions(pol, TOK, lab_data(lc)[0].iloc[:16].reset_index(drop=True), 4, lc.max_new_tokens, 1.0, 0)["df"]
    assert 0 < df["correct"].mean() < 1
    def once(method):
        anns = annotate_many(list(df["prompt"]), [solution_steps(x) or [""] for x in df["response"]], [str(x) for x in df["answer"]],
                             LabCompleter(pol, TOK, lc.max_new_tokens, 1.0, seed=123), method, is_correct=list(df["correct"]), progress=False)
        return json.dumps([a.to_dict() for a in anns], default=float)
    for method in ("epic_adaptive", "math_shepherd"):
        runs = {once(method) for _ in range(3)}
        assert len(runs) == 1, f"{method}: {len(runs)} different results in 3 identical runs"


def test_annotate_many_bad_input_and_errors():
    with pytest.raises(ValueError, match="same length"): annotate_many(["1+1:"], [], ["2"], Oracle())
    with pytest.raises(ValueError, match="is_correct"): annotate_many(["1+1:"], [["1+1=3#3"]], ["2"], Oracle(), is_correct=[])
    with pytest.raises(ValueError, match="baseline"): annotate_many(["1+1:"], [["1+1=3#3"]], ["2"], Oracle(), baseline=None)
    with pytest.raises(ValueError, match="workers"): annotate_many(["1+1:"], [["1+1=3#3"]], ["2"], Oracle(), workers=0)
    def broken(q, p, n): raise RuntimeError("model fell over")
    with pytest.raises(Exception, match="model fell over"):
        annotate_many(["1+1+1:"], [["1+1=3", "3+1=4#4"]], ["3"], broken, "math_shepherd", is_correct=[False], progress=False)


# ---------------------------------------------------------------- the lab completer
def test_lab_completer_protocol_budget_and_grading(monkeypatch):
    model = tiny_lm(TOK, seed=0, device="cpu")
    comp = LabCompleter(model, TOK, max_new_tokens=12, seed=0)
    out = comp("7-3+5:", ["7-3=4"], 6)
    check_completions(out, 6)
    assert all(c.num_tokens <= 12 - len("7-3=4,") for c in out)      # prefix + continuation within the budget
    # grading: script the sampler, so the right continuation is known
    eos, pad = TOK.eos_token_id, TOK.pad_token_id
    def scripted(m, ids, am, max_new, eos_id, pad_id, temperature, generator=None):
        texts = ["4+5=9#9", "4+5=8#8", "4+5=9#9"]
        enc = TOK(texts, add_special_tokens=False)["input_ids"]
        r = torch.full((3, max_new), pad, dtype=torch.long); rm = torch.zeros_like(r)
        for i, e in enumerate(enc):
            e = e + ([eos] if i < 2 else [])                          # row 2 never ends: truncated, so wrong
            e = e[:max_new]; r[i, :len(e)] = torch.tensor(e); rm[i, :len(e)] = 1
        return Generation(r, rm, -0.5 * rm.float())
    monkeypatch.setattr(credit, "generate", scripted)
    got = LabCompleter(model, TOK, max_new_tokens=32)("7-3+5:", ["7-3=4"], 3)
    assert [c.correct for c in got] == [True, False, False]
    assert [c.text for c in got] == ["4+5=9#9", "4+5=8#8", "4+5=9#9"]


def test_lab_completer_bad_input():
    model = tiny_lm(TOK, seed=0, device="cpu")
    comp = LabCompleter(model, TOK, max_new_tokens=8)
    with pytest.raises(ValueError, match="not a lab problem"): comp("How many apples?", [], 2)
    with pytest.raises(ValueError, match="positive int"): comp("1+1:", [], 0)
    with pytest.raises(TypeError, match="prefix_steps"): comp("1+1:", "1+1=2", 2)
    with pytest.raises(ValueError, match="max_new_tokens"): LabCompleter(model, TOK, max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"): LabCompleter(model, TOK, temperature=0)


# ---------------------------------------------------------------- truth per token and AUROC
@settings(max_examples=30, deadline=None)
@given(st.lists(wrong_solutions(), min_size=1, max_size=5))
def test_token_truth_agrees_with_first_wrong_step(sols):
    texts = [r for _, r in sols]
    enc = TOK(texts, padding=True, padding_side="right", return_tensors="pt", add_special_tokens=False)
    stp = token_steps(enc["input_ids"], enc["attention_mask"], TOK.convert_tokens_to_ids(","))
    fw = [first_wrong_step(p, r) for p, r in sols]
    tt = token_truth(stp, fw)
    for b, (t, e) in enumerate(zip(texts, fw)):
        pieces = t.split(",")
        for i, ch in enumerate(t):
            s = t[:i].count(",")
            assert tt[b, i].item() == (0 if s < e else 1 if s == e else 2)
        assert (tt[b, len(t):] == -1).all()
    with pytest.raises(ValueError, match="first_wrong"): token_truth(stp, [0] * (len(texts) + 1))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=30))
def test_auroc_equals_pairwise_definition(pairs):
    s = torch.tensor([float(a) for a, _ in pairs]); y = torch.tensor([b for _, b in pairs])
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0: assert math.isnan(auroc(s, y)); return
    want = ((pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()).mean().item()
    assert abs(auroc(s, y) - want) < 1e-12


def test_auroc_bad_input():
    with pytest.raises(ValueError, match="same size"): auroc(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="NaN"): auroc(torch.tensor([0.0, float("nan")]), torch.tensor([0, 1]))


def _sol(prompts, texts, G):
    "A hand-made `policy_solutions` result."
    enc = TOK([t + TOK.eos_token for t in texts], padding=True, padding_side="right", return_tensors="pt", add_special_tokens=False)
    resp, rm = enc["input_ids"], enc["attention_mask"]
    fw = [first_wrong_step(p, t) for p, t in zip(prompts, texts)]
    correct = [f is None for f in fw]
    df = pd.DataFrame(dict(prompt=prompts, response=texts, correct=correct, first_wrong=pd.array(fw, dtype="Int64")))
    df["mixed"] = df.groupby(np.arange(len(df)) // G)["correct"].transform(lambda x: x.nunique() > 1)
    return dict(df=df, responses=resp, response_mask=rm, rewards=torch.tensor(correct, dtype=torch.float32),
                steps=token_steps(resp, rm, TOK.convert_tokens_to_ids(",")), group_size=G)


def test_ktae_points_at_a_planted_mistake():
    "Right rollouts write 6 in step 1, wrong ones write 7 there: K is negative inside the wrong step, AUROC > 0.5."
    p = "1+2+3:"
    sol = _sol([p] * 8 + ["2+2:"] * 8, ["1+2=3,3+3=6#6"] * 4 + ["1+2=3,3+3=7#7"] * 4 + ["2+2=4#4"] * 8, 8)
    kc = ktae_credit(sol)
    assert list(kc.setting) == list(KTAE_SETTINGS)
    off = kc.set_index("setting")
    assert off.loc["official", "auroc"] > 0.5 and off.loc["official", "K_inside"] < off.loc["official", "K_before"]
    assert (off.rollouts == 4).all()                                  # the all-correct group is left out



# ---------------------------------------------------------------- within-rollout AUROC and KTAE's permutation null
def _pairwise_rollout_auroc(s, y):
    "The definition, one row at a time: mean over rows with both classes of P(pos > neg) + P(tie) / 2."
    vals = []
    for sr, yr in zip(s, y):
        pos, neg = sr[yr == 1], sr[yr == 0]
        if len(pos) and len(neg):
            vals.append(((pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()).mean().item())
    return (sum(vals) / len(vals) if vals else 0.5), len(vals)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_rollout_auroc_equals_the_definition_and_a_label_score_is_perfect(B, L, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(-1, 3, (B, L), generator=g)                     # 1 pos, 0 neg, 2 and -1 left out
    s = torch.randint(-2, 3, (B, L), generator=g).double()            # small ints: many ties
    got, n = rollout_auroc(s, y)
    want, n_want = _pairwise_rollout_auroc(s, y)
    assert n == n_want and abs(got.item() - want) < 1e-12 and not math.isnan(got.item())
    assert rollout_auroc(y.double(), y)[0].item() == (1.0 if n else 0.5)          # score = label: perfect (chance with no row)
    assert rollout_auroc(-y.double(), y)[0].item() == (0.0 if n else 0.5)
    assert rollout_auroc(torch.zeros(B, L), y)[0].item() == 0.5                   # all ties: one half
    both = rollout_auroc(torch.stack([s, y.double()]), y)[0]                      # leading dims are scored independently
    assert both.tolist() == [got.item(), 1.0 if n else 0.5]


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_rollout_auroc_of_a_shuffled_score_is_chance(seed):
    "A score that is the label shuffled within its row carries no information: the mean over 300 rows is near 1/2."
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (300, 16), generator=g)
    s = torch.gather(y.double(), 1, torch.rand(300, 16, generator=g).argsort(1)) + torch.rand(300, 16, generator=g) * 0.1
    a, n = rollout_auroc(s, y)
    assert n > 250 and abs(a.item() - 0.5) < 0.06                   # per-row sd <= 0.3: 0.06 is > 3 standard errors


def _planted(n_groups=6):
    "Groups of 8: four right rollouts and four that write 99-9=0#0 as their second step (characters the right ones never write)."
    ps = ["1+2+3:", "2+3+1:", "4-1+2:", "5-2+3:", "3+3-2:", "6-1-1:"][:n_groups]
    return _sol([p for p in ps for _ in range(8)],
                [reference_solution(p) if k < 4 else reference_solution(p).split(",")[0] + ",99-9=0#0" for p in ps for k in range(8)], 8)


def test_ktae_null_is_chance_and_the_planted_signal_is_above_it():
    sol = _planted()
    kc = ktae_credit(sol, {"official": ("official", {})}, n_perm=300).iloc[0]
    assert kc.rollouts_within == 24 and kc.inside_at_step0 == 0
    assert kc.null_lo <= kc.null_mean <= kc.null_hi and abs(kc.null_mean - 0.5) < 0.05
    assert kc.auroc_within > kc.null_hi and kc.p_value == 1 / 301              # no shuffle beats the true labels
    null = ktae_null(sol, n_perm=300)
    assert torch.equal(null, ktae_null(sol, n_perm=300, chunk=7))              # chunking does not change the draws
    assert not torch.equal(null, ktae_null(sol, n_perm=300, seed=1))
    # the null is the same statistic: scoring the true rewards through the same path gives the observed value
    K = credit.key_token_values(sol["responses"], sol["response_mask"], sol["rewards"], group_size=8)
    lab = torch.where(torch.as_tensor(~sol["df"].correct.to_numpy())[:, None], token_truth(sol["steps"], sol["df"].first_wrong.fillna(-1).astype(int)), -1)
    assert abs(rollout_auroc(-K, lab)[0].item() - kc.auroc_within) < 1e-12


def test_ktae_credit_degenerate_cases_give_no_nan():
    "No mixed group, or wrong rollouts that are all wrong at step 0 (no before token): chance, 0 rollouts, p = 1, no NaN."
    none_mixed = _sol(["2+2:"] * 8, ["2+2=4#4"] * 8, 8)
    at0 = _sol(["1+2:"] * 8, ["1+2=3#3"] * 4 + ["1+2=4#4"] * 4, 8)
    for sol in (none_mixed, at0):
        kc = ktae_credit(sol, n_perm=20)
        num = kc.drop(columns=["setting", "auroc"])                   # the pooled AUROC is NaN by definition when a class is empty
        assert not num.isna().any().any()
        assert (kc.rollouts_within == 0).all() and (kc.auroc_within == 0.5).all() and (kc.p_value == 1.0).all()
    assert (ktae_credit(at0, n_perm=5).inside_at_step0 == 1.0).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(5, 120), st.integers(0, 2**31 - 1))
def test_pairwise_intervals_pair_the_solutions(n, seed):
    "A method compared with itself is unresolved with a zero interval; every interval holds its difference; pairs by solution."
    rng = np.random.default_rng(seed)
    hit = rng.random(n) < 0.6
    other = hit.copy(); other[: max(1, n // 10)] = ~other[: max(1, n // 10)]
    df = pd.DataFrame(dict(method=["a"] * n + ["b"] * n + ["c"] * n, hit=np.concatenate([hit, hit, other]),
                           seed=np.tile(np.arange(n) % 2, 3)))
    pi = pairwise_intervals(df, by=("seed",), n_boot=300, seed=seed % 1000).set_index(["a", "b"])
    ab = pi.loc[("a", "b")]
    assert ab["diff"] == 0 and ab.lo == 0 and ab.hi == 0 and ab.verdict == "unresolved"
    assert (pi.lo <= pi["diff"] + 1e-12).all() and (pi["diff"] <= pi.hi + 1e-12).all()
    assert not pi[["diff", "lo", "hi"]].isna().any().any()
    assert set(pi.verdict) <= {"unresolved", "a > c", "c > a", "b > c", "c > b"}

def test_epic_credit_and_probe_values():
    p = "1+2+3:"
    sol = _sol([p] * 4, ["1+2=3,3+3=6#6"] * 2 + ["1+2=3,3+3=7#7", "1+2=4,4+3=7#7"], 4)
    rows = [2, 3]
    anns = [dict(method="math_shepherd", status="ok", probes=[dict(step=0, estimate=1.0)], baseline=None, is_correct=False),
            dict(method="math_shepherd", status="ok", probes=[dict(step=0, estimate=0.0)], baseline=None, is_correct=False)]
    assert probe_step_values(anns[0], 2) == [1.0, 0.0]
    ec = epic_credit(sol, rows, {"ms": anns})
    assert ec.auroc.iloc[0] == 1.0                                    # the oracle's values rank every inside token lowest
    skipped = [dict(a, status="skipped") for a in anns]
    assert math.isnan(epic_credit(sol, rows, {"ms": skipped}).auroc.iloc[0])


def test_score_annotations_and_method_table():
    anns = [dict(method="m", status="ok", first_error=1, rollouts=10, tokens=100),
            dict(method="m", status="ok", first_error=0, rollouts=20, tokens=200),
            dict(method="m", status="skipped", first_error=None, rollouts=5, tokens=50)]
    sc = annotation_outcomes(anns, [1, 1, 0], wall_s=3.0)
    assert sc.hit.tolist() == [True, False, False] and sc.offset.tolist()[:2] == [0, -1] and not sc.covered.iloc[2]
    t = method_table(sc).iloc[0]
    assert t.accuracy == pytest.approx(1 / 3) and t.acc_covered == pytest.approx(0.5) and t.coverage == pytest.approx(2 / 3)
    assert t.rollouts == pytest.approx(35 / 3) and t.wall_ms == pytest.approx(1000.0)
    ss = seed_spread(pd.DataFrame(dict(m=["a"] * 2, seed=[0, 1], x=[1.0, 3.0])), ["m"], ["x"])
    assert ss.x.iloc[0] == 2.0 and ss.x_std.iloc[0] == 1.0


def test_policy_solutions_truth_matches_rewards():
    model = tiny_lm(TOK, seed=1, device="cpu")
    from ktae_lab.task import make_problems
    probs = make_problems(5, seed=0)
    sol = policy_solutions(model, TOK, probs, group_size=3, max_new_tokens=10)
    df = sol["df"]
    assert len(df) == 15 and (df.loc[~df.correct, "first_wrong"].notna()).all()
    assert sol["steps"].shape == sol["responses"].shape


def test_plot_credit_escapes_dollars():
    import matplotlib; matplotlib.use("Agg")
    fig = plot_credit(["$3", "+", "1"], [0.2, -0.1, 0.0], [0, 1, 1], 1, title="$ price")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert r"\$3" in texts
    with pytest.raises(ValueError, match="same length"): plot_credit(["a"], [0.1, 0.2], [0], 0)


def test_sentence_steps():
    assert sentence_steps("Tom has 3 + 5 = 8 apples. It costs $1.05 each!\n#### 8\nThe answer is 8.") == \
        ["Tom has 3 + 5 = 8 apples.", "It costs $1.05 each!", "#### 8", "The answer is 8."]
    assert sentence_steps("") == [] and sentence_steps("one step") == ["one step"]
    with pytest.raises(TypeError, match="`text`"): sentence_steps(None)


def test_smollm2_annotations_file():
    "The shipped SmolLM2 annotations: one record per solution and method, steps as `sentence_steps` splits, hand labels in range."
    path = DATA / "smollm2_annotations.jsonl"
    if not path.exists(): pytest.skip("data/smollm2_annotations.jsonl not written yet")
    recs = [json.loads(l) for l in path.open()]
    assert len({r["id"] for r in recs}) >= 16
    rolls = {f"{r['group_id']}-r{r['rollout_id']}": r for r in map(json.loads, (DATA / "smollm2_rollouts.jsonl").open())}
    for r in recs:
        assert r["method"] in ("epic_adaptive", "math_shepherd") and r["status"] in ("ok", "skipped")
        assert [s["text"] for s in r["steps"]] == sentence_steps(rolls[r["id"]]["response"])
        assert 0 <= r["hand_first_error"] < len(r["steps"]) and r["hand_note"]
        assert rolls[r["id"]]["reward"] == 0
    h = hand_agreement(recs)
    assert set(h.method) == {"epic_adaptive", "math_shepherd"} and (h.agree.between(0, 1)).all()
    spec = importlib.util.spec_from_file_location("annot", DATA / "annotate_smollm2.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    for r in rolls.values(): assert mod.sentence_steps(r["response"]) == sentence_steps(r["response"])


def _within(seconds, fn):
    "Run fn in a thread; its exception (or None), or fail when it is still running after `seconds` (a deadlock)."
    import threading
    box = {}
    def run():
        try: fn(); box["err"] = None
        except BaseException as e: box["err"] = e
    t = threading.Thread(target=run, daemon=True); t.start(); t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s: deadlocked"
    return box["err"]


class _ShortMany(Oracle):
    "complete_many answers one request too few (or None)."
    def __init__(self, answer_none=False): super().__init__(); self.none = answer_none
    def complete_many(self, reqs):
        if self.none: return None
        return [self(*r) for r in reqs][:-1]


@pytest.mark.parametrize("method", ["math_shepherd", "epic_binary"])
def test_annotate_many_raises_like_annotate_when_the_completer_breaks_the_protocol(method):
    from ktae_lab.epicprm import CompleterProtocolError
    Q, S, A = ["1+1+1:", "2+2+1:"], [["1+1=3", "3+1=4#4"], ["2+2=4", "4+1=6#6"]], ["3", "5"]
    def none(q, p, n): return None
    alone = _within(60, lambda: annotate(Q[0], S[0], A[0], none, method, is_correct=False))
    many = _within(60, lambda: annotate_many(Q, S, A, none, method, is_correct=[False, False], progress=False))
    assert type(many) is type(alone) and str(many) == str(alone)          # the same error as `annotate`
    for bad in (_ShortMany(), _ShortMany(answer_none=True)):
        err = _within(60, lambda: annotate_many(Q, S, A, bad, method, is_correct=[False, False], progress=False, workers=2))
        assert err is not None and ("complete_many` must return one list of completions per request" in str(err)), err
        assert isinstance(err, CompleterProtocolError) or isinstance(err.__cause__, CompleterProtocolError), err


def test_shipped_tutorial_run_is_consistent():
    "data/who_finds_the_mistake: every rollout's truth matches its text and tokens, and the stored KTAE AUROCs recompute from them."
    folder = DATA / "who_finds_the_mistake"
    df = pd.read_json(folder / "solutions.jsonl", lines=True, dtype={"response": str, "prompt": str, "answer": str})
    ids = df["token_ids"].tolist()
    assert TOK.batch_decode(ids, skip_special_tokens=True) == df.response.tolist()
    fw = [first_wrong_step(p, t, f) for p, t, f in zip(df.prompt, df.response, df.finished)]
    assert [-1 if v is None else v for v in fw] == df.first_wrong.fillna(-1).astype(int).tolist()
    assert df.first_wrong[~df.correct].notna().all()                 # every wrong rollout has a first wrong step
    L = max(map(len, ids))
    resp = torch.tensor([x + [TOK.pad_token_id] * (L - len(x)) for x in ids])
    rm = torch.tensor([[1] * len(x) + [0] * (L - len(x)) for x in ids])
    sol = dict(df=df, responses=resp, response_mask=rm, rewards=torch.tensor(df.correct.to_numpy(), dtype=torch.float32),
               steps=token_steps(resp, rm, TOK.convert_tokens_to_ids(",")), group_size=8)
    stored = pd.read_csv(folder / "ktae.csv").set_index("setting")
    again = ktae_credit(sol, {"official": ("official", {}), "clean": ("clean", {})}, n_perm=1).set_index("setting")
    for c in ("auroc", "auroc_within", "K_before", "K_inside", "inside_at_step0", "rollouts_within"):
        assert np.allclose(again[c], stored.loc[again.index, c], rtol=1e-9, atol=1e-12), c
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["n_perm"] == 1000 and set(cfg["machine"]) >= {"cpu", "avx512f"}
