"""Tests for ktae_lab.task: the exact first wrong step of a lab response, its step splitting and per-token steps."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from ktae_lab.task import (LAB_ALPHABET, make_problems, lab_tokenizer, score_responses, reference_solution,
                           solution_steps, first_wrong_step, token_steps, heldout_counts, heldout_problems)

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


@st.composite
def task_spaces(draw):
    "A task (operand counts, largest operand) and a held-out size that it allows."
    lo = draw(st.integers(2, 4)); hi = draw(st.integers(lo, 5)); k = draw(st.integers(1, 4))
    sizes = {m: k ** m * 2 ** (m - 1) for m in range(lo, hi + 1)}
    total, c = sum(sizes.values()), len(sizes)
    return lo, hi, k, sizes, draw(st.integers(c, min(total - c, 600)))


@settings(max_examples=80, deadline=None)
@given(task_spaces(), st.integers(0, 2**32 - 1))
def test_heldout_split_is_stratified_and_disjoint(space, seed):
    lo, hi, k, sizes, n = space
    counts = heldout_counts(n, lo, hi, k)
    total = sum(sizes.values())
    assert sum(counts.values()) == n and set(counts) == set(sizes)
    for m, s in sizes.items():
        assert 1 <= counts[m] <= s - 1                               # every operand count on both sides
        assert abs(counts[m] - n * s / total) < len(sizes)           # in proportion (largest remainder, moved only to fill a side)
        if all(1 <= n * t // total and n * t / total <= t - 1 for t in sizes.values()):
            assert abs(counts[m] - n * s / total) < 1                # plain largest remainder when no side is empty
    held = heldout_problems(n, seed, lo, hi, k)
    assert held.prompt.is_unique and held.n_ops.value_counts().to_dict() == counts
    assert [reference_solution(p) for p in held.prompt] == list(held.solution)
    assert held.equals(heldout_problems(n, seed, lo, hi, k))         # deterministic given the seed
    train = make_problems(50, seed + 1, lo, hi, k, exclude=set(held.prompt))
    assert not set(train.prompt) & set(held.prompt)


def test_heldout_split_edges():
    # the lab's default: the 2-operand problems were 31 of 32 held out before; now 4 of 32, the same share as the others
    assert heldout_counts(256, 2, 4, 4) == {2: 4, 3: 28, 4: 224}
    assert heldout_counts(3, 2, 4, 4) == {2: 1, 3: 1, 4: 1}         # the smallest split: one of each count
    assert heldout_counts(2336 - 3, 2, 4, 4) == {2: 31, 3: 255, 4: 2047}   # the largest: one of each count left to train
    assert len(heldout_problems(1, 0, 2, 2, 1)) == 1                 # 2 problems (1+1, 1-1): one each side
    with pytest.raises(ValueError, match="only 2336 distinct problems"): heldout_counts(2336 - 2, 2, 4, 4)
    with pytest.raises(ValueError, match="one held-out problem per operand count"): heldout_counts(2, 2, 4, 4)
    with pytest.raises(ValueError, match="`n_heldout`"): heldout_counts(True, 2, 2, 4)
    with pytest.raises(ValueError, match="`max_operand`"): heldout_counts(4, 2, 2, 0)
    with pytest.raises(ValueError, match="`min_ops`"): heldout_problems(4, 0, 1, 2, 4)
