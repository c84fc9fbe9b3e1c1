"""Tests for ktae_lab.task: the exact first wrong step of a lab response, its step splitting and per-token steps."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from ktae_lab.task import (LAB_ALPHABET, make_problems, lab_tokenizer, score_responses, reference_solution,
                           solution_steps, first_wrong_step, token_steps)

TOK = lab_tokenizer()
COMMA = TOK.convert_tokens_to_ids(",")


@st.composite
def problems(draw):
    "A random lab problem: 2 to 5 operands in 1..12 joined by + and -."
    ops = draw(st.lists(st.integers(1, 12), min_size=2, max_size=5))
    signs = draw(st.lists(st.sampled_from("+-"), min_size=len(ops) - 1, max_size=len(ops) - 1))
    return str(ops[0]) + "".join(s + str(o) for s, o in zip(signs, ops[1:])) + ":"


@settings(max_examples=60, deadline=None)
@given(problems())
def test_reference_is_right_and_has_no_wrong_step(prompt):
    ref = reference_solution(prompt)
    assert int(ref.rsplit("#", 1)[1]) == eval(prompt[:-1])
    assert first_wrong_step(prompt, ref) is None
    assert len(solution_steps(ref)) == prompt.count("+") + prompt.count("-")


@settings(max_examples=80, deadline=None)
@given(problems(), st.data())
def test_corrupting_a_step_is_found_at_that_step(prompt, data):
    steps = solution_steps(reference_solution(prompt))
    i = data.draw(st.integers(0, len(steps) - 1))
    j = data.draw(st.integers(0, len(steps[i]) - 1))
    new = data.draw(st.sampled_from([c for c in "0123456789+-=#" if c != steps[i][j]]))
    bad = steps[:i] + [steps[i][:j] + new + steps[i][j + 1:]] + steps[i + 1:]
    assert first_wrong_step(prompt, ",".join(bad)) == i
    # whatever comes after the corrupted step does not move the error
    tail = data.draw(st.text(alphabet="0123456789+-=#,", max_size=12))
    assert first_wrong_step(prompt, ",".join(bad[:i + 1]) + ("," + tail if tail else "")) == i


@settings(max_examples=80, deadline=None)
@given(problems(), st.data())
def test_truncated_response_is_wrong_where_it_stops(prompt, data):
    ref = reference_solution(prompt)
    k = data.draw(st.integers(0, len(ref) - 1))
    cut = ref[:k]
    # the piece it was writing (cut just before a comma: the complete piece it ended with)
    assert first_wrong_step(prompt, cut) == cut.count(",")
    assert first_wrong_step(prompt, cut) < max(len(solution_steps(cut)), 1)   # always a piece it wrote
    assert first_wrong_step(prompt, ref + ",1+1=2") == len(solution_steps(ref))   # an extra piece
    assert first_wrong_step(prompt, ref, finished=False) == len(solution_steps(ref)) - 1


@settings(max_examples=40, deadline=None)
@given(problems(), st.data())
def test_no_wrong_step_implies_reward_one(prompt, data):
    ref = reference_solution(prompt)
    resp = data.draw(st.sampled_from([ref, ref[:-1], "#" + ref.rsplit("#", 1)[1], ref.replace(",", ",", 1)]))
    enc = TOK([resp + TOK.eos_token], return_tensors="pt", add_special_tokens=False)
    r = score_responses(TOK, enc["input_ids"], enc["attention_mask"], [ref.rsplit("#", 1)[1]])["reward"].item()
    if first_wrong_step(prompt, resp) is None: assert r == 1.0
    if r == 0.0: assert first_wrong_step(prompt, resp) is not None


def test_bad_input():
    with pytest.raises(ValueError, match="not a lab problem"): first_wrong_step("What is 7-3?", "7-3=4#4")
    with pytest.raises(ValueError, match="not a lab problem"): first_wrong_step("7*3:", "#21")
    with pytest.raises(ValueError, match="not a lab problem"): reference_solution("")
    with pytest.raises(TypeError, match="`prompt`"): reference_solution(7)
    with pytest.raises(ValueError, match="outside the task's alphabet"): first_wrong_step("7-3:", "7-3=4 #4")
    with pytest.raises(ValueError, match="outside the task's alphabet"): first_wrong_step("7-3:", "7-3=4#4<eos>")
    with pytest.raises(TypeError, match="`response`"): first_wrong_step("7-3:", None)
    assert first_wrong_step("7-3:", "") == 0                        # empty response: a defined answer
    assert solution_steps("") == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="0123456789+-=,#", min_size=1, max_size=14), min_size=1, max_size=5))
def test_token_steps_counts_separators(texts):
    enc = TOK(texts, padding=True, padding_side="right", return_tensors="pt", add_special_tokens=False)
    st_ = token_steps(enc["input_ids"], enc["attention_mask"], COMMA)
    for b, t in enumerate(texts):
        want = [t[:i].count(",") for i in range(len(t))]
        assert st_[b, :len(t)].tolist() == want
        assert (st_[b, len(t):] == -1).all()
    with pytest.raises(ValueError, match="same shape"): token_steps(enc["input_ids"], torch.ones(1, 99), COMMA)


def test_problems_from_make_problems_agree():
    df = make_problems(100, seed=7)
    assert [reference_solution(p) for p in df.prompt] == list(df.solution)
    assert set("".join(df.solution)) <= set(LAB_ALPHABET)


@settings(max_examples=25, deadline=None)
@given(m=st.integers(2, 4), max_operand=st.integers(1, 5), seed=st.integers(0, 10**6), frac=st.floats(0.01, 0.99))
def test_heldout_split_is_a_stratified_partition(m, max_operand, seed, frac):
    "Every operand count: the split permutes all its problems, holds out k_m in [1, S-1] of them, ~frac of the total."
    from ktae_lab.task import split_params, problem_split, _problem_of_rank
    S, a, b, k = split_params(m, max_operand, seed, frac)
    assert S == max_operand ** m * 2 ** (m - 1) and 1 <= k <= S - 1 and abs(k - frac * S) <= max(1, 0.5 + 1e-9)
    sides = [problem_split(str(o[0]) + "".join(s + str(x) for s, x in zip(sg, o[1:])) + ":", max_operand, seed, frac)
             for o, sg in (_problem_of_rank(r, m, max_operand) for r in range(min(S, 512)))]
    if S <= 512: assert sides.count("heldout") == k


def test_lab_split_keeps_every_operand_count_on_both_sides():
    "The lab's default task: the training pool keeps three quarters of the 2-operand problems (it kept 1 of 32 before)."
    from ktae_lab.lab import LabConfig, lab_data
    train, held = lab_data(LabConfig(n_train=3000))
    assert not set(train.prompt) & set(held.prompt)
    for m in (2, 3, 4):
        assert (held.n_ops == m).sum() > 50 and (train.n_ops == m).mean() > 0.28
    assert train[train.n_ops == 2].prompt.nunique() == 24 and held[held.n_ops == 2].prompt.nunique() == 8
