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
