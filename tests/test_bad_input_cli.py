"""Bad input to the command line and to the rollout data loader: each gets a clear error naming the argument (or
a right answer), never a silent wrong result, never a traceback. The one place for error-message checks of the
CLI and of `ktae_lab.data` (tests elsewhere check behaviour, not wording).

Every CLI case runs in-process through `ktae_lab.cli.main([...])`; a few also run through a real process. The
expensive step of `sample` (loading a model) and of `ablate` (training) is replaced by a stub that raises
`Accepted`: reaching it means the command accepted the input, which for a bad input is a silent failure.

The same table runs outside pytest against any checkout, to count outcomes before and after a change:

    PYTHONPATH=/path/to/checkout python tests/test_bad_input_cli.py [--old]

(`--old` uses each case's old-syntax arguments, for commits before the command line was unified.)"""
import contextlib, importlib, io, json, math, os, shutil, subprocess, sys, tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0   # root ignores folder permissions


class Accepted(Exception):
    "Raised by the stubs: the command got past its checks and started the real work."


@dataclass
class Case:
    args: list            # the command line after `ktae-lab` ({name} = a workspace file, see `workspace`)
    expect: str | None    # fragment of the one-line error; None: the command must succeed (a right answer)
    old: list | None = None   # the same input in the old syntax (before the command line was unified)
    stub: bool = True     # replace the expensive step by `Accepted`
    needs_nonroot: bool = False

    @property
    def cmd(self): return self.args[0] if self.args and self.args[0] in ("score", "report", "sample", "ablate", "prm", "annotate") else None

    def id(self): return " ".join(self.args)[:70]


def _rec(**kw): return {"group_id": "g", "token_ids": [1, 2], "reward": 1.0, **kw}


def workspace(d) -> dict:
    "Files the cases refer to, created under folder `d`."
    d = Path(d)
    def jl(name, lines):
        (d / name).write_bytes(b"".join((l if isinstance(l, bytes) else json.dumps(l).encode()) + b"\n" for l in lines))
        return str(d / name)
    ws = {"ws": str(d), "sample": str(REPO / "data" / "sample_rollouts.jsonl")}
    ws["correct_str"] = jl("correct_str.jsonl", [_rec(correct="False"), _rec(reward=0.0, correct="True")])
    ws["latin1"] = jl("latin1.jsonl", [_rec(), b'{"group_id": "caf\xe9", "token_ids": [1], "reward": 0.0}'])
    ws["str_reward"] = jl("str_reward.jsonl", [_rec(), _rec(reward="0.0")])
    ws["bad_json"] = jl("bad_json.jsonl", [_rec(), b'{"group_id": "g", "token_ids": [1'])
    ws["neg_ids"] = jl("neg_ids.jsonl", [_rec(), _rec(token_ids=[3, -1], reward=0.0)])
    ws["problems"] = jl("problems.jsonl", [{"question": "What is 1 + 1?", "answer": "2"}, {"question": "What is 2 + 2?", "answer": "4"}])
    (d / "afile").write_text("a file, not a folder\n"); ws["afile"] = str(d / "afile")
    (d / "existing.txt").write_text("x\n"); ws["existing"] = str(d / "existing.txt")
    (d / "outdir").mkdir(exist_ok=True); ws["outdir"] = str(d / "outdir")
    (d / "ro").mkdir(exist_ok=True); (d / "ro").chmod(0o555); ws["ro"] = str(d / "ro")
    # foreign rollout files (ktae_lab.formats, issue 18)
    v = dict(input="q", output="1", gts="1", score=1.0, step=1)
    ws["verl_noscore"] = jl("verl_noscore.jsonl", [v, {k: x for k, x in v.items() if k != "score"}])
    ws["verl_ok"] = jl("verl_ok.jsonl", [v])
    (d / "norun").mkdir(exist_ok=True); ws["norun"] = str(d / "norun")
    (d / "tworuns").mkdir(exist_ok=True); jl("tworuns/1.jsonl", [v]); jl("tworuns/step_1.jsonl", [v]); ws["tworuns"] = str(d / "tworuns")
    (d / "table.csv").write_text("completion,reward\n1,1.0\n"); ws["table_noprompt"] = str(d / "table.csv")
    # solution files for `annotate` (ktae_lab.annotate_io, issue 19): ProcessBench layout without steps, a label out of range
    pb = dict(id="a", problem="What is 2 + 2?", steps=["2 + 2 = 5.", "The answer is 5."], label=0, final_answer_correct=False)
    ws["pb"], ws["pb_answers"] = str(REPO / "data" / "layouts" / "processbench.jsonl"), str(REPO / "data" / "layouts" / "processbench_answers.jsonl")
    ws["pb_nosteps"] = jl("pb_nosteps.jsonl", [{k: v for k, v in pb.items() if k != "steps"}])
    ws["pb_range"] = jl("pb_range.jsonl", [dict(pb, label=2, reference_answer="4")])
    ws["verl_nullscore"] = jl("verl_nullscore.jsonl", [v, dict(v, score=None)])
    ws["verl_noinput"] = jl("verl_noinput.jsonl", [v, {k: x for k, x in v.items() if k != "input"}])
    ws["verl_torn"] = jl("verl_torn.jsonl", [v, v]); open(ws["verl_torn"], "a").write('{"input": "q", "outp')
    (d / "empty.jsonl").write_text(""); ws["empty"] = str(d / "empty.jsonl")
    (d / "tornrun").mkdir(exist_ok=True); (d / "tornrun" / "1.jsonl").write_text('{"input": "q", "outp'); ws["tornrun"] = str(d / "tornrun")
    import pandas as pd
    pd.DataFrame(dict(step=1, completion=["1"], acc=[1.0])).to_parquet(d / "trl_noprompt.parquet"); ws["trl_noprompt"] = str(d / "trl_noprompt.parquet")
    return ws


SMALL_LAB_OLD = ["--steps", "1", "--workers", "1", "--no-progress"]

CASES = [
    # ------------------------------------------------------------------ score
    Case(["score", "{ws}/missing.jsonl"], "rollout file not found"),
    Case(["score", "{correct_str}"], "field `correct`: expected true, false or null, got 'False'"),
    Case(["score", "{latin1}"], "latin1.jsonl, line 2: not UTF-8 text"),
    Case(["score", "{str_reward}"], "line 2, field `reward`: expected a number, got str"),
    Case(["score", "{bad_json}"], "bad_json.jsonl, line 2: not valid JSON"),
    Case(["score", "{neg_ids}"], "token ids must be >= 0"),
    Case(["score", "{sample}", "--preset", "offical"], "unknown preset 'offical'"),
    Case(["score", "{sample}", "--set", "betta=2"], "unknown KTAE override 'betta'"),
    Case(["score", "{sample}", "--set", "use_tf=perhaps"], "expected a bool"),
    Case(["score", "{sample}", "--set", "alpha=-1"], "`alpha` must be a finite number >= 0"),
    Case(["score", "{sample}", "--top", "-1"], "--top: must be >= 0"),
    Case(["score", "{sample}", "-o", "{afile}/t.csv"], "cannot create the folder", old=["score", "{sample}", "--out", "{afile}/t.csv"]),
    Case(["score", "{sample}", "-o", "{outdir}"], "is a folder; give a file name", old=["score", "{sample}", "--out", "{outdir}"]),
    Case(["score", "{sample}", "-o", "{ro}/t.csv"], "permission denied", old=["score", "{sample}", "--out", "{ro}/t.csv"], needs_nonroot=True),
    Case(["score", "{sample}", "-o", "{ws}/new/deeper/t.csv"], None, old=["score", "{sample}", "--out", "{ws}/new/deeper/t.csv"]),
    Case(["score"], "the following arguments are required: rollouts"),
    Case(["score", "{sample}", "--bogus"], "unrecognized arguments: --bogus"),
    # ------------------------------------------------------------------ report
    Case(["report", "{ws}/missing.jsonl", "-o", "{ws}/r.html"], "rollout file not found"),
    Case(["report", "{correct_str}", "-o", "{ws}/r.html"], "field `correct`: expected true, false or null"),
    Case(["report", "{latin1}", "-o", "{ws}/r.html"], "line 2: not UTF-8 text"),
    Case(["report", "{str_reward}", "-o", "{ws}/r.html"], "field `reward`: expected a number, got str"),
    Case(["report", "{sample}", "--top", "0", "-o", "{ws}/r.html"], "--top: must be >= 1"),
    Case(["report", "{sample}", "--max-groups", "0", "-o", "{ws}/r.html"], "--max-groups: must be >= 1"),
    Case(["report", "{sample}", "--preset", "nope", "-o", "{ws}/r.html"], "unknown preset 'nope'"),
    Case(["report", "{sample}", "--set", "betta=1", "-o", "{ws}/r.html"], "unknown KTAE override 'betta'"),
    Case(["report", "{sample}", "--set", "novalue", "-o", "{ws}/r.html"], "KTAE override 'novalue' must look like name=value"),
    Case(["report", "{sample}", "-o", "{outdir}"], "is a folder; give a file name"),
    Case(["report", "{sample}", "-o", "{afile}/r.html"], "cannot create the folder"),
    Case(["report", "{sample}", "--set", "top=0.5", "--top", "3", "--no-plots", "--max-groups", "1", "-o", "{ws}/r2.html"], None),
    # ------------------------------------------------------------------ sample (the model is never loaded)
    Case(["sample", "--problems", "{problems}"], "the following arguments are required: -o/--out"),
    Case(["sample", "-o", "{ws}/o.jsonl", "--problems", "{problems}", "--limit", "-1"], "--limit: must be >= 1",
         old=["sample", "--output", "{ws}/o.jsonl", "--problems", "{problems}", "--limit", "-1"]),
    Case(["sample", "-o", "{ws}/o.jsonl", "--problems", "{problems}", "-G", "0"], "--num-rollouts: must be >= 1",
         old=["sample", "--output", "{ws}/o.jsonl", "--problems", "{problems}", "-G", "0"]),
    Case(["sample", "-o", "{ws}/o.jsonl", "--problems", "{problems}", "--threads", "0"], "--threads: must be >= 1",
         old=["sample", "--output", "{ws}/o.jsonl", "--problems", "{problems}", "--threads", "0"]),
    Case(["sample", "-o", "{ws}/o.jsonl", "--problems", "{problems}", "--dtype", "fp33"], "'fp33' is not supported",
         old=["sample", "--output", "{ws}/o.jsonl", "--problems", "{problems}", "--dtype", "fp33"], stub=False),
    Case(["sample", "-o", "{ws}/o.jsonl", "--problems", "{problems}", "--device", "gpu"], "'gpu' is not a device name",
         old=["sample", "--output", "{ws}/o.jsonl", "--problems", "{problems}", "--device", "gpu"], stub=False),
    Case(["sample", "-o", "{ws}/o.jsonl", "--problems", "{problems}", "--device", "cuda:99"], "cuda:99",
         old=["sample", "--output", "{ws}/o.jsonl", "--problems", "{problems}", "--device", "cuda:99"], stub=False),
    Case(["sample", "-o", "{ws}/o.jsonl", "--problems", "{ws}/missing.jsonl"], "problem file not found",
         old=["sample", "--output", "{ws}/o.jsonl", "--problems", "{ws}/missing.jsonl"]),
    Case(["sample", "-o", "{ws}/o.jsonl", "--problems", "{problems}", "--model", "{ws}/no_such_model"], "model directory not found",
         old=["sample", "--output", "{ws}/o.jsonl", "--problems", "{problems}", "--model", "{ws}/no_such_model"], stub=False),
    Case(["sample", "-o", "{outdir}", "--problems", "{problems}"], "is a folder; give a file name",
         old=["sample", "--output", "{outdir}", "--problems", "{problems}"]),
    Case(["sample", "-o", "{ws}/o.jsonl", "--problems", "{problems}", "--temperature", "nan"], "temperature",
         old=["sample", "--output", "{ws}/o.jsonl", "--problems", "{problems}", "--temperature", "nan"]),
    Case(["sample", "-o", "{ws}/o.jsonl", "--problems", "{problems}", "--top-p", "0"], "top_p",
         old=["sample", "--output", "{ws}/o.jsonl", "--problems", "{problems}", "--top-p", "0"]),
    # sample --server (OpenAICompleter): a URL that is not one, and an engine that is not there (nothing listens on port 9)
    Case(["sample", "-o", "{ws}/o.jsonl", "--problems", "{problems}", "--server", "localhost:8000"], "`base_url` must be an http(s) URL"),
    Case(["sample", "-o", "{ws}/o.jsonl", "--problems", "{problems}", "--server", "http://127.0.0.1:9", "--retries", "0"],
         "cannot connect (is the engine running, at this host and port?)"),
    # ------------------------------------------------------------------ ablate (nothing is trained)
    Case(["ablate", "--seeds", "1,1", "-o", "{ws}/ab"], "seed(s) [1] given twice", old=["ablate", "--seeds", "1,1", "--out", "{ws}/ab"] + SMALL_LAB_OLD),
    Case(["ablate", "--seeds", "a", "-o", "{ws}/ab"], "--seeds: expected a count or a comma list", old=["ablate", "--seeds", "a", "--out", "{ws}/ab"]),
    Case(["ablate", "--seeds", "0", "-o", "{ws}/ab"], "--seeds: a seed count must be >= 1", old=["ablate", "--seeds", "0", "--out", "{ws}/ab"]),
    Case(["ablate", "--seeds", "5-2", "-o", "{ws}/ab"], "--seeds: the seed range '5-2' is empty"),
    Case(["ablate", "--seeds", "0-", "-o", "{ws}/ab"], "--seeds: expected a count, a range A-B"),
    Case(["ablate", "--seeds", "0-3,3", "-o", "{ws}/ab"], "--seeds: expected a count or a comma list of integers"),
    Case(["ablate", "--seeds", "3,4,3", "-o", "{ws}/ab"], "seed(s) [3] given twice"),
    Case(["ablate", "--seed-batch", "0", "-o", "{ws}/ab"], "--seed-batch: must be >= 1"),
    Case(["ablate", "--lab", "task=longest", "-o", "{ws}/ab"], "unknown task variant 'longest'; valid variants: default, long, carry, distractor"),
    Case(["ablate", "--algos", "nope", "-o", "{ws}/ab"], "unknown algorithm 'nope'", old=["ablate", "--algos", "nope", "--out", "{ws}/ab"]),
    Case(["ablate", "--algos", "grpo,grpo", "-o", "{ws}/ab"], "names an algorithm twice", old=["ablate", "--algos", "grpo,grpo", "--out", "{ws}/ab"] + SMALL_LAB_OLD),
    Case(["ablate", "-o", "{existing}"], "is an existing file; give a folder", old=["ablate", "--out", "{existing}"] + SMALL_LAB_OLD),
    Case(["ablate", "-o", "{afile}/sub"], "cannot create the folder", old=["ablate", "--out", "{afile}/sub"] + SMALL_LAB_OLD),
    Case(["ablate", "-o", "{ro}/sub"], "cannot create the folder", old=["ablate", "--out", "{ro}/sub"] + SMALL_LAB_OLD, needs_nonroot=True),
    Case(["ablate", "--device", "gpu", "-o", "{ws}/ab"], "'gpu' is not a device name", old=["ablate", "--device", "gpu", "--out", "{ws}/ab"] + SMALL_LAB_OLD),
    Case(["ablate", "--lab", "lrr=1", "-o", "{ws}/ab"], "unknown LabConfig field 'lrr'", old=["ablate", "--set", "lrr=1", "--out", "{ws}/ab"]),
    Case(["ablate", "--lab", "group_size=two", "-o", "{ws}/ab"], "--lab group_size='two': expected a int", old=["ablate", "--set", "group_size=two", "--out", "{ws}/ab"]),
    Case(["ablate", "--lab", "ktae_preset=clean", "-o", "{ws}/ab"], "use its own option"),
    Case(["ablate", "--set", "betta=1", "-o", "{ws}/ab"], "unknown KTAE override 'betta'", old=["ablate", "--ktae", "betta=1", "--out", "{ws}/ab"]),
    Case(["ablate", "--preset", "nope", "-o", "{ws}/ab"], "unknown preset 'nope'", old=["ablate", "--preset", "nope", "--out", "{ws}/ab"] + SMALL_LAB_OLD),
    Case(["ablate", "--steps", "0", "-o", "{ws}/ab"], "--steps: must be >= 1", old=["ablate", "--steps", "0", "--out", "{ws}/ab"]),
    Case(["ablate", "--algos", "grpo"], "the following arguments are required: -o/--out"),
    # ------------------------------------------------------------------ prm (nothing is trained)
    Case(["prm", "--seeds", "1,1", "-o", "{ws}/p"], "given twice"),
    Case(["prm", "--seeds", "a", "-o", "{ws}/p"], "--seeds: expected a count or a comma list"),
    Case(["prm", "--device", "gpu", "-o", "{ws}/p"], "'gpu' is not a device name"),
    Case(["prm", "-o", "{existing}"], "is an existing file; give a folder"),
    Case(["prm", "-o", "{afile}/sub"], "cannot create the folder"),
    Case(["prm", "--threads", "0", "-o", "{ws}/p"], "--threads"),
    Case(["prm", "--quick"], "the following arguments are required: -o/--out"),
    # ------------------------------------------------------------------ annotate (the model is never loaded)
    Case(["annotate", "{pb}"], "the following arguments are required: -o/--out"),
    Case(["annotate", "{pb_nosteps}", "--layout", "processbench", "-o", "{ws}/a.jsonl"], "the processbench layout needs column(s) steps"),
    Case(["annotate", "{pb_range}", "-o", "{ws}/a.jsonl"], "row 1: `label` 2 is out of range for 2 steps"),
    Case(["annotate", "{verl_ok}", "-o", "{ws}/a.jsonl"], "unknown layout of solutions (columns: gts, input, output, score, step)"),
    Case(["annotate", "{pb}", "-o", "{ws}/a.jsonl"], "no reference answer, which grading completions needs; the processbench layout carries none"),
    Case(["annotate", "{pb}", "--answers", "{pb_answers}", "-o", "{outdir}"], "is a folder; give a file name"),
    Case(["annotate", "{pb}", "--answers", "{pb_answers}", "-o", "{ws}/a.jsonl", "--param", "pilot=0"], "`pilot` must be a positive int, got 0"),
    Case(["annotate", "{pb}", "--answers", "{pb_answers}", "-o", "{ws}/a.jsonl", "--model", "{ws}/no_such_model"], "model directory not found", stub=False),
    # ------------------------------------------------------------------ the dispatcher
    Case(["scroe"], "unknown command 'scroe'; valid commands: score, report, sample, ablate"),
    Case(["score", "{verl_noscore}", "--tokenizer", "{ws}"], "verl_noscore.jsonl, line 2: field `score`: missing, no usable reward"),
    Case(["score", "{verl_ok}", "--tokenizer", "{ws}/no_tokenizer"], "not a local tokenizer directory"),
    Case(["score", "{norun}"], "no step files"),
    Case(["score", "{tworuns}"], "mixed step files of two runs"),
    Case(["report", "{table_noprompt}", "--format", "table", "-o", "{ws}/r.html"], "no column `prompt`"),
    Case(["score", "{verl_nullscore}", "--tokenizer", "{ws}"], "verl_nullscore.jsonl, line 2: field `score`: expected a finite number as the reward, got None"),
    Case(["score", "{verl_noinput}", "--tokenizer", "{ws}"], "verl_noinput.jsonl, line 2: field `input`: missing"),
    Case(["report", "{trl_noprompt}", "--format", "trl", "--tokenizer", "{ws}", "-o", "{ws}/r.html"], "trl_noprompt.parquet: no `prompt` column"),
    Case(["score", "{empty}"], "empty.jsonl: no complete records"),
    Case(["score", "{trl_noprompt}", "--tokenizer", "{ws}"], "trl_noprompt.parquet: no column `reward` (name it with reward=), no column `prompt` (name it with prompt=)"),
    Case(["score", "{tornrun}"], "no step file holds a complete line or record (1.jsonl)"),
    Case(["--bogus"], "unknown command '--bogus'"),
]

STUBS = {"sample": [("ktae_lab.lm", "load_model"), ("ktae_lab.sampling", "load_model")],
         "ablate": [("ktae_lab.lab", "run_ablation")], "prm": [("ktae_lab.prm_lab", "run_prm_pipeline")],
         "annotate": [("ktae_lab.lm", "load_model")]}


def fill(args, ws): return [a.format(**ws) for a in args]


@contextlib.contextmanager
def stubbed(cmd, on=True):
    "Replace the expensive step of `cmd` by a function raising `Accepted` (restored on exit)."
    saved = []
    def accepted(*a, **k): raise Accepted()
    for mod, name in STUBS.get(cmd, []) if on else []:
        try: m = importlib.import_module(mod)
        except ImportError: continue
        if hasattr(m, name): saved.append((m, name, getattr(m, name))); setattr(m, name, accepted)
    try: yield
    finally:
        for m, name, f in saved: setattr(m, name, f)


def run_case(case, ws, old=False):
    "Run one case in-process; return (outcome, exit status, stderr) with outcome in ok/clear/unclear/silent/traceback."
    from ktae_lab.cli import main
    args = fill(case.old if old and case.old else case.args, ws)
    out, err = io.StringIO(), io.StringIO()
    try:
        with stubbed(case.cmd, case.stub), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(args)
    except Accepted: return ("ok" if case.expect is None else "silent"), 0, err.getvalue()
    except SystemExit as e: rc = e.code if isinstance(e.code, int) else 1
    except BaseException as e: return "traceback", None, f"{type(e).__name__}: {e}"
    text = err.getvalue()
    if "Traceback (most recent call last)" in text: return "traceback", rc, text
    if case.expect is None: return ("ok" if rc == 0 else "unclear"), rc, text
    if rc == 0: return "silent", rc, text
    prefix = f"ktae-lab {case.cmd}: error: " if case.cmd else "ktae-lab: error: "
    lines = text.strip("\n").split("\n")
    clear = rc == 2 and len(lines) == 1 and lines[0].startswith(prefix) and case.expect in lines[0]
    return ("clear" if clear else "unclear"), rc, text


# ------------------------------------------------------------------------------------------------ pytest

@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input")
    yield workspace(d)
    (d / "ro").chmod(0o755)


@pytest.mark.parametrize("case", CASES, ids=Case.id)
def test_cli_bad_input(case, ws):
    if case.needs_nonroot and ROOT: pytest.skip("running as root: folder permissions are not enforced")
    outcome, rc, err = run_case(case, ws)
    want = "ok" if case.expect is None else "clear"
    assert outcome == want, f"{case.args}: {outcome} (exit {rc}); stderr: {err!r}; expected: {case.expect!r}"


def test_half_written_last_line_is_one_warning_line_and_the_complete_lines_are_read(ws):
    "A verl dump whose trainer was killed mid-line: one `warning:` line naming file and line, then the complete lines."
    out, err = io.StringIO(), io.StringIO()
    from ktae_lab.cli import main
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["score", ws["verl_torn"], "--tokenizer", ws["ws"] + "/no_tokenizer"])
    assert rc == 2 and "not a local tokenizer directory" in err.getvalue()     # checks came first, then the tokenizer
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["score", ws["verl_torn"], "--tokenizer", str(REPO / "data" / "smollm2_tokenizer"), "-o", ws["ws"] + "/torn.csv"])
    lines = err.getvalue().strip().splitlines()
    assert rc == 0 and lines == [f"ktae-lab score: warning: {ws['verl_torn']}, line 3: half-written last line (the writer was stopped?); read the 2 complete lines"], lines
    assert "2 rollouts in 1 groups" in out.getvalue()


def test_every_command_has_at_least_five_bad_inputs():
    from ktae_lab.cli import COMMANDS
    for cmd in COMMANDS:
        assert sum(c.cmd == cmd and c.expect is not None for c in CASES) >= 5, cmd


def test_report_top_and_ktae_top_do_not_clash(ws):
    outcome, rc, err = run_case(Case(["report", "{sample}", "--set", "top=0.5", "--top", "2", "--no-plots", "--max-groups", "1",
                                      "-o", "{ws}/top.html"], None), ws)
    assert outcome == "ok", err
    html = Path(ws["ws"], "top.html").read_text()
    assert "<td>top</td><td>0.5</td>" in html   # the KTAE bound reached the report's configuration table


@pytest.mark.parametrize("args,expect", [
    (["score", "{correct_str}"], "ktae-lab score: error: "),
    (["ablate", "--seeds", "1,1", "-o", "{ws}/ab"], "ktae-lab ablate: error: argument --seeds: seed(s) [1] given twice"),
    (["sample", "-o", "{ws}/o.jsonl", "--limit", "-1"], "ktae-lab sample: error: argument --limit: must be >= 1, got -1"),
])
def test_real_process_one_line_exit_2(ws, args, expect):
    code = "import sys; from ktae_lab.cli import main; sys.exit(main())"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("KTAE_LAB_DEBUG", None)
    r = subprocess.run([sys.executable, "-c", code, *fill(args, ws)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(expect), r.stderr


def test_debug_switch_shows_the_traceback(ws, monkeypatch):
    from ktae_lab.cli import main
    monkeypatch.setenv("KTAE_LAB_DEBUG", "1")
    with pytest.raises(ValueError, match="field `correct`"):
        main(["score", ws["correct_str"]])


# ------------------------------------------------------------------------------------------------ the data loader

def _lines(tmp_path, lines):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b"".join((l if isinstance(l, bytes) else (l if isinstance(l, str) else json.dumps(l)).encode()) + b"\n" for l in lines))
    return p


BAD_LINES = [
    ('{"group_id": "g", "token_ids": [1, 2], "reward": 1', r"line 2: not valid JSON"),
    (b'{"group_id": "caf\xe9", "token_ids": [1], "reward": 1}', r"line 2: not UTF-8 text \(byte 0xe9 at byte 18 of the line\)"),
    ("[1, 2, 3]", r"line 2: expected a JSON object, got list"),
    (_rec(token_ids=[1, 2.5]), r"line 2, field `token_ids`: token ids must be integers; position 1 holds 2.5"),
    (_rec(token_ids=[1, "2"]), r"line 2, field `token_ids`: token ids must be integers; position 1 holds '2'"),
    (_rec(token_ids=[3, -1, 4]), r"line 2, field `token_ids`: token ids must be >= 0; position 1 holds -1"),
    (_rec(token_ids=[True, False]), r"line 2, field `token_ids`: token ids must be integers, got booleans"),
    (_rec(token_ids=[[1, 2], [3, 4]]), r"line 2, field `token_ids`: token ids must be integers; position 0"),
    (_rec(token_ids=[2 ** 70]), r"line 2, field `token_ids`: token ids must fit in int64"),
    (_rec(token_ids="1 2 3"), r"line 2, field `token_ids`: expected a list of token ids, got str"),
    ('{"group_id": "g", "token_ids": [1], "reward": NaN}', r"line 2, field `reward`: must be finite, got nan"),
    ('{"group_id": "g", "token_ids": [1], "reward": Infinity}', r"line 2, field `reward`: must be finite, got inf"),
    ('{"group_id": "g", "token_ids": [1], "reward": -Infinity}', r"line 2, field `reward`: must be finite, got -inf"),
    (_rec(reward="1.0"), r"line 2, field `reward`: expected a number, got str"),
    (_rec(reward=True), r"line 2, field `reward`: expected a number, got bool"),
    (_rec(response_mask=[1, 2]), r"line 2, field `response_mask`: must hold only 0 and 1; position 1 holds 2"),
    (_rec(response_mask=[1, -1]), r"line 2, field `response_mask`: must hold only 0 and 1; position 1 holds -1"),
    (_rec(response_mask=[1, 0.5]), r"line 2, field `response_mask`: 0/1 mask values must be integers; position 1"),
    (_rec(response_mask=[1]), r"line 2, field `response_mask`: has 1 entries but `token_ids` has 2"),
    (_rec(tokens=["a"]), r"line 2, field `tokens`: has 1 entries but `token_ids` has 2"),
    (_rec(tokens=["a", 3]), r"line 2, field `tokens`: expected a list of strings"),
    ({"token_ids": [1], "reward": 1.0}, r"line 2, field `group_id`: missing required field"),
    ({"group_id": "g", "reward": 1.0}, r"line 2, field `token_ids`: missing required field"),
    ({"group_id": "g", "token_ids": [1]}, r"line 2, field `reward`: missing required field"),
    (_rec(reward=None), r"line 2, field `reward`: missing required field"),
    (_rec(group_id=1.5), r"line 2, field `group_id`: expected a str or int, got float"),
    (_rec(group_id=[1]), r"line 2, field `group_id`: expected a str or int, got list"),
    (_rec(rewards=1.0), r"line 2, field `rewards`: unknown field; known fields: group_id"),
    (_rec(prompt=3), r"line 2, field `prompt`: expected a string or null, got int"),
    (_rec(reference_answer=18), r"line 2, field `reference_answer`: expected a string or null, got int"),
    (_rec(correct="False"), r"line 2, field `correct`: expected true, false or null, got 'False'"),
    (_rec(correct=1), r"line 2, field `correct`: expected true, false or null, got 1"),
    (_rec(truncated="false"), r"line 2, field `truncated`: expected true or false"),
    (_rec(eos_token_id=-1), r"line 2, field `eos_token_id`: must be >= 0"),
    (_rec(pad_token_id="0"), r"line 2, field `pad_token_id`: expected an int or null"),
    (_rec(rollout_id=1.0), r"line 2, field `rollout_id`: expected an int or null"),
    (_rec(sampling=[0.7]), r"line 2, field `sampling`: expected an object or null"),
    (_rec(meta="note"), r"line 2, field `meta`: expected an object"),
    (_rec(schema_version="2"), r"line 2, field `schema_version`: "),
]


@pytest.mark.parametrize("line,msg", BAD_LINES, ids=[m[8:50] for _, m in BAD_LINES])
def test_read_rollouts_bad_line_names_file_line_field(tmp_path, line, msg):
    from ktae_lab.data import read_rollouts
    p = _lines(tmp_path, [_rec(rollout_id=0), line])
    with pytest.raises(ValueError, match=msg) as e:
        read_rollouts(p)
    assert str(e.value).startswith(str(p) + ", line 2") and "\n" not in str(e.value)


def test_schema_versions_and_duplicate_ids(tmp_path):
    from ktae_lab.data import read_rollouts
    with pytest.raises(ValueError, match=r"line 1, field `schema_version`: unsupported version '2'"):
        read_rollouts(_lines(tmp_path, [_rec(schema_version="2")]))
    with pytest.raises(ValueError, match=r"line 1, field `schema_version`: unsupported version 1;"):
        read_rollouts(_lines(tmp_path, [_rec(schema_version=1)]))
    with pytest.raises(ValueError, match=r"line 3, field `schema_version`: '2' differs from '1' on line 1"):
        read_rollouts(_lines(tmp_path, [_rec(schema_version="1"), _rec(), _rec(schema_version="2")]))
    with pytest.raises(ValueError, match=r"line 4, field `rollout_id`: duplicate rollout_id 1 in group 'g' \(first on line 2\)"):
        read_rollouts(_lines(tmp_path, [_rec(rollout_id=0), _rec(rollout_id=1), _rec(group_id="h", rollout_id=0), _rec(rollout_id=1)]))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_rollouts(tmp_path / "nope.jsonl")


def test_validate_and_write_errors(tmp_path):
    from ktae_lab.data import validate_rollout, write_rollouts
    with pytest.raises(ValueError, match=r"^field `token_ids`: token ids must be >= 0"):
        validate_rollout(_rec(token_ids=[-5]))
    with pytest.raises(ValueError, match=r"^line 9: expected a JSON object, got str"):
        validate_rollout("x", line=9)
    p = write_rollouts([_rec()], tmp_path / "r.jsonl")
    before = p.read_text()
    with pytest.raises(ValueError, match=r"write_rollouts: record 1 \(0-based\): field `reward`: must be finite"):
        write_rollouts([_rec(), _rec(reward=math.nan)], p)
    assert p.read_text() == before


def test_to_batch_bad_frames():
    import pandas as pd
    from ktae_lab.data import to_batch
    good = pd.DataFrame({"group_id": ["a"], "token_ids": [[1, 2]], "reward": [1.0]})
    bad = [
        (lambda: to_batch(good, pad_id=0.0), TypeError, "`pad_id` must be an int"),
        (lambda: to_batch([{"group_id": "a"}]), TypeError, "`df_or_path` must be a DataFrame or a path"),
        (lambda: to_batch(good.drop(columns="reward")), ValueError, r"lacks the required column\(s\) \['reward'\]"),
        (lambda: to_batch(good.assign(token_ids=[[1.5, 2]])), ValueError, "`token_ids` must hold lists of integers"),
        (lambda: to_batch(good.assign(token_ids=[[1, -2]])), ValueError, "`token_ids` holds negative ids"),
        (lambda: to_batch(good.assign(response_mask=[[1]])), ValueError, "row 0: `response_mask` has 1 entries but `token_ids` has 2"),
        (lambda: to_batch(good.assign(response_mask=[[1, 3]])), ValueError, "`response_mask` must hold only 0 and 1"),
        (lambda: to_batch(good.assign(reward=[math.inf])), ValueError, "row 0: `reward` inf is NaN, infinite or beyond the float32 range"),
        (lambda: to_batch(pd.concat([good, good.assign(reward=[1e39])])), ValueError, r"row 1: `reward` 1e\+39 is NaN, infinite"),
        (lambda: to_batch(pd.concat([good, good.assign(reward=["0.0"])])), TypeError, "row 1: `reward` must be a number, got str '0.0'"),
        (lambda: to_batch(good.assign(reward=[True])), TypeError, "row 0: `reward` must be a number, got bool"),
    ]
    for f, exc, msg in bad:
        with pytest.raises(exc, match=msg): f()


# ------------------------------------------------------------------------------------------------ annotate_dataset files

def _solutions(**cols):
    import pandas as pd
    return pd.DataFrame(dict(id=[0, 1], question=["q", "q"], reference_answer="4", steps=[["a", "b"], ["a"]], **cols))


def _never(*a): raise AssertionError("the completer must not be called")


def test_annotate_dataset_refuses_a_rollout_file(tmp_path):
    from ktae_lab.epicprm import annotate_dataset
    p = tmp_path / "rollouts.jsonl"
    p.write_text(json.dumps(_rec()) + "\n")
    with pytest.raises(ValueError, match=r"rollouts.jsonl, line 1 is not an annotation record \(lacks \['id', 'question'"):
        annotate_dataset(_solutions(), _never, p, "epic_binary", progress=False)
    assert p.read_text() == json.dumps(_rec()) + "\n"       # untouched: nothing appended


@pytest.mark.parametrize("value,kind", [("False", "str"), ("True", "str"), (2, "int"), (0.5, "float"), ("", "str")])
def test_annotate_dataset_strict_correct_column(tmp_path, value, kind):
    from ktae_lab.epicprm import annotate_dataset
    with pytest.raises(TypeError, match=rf"`df\['correct'\]` row 1: expected True, False or missing, got {kind}"):
        annotate_dataset(_solutions(correct=[True, value]), _never, tmp_path / "a.jsonl", "epic_binary", progress=False)
    assert not (tmp_path / "a.jsonl").exists()


def test_annotate_dataset_refuses_non_utf8_file(tmp_path):
    from ktae_lab.epicprm import annotate_dataset
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"id": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"a.jsonl, line 1: not UTF-8 text; not an annotation file"):
        annotate_dataset(_solutions(), _never, p, "epic_binary", progress=False)


# ------------------------------------------------------------------------------------------------ outside pytest

def _count(old=False):
    tally = {"tried": 0, "ok": 0, "clear": 0, "unclear": 0, "silent": 0, "traceback": 0}
    rows = []
    with tempfile.TemporaryDirectory() as d:
        ws = workspace(d)
        for case in CASES:
            if case.needs_nonroot and ROOT: continue
            outcome, rc, err = run_case(case, ws, old=old)
            tally["tried"] += 1; tally[outcome] += 1
            rows.append((outcome, " ".join(case.old if old and case.old else case.args)[:90], (err.strip().splitlines() or [""])[-1][:140]))
        Path(d, "ro").chmod(0o755)
    return tally, rows


if __name__ == "__main__":
    old = "--old" in sys.argv
    tally, rows = _count(old)
    for r in rows: print(f"{r[0]:<9} {r[1]:<90} | {r[2]}")
    print(json.dumps(tally))


# ---------------------------------------------------------------- the repository's tools, run from outside the repository
def _nb(path, *sources):
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": s}
             for i, s in enumerate(sources)]
    path.write_text(json.dumps({"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                                "nbformat": 4, "nbformat_minor": 5}, indent=1) + "\n")
    return path


def _tool(script, args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("KTAE_LAB_DEBUG", None)
    r = subprocess.run([sys.executable, str(REPO / "tools" / script), *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    return r.returncode, r.stdout, r.stderr


def _tool_cases(t):
    "(script, args, fragment of the one error line) with files made in `t`."
    torn = t / "torn.ipynb"; torn.write_text(_nb(t / "x.ipynb", "1").read_text()[:40])
    (t / "notes.txt").write_text("hello")
    (t / "site_like").mkdir(); (t / "site_like" / "keep.md").write_text("mine")
    (t / "afile").write_text("x")
    return [("execute_nbs.py", ["missing.ipynb"], "no such notebook: "),
            ("execute_nbs.py", [torn], "torn.ipynb is not a readable notebook"),
            ("execute_nbs.py", ["notes.txt"], "notes.txt is not a notebook (.ipynb)"),
            ("execute_nbs.py", [t], "no such notebook"),
            ("execute_nbs.py", [_nb(t / "fails.ipynb", "x = 1", "1 / 0")], "fails.ipynb: cell 1 failed (ZeroDivisionError: division by zero); it was left unchanged"),
            ("execute_nbs.py", ["--max-kb", "0", "x.ipynb"], "--max-kb must be >= 1"),
            ("build_docs.py", ["--out", REPO / "nbs"], "is the repository or one of its source folders"),
            ("build_docs.py", ["--out", REPO], "is the repository or one of its source folders"),
            ("build_docs.py", ["--out", t / "site_like"], "site_like is a folder with other content"),
            ("build_docs.py", ["--out", t / "afile"], "afile is an existing file; give a folder"),
            ("build_docs.py", ["--out", t], "is a folder with other content")]


def test_tools_bad_input_one_line_exit_2(tmp_path):
    before = {p: p.stat().st_mtime_ns for p in (REPO / "nbs").glob("*.ipynb")}
    for script, args, msg in _tool_cases(tmp_path):
        failing = tmp_path / "fails.ipynb"
        old = failing.read_bytes() if failing.exists() else None
        rc, out, err = _tool(script, args, tmp_path)
        lines = [l for l in err.splitlines() if l.strip() and "it/s]" not in l and "%|" not in l]
        assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"{script[:-3]}: error: ") and msg in lines[0], (script, args, err)
        assert "Traceback" not in err
        if old is not None: assert failing.read_bytes() == old             # a failing notebook is left untouched
    assert (tmp_path / "site_like" / "keep.md").read_text() == "mine"       # nothing deleted
    assert {p: p.stat().st_mtime_ns for p in (REPO / "nbs").glob("*.ipynb")} == before


def test_execute_nbs_from_outside_the_repository_writes_atomically(tmp_path, monkeypatch):
    nb = _nb(tmp_path / "ok.ipynb", "print(1 + 1)")
    rc, out, err = _tool("execute_nbs.py", ["ok.ipynb"], tmp_path)            # a relative path, from another folder
    assert rc == 0, err
    cell = json.loads(nb.read_text())["cells"][0]
    assert cell["outputs"][0]["text"] == ["2\n"]
    # a full disk while writing leaves the old notebook whole (the package's atomic writer)
    sys.path.insert(0, str(REPO / "tools"))
    import execute_nbs
    old = nb.read_text()
    import errno
    def full(*a, **k): raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError): execute_nbs._write_clean(nb, json.loads(old))
    assert nb.read_text() == old and not list(tmp_path.glob(".ok.ipynb.*"))


def test_ablate_with_a_bad_heldout_share_fails_fast(tmp_path):
    """--lab max_operand=1 --lab max_ops=2 used to loop forever drawing problems (the held-out draw took both problems);
    the split now gives each side one. A held-out share outside (0, 1) is one line, exit 2, before any work."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", "import sys; from ktae_lab.cli import main; sys.exit(main(sys.argv[1:]))", "ablate", "--algos", "grpo", "--seeds", "1", "-o", str(tmp_path / "ab"),
                        "--lab", "max_operand=1", "--lab", "max_ops=2", "--lab", "min_ops=2", "--lab", "heldout_frac=1.0", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "heldout_frac" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "ab").exists() or not any((tmp_path / "ab").rglob("*.pt"))