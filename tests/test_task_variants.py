"""Task variants (issue 20): the exact truth of 41_task and 43_credit on every variant of the lab task."""
import numpy as np
import pytest
import torch

from ktae_lab.task import (TASK_VARIANTS, variant_problems, make_problems, reference_solution, first_wrong_step,
                           solution_steps, token_steps, lab_tokenizer)
from ktae_lab.lab import LabConfig, lab_variant, lab_data
from ktae_lab.lm import tiny_random_lm
from ktae_lab.credit import policy_solutions, token_truth, ktae_credit

torch.set_num_threads(1)
TOK = lab_tokenizer()


def _corrupt(sol, i):
    "The reference solution up to step i, whose result is off by one."
    steps = solution_steps(sol)
    lhs, rhs = steps[i].split("#")[0].rsplit("=", 1)
    return ",".join(steps[:i] + [f"{lhs}={int(rhs) + 1}"])


@pytest.mark.parametrize("variant", list(TASK_VARIANTS))
def test_exact_truth_on_every_variant(variant):
    cfg = LabConfig(**lab_variant(variant), n_train=500, n_heldout=64)
    train, held = lab_data(cfg)
    assert not set(train["prompt"]) & set(held["prompt"])                          # the held-out set stays held out
    assert held["solution"].str.len().max() + 1 <= cfg.max_new_tokens             # every reference answer fits
    rng = np.random.default_rng(0)
    for p, sol in zip(held["prompt"][:40], held["solution"][:40]):
        assert reference_solution(p) == sol and first_wrong_step(p, sol) is None
        n = len(solution_steps(sol))
        i = int(rng.integers(0, n))
        assert first_wrong_step(p, _corrupt(sol, i), finished=False) == i            # a wrong result at step i
        enc = TOK([sol + TOK.eos_token], return_tensors="pt", add_special_tokens=False)
        st = token_steps(enc["input_ids"], enc["attention_mask"], TOK.convert_tokens_to_ids(","))
        assert int(st.max()) == n - 1                                              # every step reaches the tokens
        tt = token_truth(st, [i])
        assert (tt[0][st[0] == i] == 1).all() and (tt[0][st[0] < i] == 0).all()


@pytest.mark.parametrize("variant", list(TASK_VARIANTS))
def test_credit_tools_run_on_every_variant(variant):
    cfg = LabConfig(**lab_variant(variant), n_train=500, n_heldout=64)
    held = lab_data(cfg)[1].iloc[:4]
    pol = tiny_random_lm(0, TOK, d_model=16, n_layers=1, n_heads=2, max_positions=128)[0]
    sol = policy_solutions(pol, TOK, held, group_size=4, max_new_tokens=cfg.max_new_tokens, seed=0)
    df = sol["df"]
    assert len(df) == 16 and df["first_wrong"].notna().all()                       # a random policy is always wrong
    assert (df["first_wrong"] <= held["n_ops"].max() - 1).all()
    out = ktae_credit(sol, {"official": ("official", {})})
    assert list(out["setting"]) == ["official"]


def test_variants_change_what_they_say():
    base = make_problems(200, seed=2, max_operand=4)
    d = variant_problems(base, "distractor", seed=0, max_operand=4)
    assert (d["answer"] == base["answer"]).all() and (d["n_ops"] == base["n_ops"] + 2).all()
    c = variant_problems(base, "carry", seed=0)
    assert (c["n_ops"] == base["n_ops"]).all() and c["prompt"].str.contains("[5-9]").mean() > 0.9
    assert variant_problems(base, "long", seed=0).equals(base)
    with pytest.raises(ValueError, match="valid variants: default, long, carry, distractor"): variant_problems(base, "longer")
