"""Bad input to `ktae-lab annotate` and `ktae_lab.annotate_io`: one clear line each (exit status 2), nothing written,
and the rerun with the mistake fixed continues. No model is loaded: every case fails before the completer is built,
or, for the right answers, finds every solution already annotated."""
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAY = REPO / "data" / "layouts"


def workspace(d: Path) -> dict:
    "Files the cases refer to, created under `d`."
    pb = [json.loads(l) for l in (LAY / "processbench.jsonl").read_text().splitlines()]
    def jl(name, rows):
        (d / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)); return str(d / name)
    ws = dict(ws=str(d), pb=str(LAY / "processbench.jsonl"), answers=str(LAY / "processbench_answers.jsonl"),
              ms=str(LAY / "math_shepherd.jsonl"), ms_answers=str(LAY / "math_shepherd_answers.csv"))
    ws["no_steps"] = jl("no_steps.jsonl", [{k: v for k, v in r.items() if k != "steps"} for r in pb])
    ws["label_range"] = jl("label_range.jsonl", [pb[0], dict(pb[1], label=3)])
    ws["label_text"] = jl("label_text.jsonl", [dict(pb[0], label="first")])
    ws["unknown"] = jl("unknown.jsonl", [dict(text="Q? A.", score=1.0)])
    ws["dup"] = jl("dup.jsonl", [dict(pb[0], reference_answer="8"), dict(pb[1], id="pb-0", reference_answer="8")])
    ws["ms_bad"] = jl("ms_bad.jsonl", [dict(input="Q? Step 1: a ки", label="Q? Step 1: a *")])
    ws["correct_str"] = jl("correct_str.jsonl", [dict(pb[0], final_answer_correct="False", reference_answer="8")])
    (d / "partial_answers.jsonl").write_text(json.dumps(dict(id="pb-0", reference_answer="8")) + "\n")
    ws["partial_answers"] = str(d / "partial_answers.jsonl")
    (d / "rollouts.jsonl").write_text(json.dumps({"group_id": "g", "token_ids": [1], "reward": 1.0}) + "\n")
    ws["rollouts"] = str(d / "rollouts.jsonl")
    return ws


CASES = [  # (arguments after `ktae-lab annotate`, fragment of the one-line error)
    (["{no_steps}", "-o", "{ws}/o.jsonl"], "the processbench layout needs column(s) steps"),  # auto: problem+label but no steps -> table? see below
    (["{no_steps}", "--layout", "processbench", "-o", "{ws}/o.jsonl"], "the processbench layout needs column(s) steps; the file has"),
    (["{label_range}", "--answers", "{answers}", "-o", "{ws}/o.jsonl"], "label_range.jsonl, row 2: `label` 3 is out of range for 3 steps (expected -1 for no error, or 0..2)"),
    (["{label_text}", "--answers", "{answers}", "-o", "{ws}/o.jsonl"], "row 1: `label` must be an integer (the first wrong step, -1: none), got 'first'"),
    (["{unknown}", "-o", "{ws}/o.jsonl"], "unknown layout of solutions (columns: score, text); expected ProcessBench"),
    (["{pb}", "--layout", "csv", "-o", "{ws}/o.jsonl"], "argument --layout: invalid choice: 'csv'"),
    (["{pb}", "-o", "{ws}/o.jsonl"], "no reference answer, which grading completions needs; the processbench layout carries none"),
    (["{ms}", "-o", "{ws}/o.jsonl"], "the math_shepherd layout carries none"),
    (["{pb}", "--answers", "{partial_answers}", "-o", "{ws}/o.jsonl"], "partial_answers.jsonl: no reference answer for 3 of 4 solutions (joined by id; first: 'pb-1')"),
    (["{pb}", "--answers", "{ws}/missing.jsonl", "-o", "{ws}/o.jsonl"], "solutions file not found"),
    (["{ws}/missing.jsonl", "-o", "{ws}/o.jsonl"], "solutions file not found"),
    (["{dup}", "-o", "{ws}/o.jsonl"], "id 'pb-0' appears twice"),
    (["{ms_bad}", "--answers", "{ms_answers}", "-o", "{ws}/o.jsonl"], "row 1: `label` must repeat `input` with + or - in place of each ки tag"),
    (["{correct_str}", "-o", "{ws}/o.jsonl"], "column final_answer_correct` row 0: expected True, False or missing, got str 'False'"),
    (["{pb}", "--answers", "{answers}", "-o", "{ws}/o.jsonl", "--against", "{unknown}"], "the processbench layout needs column(s) problem, steps, label"),
    (["{pb}", "--answers", "{answers}", "-o", "{ws}/o.jsonl", "--param", "pilot=many"], "--param pilot='many': expected a int"),
    (["{pb}", "--answers", "{answers}", "-o", "{ws}/o.jsonl", "--method", "math_shepherd", "--param", "pilot=4"], "unknown parameter 'pilot' of method math_shepherd"),
    (["{pb}", "--answers", "{answers}", "-o", "{ws}/o.jsonl", "--method", "omega"], "argument --method: invalid choice: 'omega'"),
    (["{pb}", "--answers", "{answers}", "-o", "{ws}/o.jsonl", "--format", "csv"], "argument --format: invalid choice: 'csv'"),
    (["{pb}", "--answers", "{answers}", "-o", "{ws}"], "is a folder; give a file name"),
    (["{pb}", "--answers", "{answers}", "-o", "{ws}/t.jsonl", "--format", "trl", "--records", "{ws}/t.jsonl"], "--records must differ from --out"),
    (["{pb}", "--answers", "{answers}", "-o", "{rollouts}"], "is not an annotation record (lacks"),
    (["{pb}", "--answers", "{answers}", "-o", "{ws}/o.jsonl", "--workers", "4"], "--workers > 1 needs --server"),
    (["{pb}", "--answers", "{answers}", "-o", "{ws}/o.jsonl", "--workers", "0"], "argument --workers: must be >= 1, got 0"),
]
CASES[0] = (CASES[0][0], "unknown layout of solutions")   # without `steps` the columns match no layout


@pytest.fixture
def ws(tmp_path): return workspace(tmp_path)


@pytest.mark.parametrize("args,expect", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_gets_one_clear_line(args, expect, ws, run_cli):
    before = sorted(os.listdir(ws["ws"]))
    rc, out, err = run_cli(["annotate"] + [a.format(**ws) for a in args] + ["--model", f"{ws['ws']}/no_model", "--no-progress"])
    assert rc == 2, (rc, out, err)
    assert err.count("\n") == 1 and err.startswith("ktae-lab annotate: error: "), err
    assert expect in err, err
    after = sorted(os.listdir(ws["ws"]))
    assert after == before, f"files were written: {set(after) - set(before)}"   # nothing half-written (no output, no lock left)


def test_output_taken_by_another_run_is_refused_then_the_rerun_continues(ws, run_cli, tmp_path):
    "A live writer holds the records' lock: refused with its pid, nothing written; once it is gone the same command runs."
    out = tmp_path / "ann.jsonl"
    shutil.copy(REPO / "data" / "smollm2_annot_epic_adaptive.jsonl", out)       # finished records: no model is needed
    labels = str(REPO / "data" / "smollm2_processbench.jsonl")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "ann.jsonl.lock").write_text(f"{holder.pid}\n")
        size = out.stat().st_size
        rc, _, err = run_cli(["annotate", labels, "-o", out, "--no-progress"])
        assert rc == 2 and err.count("\n") == 1 and f"is being written by another process (pid {holder.pid}" in err, err
        assert out.stat().st_size == size
    finally:
        holder.kill(); holder.wait()
    rc, text, err = run_cli(["annotate", labels, "-o", out, "--no-progress", "--against", labels])   # the stale lock is taken over
    assert rc == 0, err
    assert json.loads(text.splitlines()[0])["ok"] == 20 and not (tmp_path / "ann.jsonl.lock").exists()


def test_failed_solutions_are_one_line_and_retried(tmp_path, run_cli, monkeypatch):
    "A completer that keeps failing: each solution is recorded as failed, the command ends with one line, and a rerun retries them."
    import ktae_lab.cli as cli
    from ktae_lab.epicprm import Completion
    calls = {"n": 0}
    def down(a):
        def comp(q, prefix, n): calls["n"] += 1; raise ConnectionError("server down")
        return comp, dict(model="down")
    monkeypatch.setattr(cli, "_completer", down)
    out = tmp_path / "ann.jsonl"
    args = ["annotate", LAY / "processbench.jsonl", "--answers", LAY / "processbench_answers.jsonl", "-o", out, "--method",
            "math_shepherd", "--param", "n=2", "--max-retries", "0", "--no-progress"]
    rc, _, err = run_cli(args)
    assert rc == 2 and err.count("\n") == 1 and "4 of 4 solutions failed" in err and "server down" in err and "run the same command again" in err, err
    def up(a):
        def comp(q, prefix, n): return [Completion("The answer is 8.", None, -0.1, 4)] * n
        return comp, dict(model="up")
    monkeypatch.setattr(cli, "_completer", up)
    rc, text, err = run_cli(args)
    assert rc == 0, err
    s = json.loads(text.splitlines()[0])
    assert s["annotated"] == 4 and s["ok"] == 4 and s["failed"] == 0


# ------------------------------------------------------------------ the library: five bad inputs per public function
import pandas as pd
import ktae_lab.annotate_io as aio

_PB = dict(id="a", problem="What is 2 + 2?", steps=["2 + 2 = 5.", "The answer is 5."], label=0, final_answer_correct=False, reference_answer="4")
_REC = dict(id="a", method="m", question="What is 2 + 2?", status="ok", first_error=0, correct=False,
            steps=[dict(text="2 + 2 = 5.", rating=0), dict(text="The answer is 5.", rating=0)])


def _file(tmp, name, text):
    p = tmp / name; p.write_text(text); return p


LIB = [  # (function, call(tmp_path), message regex)
    ("detect_layout", lambda t: aio.detect_layout([]), r"unknown layout of solutions \(columns: none\)"),
    ("detect_layout", lambda t: aio.detect_layout(["question"]), r"unknown layout.*a table \(question, steps or solution"),
    ("detect_layout", lambda t: aio.detect_layout(["steps", "label"]), r"unknown layout"),
    ("detect_layout", lambda t: aio.detect_layout(["input"]), r"unknown layout"),
    ("detect_layout", lambda t: aio.detect_layout(None), r"`columns` must be a list of column names"),
    ("math_shepherd_solution", lambda t: aio.math_shepherd_solution(None, "x"), r"must be strings"),
    ("math_shepherd_solution", lambda t: aio.math_shepherd_solution("Q? a", "Q? a"), r"no ки step tag"),
    ("math_shepherd_solution", lambda t: aio.math_shepherd_solution("Q? a ки", "Q? a"), r"differs at step 0"),
    ("math_shepherd_solution", lambda t: aio.math_shepherd_solution("Q? a ки b ки", "Q? a + b"), r"differs at step 1"),
    ("math_shepherd_solution", lambda t: aio.math_shepherd_solution("Q? a ки", "Q? a +more"), r"differs after the last tag"),
    ("math_shepherd_solution", lambda t: aio.math_shepherd_solution("Step 1: a ки", "Step 1: a +"), r"cannot tell the question from step 1"),
    ("read_rows", lambda t: aio.read_rows(t / "missing.jsonl"), r"solutions file not found"),
    ("read_rows", lambda t: aio.read_rows(_file(t, "a.json", "[1,")), r"not a valid JSON array of objects"),
    ("read_rows", lambda t: aio.read_rows(_file(t, "b.json", "[1, 2]")), r"item 0 of the JSON array is a int"),
    ("read_rows", lambda t: aio.read_rows(_file(t, "c.txt", "x")), r"unknown table type '.txt'"),
    ("read_rows", lambda t: aio.read_rows(_file(t, "d.jsonl", '{"a": 1}\n{"a": \n{"a": 2}\n')), r"line 2: not valid JSON"),
    ("read_rows", lambda t: aio.read_rows(t), r"not a `datasets` folder"),
    ("join_answers", lambda t: aio.join_answers(pd.DataFrame(dict(id=["a"], question=["q"])), pd.DataFrame(dict(id=["a"], value=[1]))), r"no reference answer column"),
    ("join_answers", lambda t: aio.join_answers(pd.DataFrame(dict(id=["a"], question=["q"])), pd.DataFrame(dict(key=["a"], answer=[1]))), r"needs an `id` or a question column"),
    ("join_answers", lambda t: aio.join_answers(pd.DataFrame(dict(id=["a"], question=["q"])), pd.DataFrame(dict(id=["a", "a"], answer=[1, 2]))), r"id 'a' has two different answers \('1', '2'\)"),
    ("join_answers", lambda t: aio.join_answers(pd.DataFrame(dict(id=["a", "b"], question=["q", "r"])), pd.DataFrame(dict(id=["a"], answer=[1]))), r"no reference answer for 1 of 2 solutions \(joined by id; first: 'b'\)"),
    ("join_answers", lambda t: aio.join_answers(pd.DataFrame(dict(id=["a"], question=["q"])), t / "missing.csv"), r"solutions file not found"),
    ("join_answers", lambda t: aio.join_answers(pd.DataFrame(dict(id=["a"], question=["q"])), pd.DataFrame(dict(id=["a"], answer=[float("nan")]))), r"no reference answer for 1 of 1"),
    ("read_solutions", lambda t: aio.read_solutions(pd.DataFrame([_PB]), layout="csv"), r"unknown `layout` 'csv'; valid: auto, table, processbench, math_shepherd"),
    ("read_solutions", lambda t: aio.read_solutions(pd.DataFrame(columns=list(_PB))), r"no solutions \(no rows\)"),
    ("read_solutions", lambda t: aio.read_solutions(pd.DataFrame([dict(_PB, steps=[])])), r"row 1: no steps"),
    ("read_solutions", lambda t: aio.read_solutions(pd.DataFrame([dict(_PB, problem=" ")])), r"row 1: the question must be non-empty text"),
    ("read_solutions", lambda t: aio.read_solutions(pd.DataFrame([dict(_PB, steps=["a", 3])])), r"row 1: step 1 must be non-empty text, got 3"),
    ("read_solutions", lambda t: aio.read_solutions(pd.DataFrame([dict(_PB, label=1.5)])), r"`label` must be an integer"),
    ("read_solutions", lambda t: aio.read_solutions(pd.DataFrame([dict(_PB, label=True)])), r"`label` must be an integer"),
    ("read_solutions", lambda t: aio.read_solutions(pd.DataFrame([dict(_PB, label=-2)])), r"`label` -2 is out of range for 2 steps"),
    ("read_solutions", lambda t: aio.read_solutions(pd.DataFrame([dict(_PB, reference_answer=None)])), r"row 1: no reference answer in column reference_answer"),
    ("read_solutions", lambda t: aio.read_solutions(pd.DataFrame([dict(_PB, steps=7)])), r"the steps must be a list of strings or a solution text, got int"),
    ("to_trl", lambda t: aio.to_trl("x"), r"`record` must be an annotation record \(dict\), got str"),
    ("to_trl", lambda t: aio.to_trl(None), r"`record` must be an annotation record"),
    ("to_trl", lambda t: aio.to_trl({}), r"`record` lacks `question` or a `steps` list"),
    ("to_trl", lambda t: aio.to_trl(dict(_REC, steps="2 + 2 = 5.")), r"`record` lacks `question` or a `steps` list"),
    ("to_trl", lambda t: aio.to_trl(dict(_REC, steps=["2 + 2 = 5."])), r"`record\['steps'\]\[0\]` must be a step"),
    ("to_processbench", lambda t: aio.to_processbench(_REC, label_key="hand"), r"`record` has no field 'hand'"),
    ("to_processbench", lambda t: aio.to_processbench(dict(_REC, hand=2), label_key="hand"), r"`label` 2 is out of range for 2 steps"),
    ("to_processbench", lambda t: aio.to_processbench(dict(_REC, hand="one"), label_key="hand"), r"`label` must be an integer \(the first wrong step, -1: none\), got .one."),
    ("to_processbench", lambda t: aio.to_processbench(dict(_REC, first_error=5)), r"`label` 5 is out of range"),
    ("to_processbench", lambda t: aio.to_processbench(3), r"`record` must be an annotation record"),
    ("latest_records", lambda t: aio.latest_records(5), r"`records` must be a list of annotation records"),
    ("latest_records", lambda t: aio.latest_records({"id": 1}), r"`records` must be a list of annotation records"),
    ("latest_records", lambda t: aio.latest_records(["x"]), r"`records` must hold annotation records with an `id`"),
    ("latest_records", lambda t: aio.latest_records([{"method": "m"}]), r"with an `id`"),
    ("latest_records", lambda t: aio.latest_records(t / "missing.jsonl"), r"annotation file not found"),
    ("write_export", lambda t: aio.write_export([_REC], t / "x.jsonl", "csv"), r"unknown `format` 'csv'"),
    ("write_export", lambda t: aio.write_export([_REC, dict(_REC, id="b", method="n")], t / "x.jsonl", "trl"), r"mix methods \['m', 'n'\]"),
    ("write_export", lambda t: aio.write_export(5, t / "x.jsonl"), r"`records` must be a list"),
    ("write_export", lambda t: aio.write_export([dict(_REC, steps=None)], t / "x.jsonl"), r"lacks `question` or a `steps` list"),
    ("write_export", lambda t: aio.write_export([_REC], t, "trl"), r"Is a directory"),
    ("processbench_scores", lambda t: aio.processbench_scores(None, None), r"`predicted`"),
    ("processbench_scores", lambda t: aio.processbench_scores([0], [0, 1]), r"same length"),
    ("processbench_scores", lambda t: aio.processbench_scores("01", "01"), r"`predicted` must be a list"),
    ("processbench_scores", lambda t: aio.processbench_scores([0], 5), r"`truth` must be a list"),
    ("processbench_scores", lambda t: aio.processbench_scores(5, [0]), r"`predicted` must be a list"),
    ("score_against", lambda t: aio.score_against([_REC], pd.DataFrame(dict(id=["a"], first=[0]))), r"the processbench layout needs column\(s\) problem, steps, label"),
    ("score_against", lambda t: aio.score_against([dict(_REC, id="zz")], pd.DataFrame([_PB])), r"no annotated solution has a label"),
    ("score_against", lambda t: aio.score_against([_REC], t / "missing.jsonl"), r"solutions file not found"),
    ("score_against", lambda t: aio.score_against(5, pd.DataFrame([_PB])), r"`records` must be a list"),
    ("score_against", lambda t: aio.score_against([_REC], pd.DataFrame(dict(id=["a"], question=["q"], label=[None]))), r"must give every solution a `label`"),
]


@pytest.mark.parametrize("name,call,msg", LIB, ids=[f"{i:02d}-{c[0]}" for i, c in enumerate(LIB)])
def test_library_bad_input_gets_a_clear_error(name, call, msg, tmp_path):
    import re
    with pytest.raises((ValueError, TypeError, OSError)) as e: call(tmp_path)
    assert re.search(msg, str(e.value)), f"{name}: unclear message {str(e.value)!r}"


def test_every_public_function_has_five_bad_inputs():
    import collections, inspect
    counts = collections.Counter(n for n, _, _ in LIB)
    public = [n for n in aio.__all__ if inspect.isfunction(getattr(aio, n))]
    few = {n: counts[n] for n in public if counts[n] < 5}
    assert not few, f"fewer than five bad inputs: {few}"


# ------------------------------------------------------------------ --server (the engine itself is tested in the engine tests)
def _free_port():
    import socket
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@pytest.mark.parametrize("url,expect", [(None, "engine http://127.0.0.1:"), ("ftp://x", "ftp://x")])
def test_server_down_or_a_bad_url_is_one_line(url, expect, tmp_path, run_cli):
    "Nothing listens on the port (or the URL is not http): one line naming the engine, nothing written; the same command runs once it is up."
    from ktae_lab.lm import tiny_tokenizer
    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    out = tmp_path / "a.jsonl"
    rc, _, err = run_cli(["annotate", LAY / "processbench.jsonl", "--answers", LAY / "processbench_answers.jsonl", "-o", out,
                          "--server", url or f"http://127.0.0.1:{_free_port()}", "--model", "m", "--tokenizer", tmp_path / "tok",
                          "--retries", "0", "--no-progress"])
    assert rc == 2 and err.count("\n") == 1 and err.startswith("ktae-lab annotate: error: ") and expect in err, err
    assert not out.exists() and not Path(str(out) + ".lock").exists()
