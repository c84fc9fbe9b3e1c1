"""Files under faults: every fault is injected by the test itself (a torn line, a second writer in another process,
a lock left by a dead process, a full disk, kill -9 of a running command) and the file must come out usable."""
import errno, json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest

from ktae_lab.data import (OutputLockedError, append_jsonl, atomic_write, check_output_lock, output_lock, read_rollouts,
                           repair_jsonl_tail, write_rollouts)

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def dead_pid():
    "A pid that ran and has exited (so no process holds it now)."
    p = subprocess.Popen([sys.executable, "-c", "pass"]); p.wait()
    return p.pid


def disk_full_after(monkeypatch, nbytes):
    "Make os.write put `nbytes` bytes on disk, then fail with ENOSPC (a disk that fills up mid-write)."
    real = os.write
    state = {"left": nbytes}
    def write(fd, data):
        if state["left"] <= 0: raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, bytes(data[: state["left"]]))
        state["left"] -= n
        return n
    monkeypatch.setattr(os, "write", write)


# ------------------------------------------------------------------------------------------------ output_lock

def test_lock_released_on_exit_and_on_exception(tmp_path):
    out = tmp_path / "o.jsonl"
    with output_lock(out): assert (tmp_path / "o.jsonl.lock").read_text().strip() == str(os.getpid())
    assert not (tmp_path / "o.jsonl.lock").exists()
    with pytest.raises(KeyError):
        with output_lock(out): raise KeyError("boom")
    assert not (tmp_path / "o.jsonl.lock").exists()


def test_second_writer_in_another_process_is_refused(tmp_path):
    out = tmp_path / "o.jsonl"
    code = textwrap.dedent(f"""
        import sys, time
        from ktae_lab.data import output_lock
        with output_lock({str(out)!r}):
            print("locked", flush=True); time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=rf"o\.jsonl is being written by another process \(pid {holder.pid};"):
            with output_lock(out): pass
        assert issubclass(OutputLockedError, RuntimeError)
    finally:
        holder.kill(); holder.wait()
    with output_lock(out): pass  # the holder was killed: its lock is stale and taken over


def test_second_writer_in_the_same_process_is_refused_and_check_only_looks(tmp_path):
    out = tmp_path / "o.jsonl"
    check_output_lock(out)                                        # free
    with output_lock(out):
        with pytest.raises(OutputLockedError, match=rf"\(pid {os.getpid()};"):
            with output_lock(out): pass
        with pytest.raises(OutputLockedError, match="is being written by another process"): check_output_lock(out)
        assert (tmp_path / "o.jsonl.lock").read_text().strip() == str(os.getpid())   # the holder keeps its lock
    (tmp_path / "o.jsonl.lock").write_text(f"{dead_pid()}\n")
    check_output_lock(out)                                        # stale: not an error, and left for output_lock to take over
    assert (tmp_path / "o.jsonl.lock").exists()


def test_stale_lock_of_dead_pid_is_taken_over(tmp_path):
    out = tmp_path / "o.jsonl"
    (tmp_path / "o.jsonl.lock").write_text(f"{dead_pid()}\n")
    with output_lock(out): assert (tmp_path / "o.jsonl.lock").read_text().strip() == str(os.getpid())
    (tmp_path / "o.jsonl.lock").write_text("")  # empty lock: its owner died before writing its pid
    with output_lock(out): pass
    assert not (tmp_path / "o.jsonl.lock").exists()


def test_lock_in_unwritable_folder_is_a_clear_error(tmp_path):
    if os.geteuid() == 0: pytest.skip("root ignores folder permissions")
    ro = tmp_path / "ro"; ro.mkdir(); ro.chmod(0o500)
    try:
        with pytest.raises(OSError, match=r"cannot create the lock file .*ro/o\.jsonl\.lock: Permission denied"):
            with output_lock(ro / "o.jsonl"): pass
    finally: ro.chmod(0o700)


# ------------------------------------------------------------------------------------------------ repair_jsonl_tail

@pytest.mark.parametrize("cut", [1, 5, 17, 30])
def test_torn_tail_repaired_at_any_cut(tmp_path, cut):
    p = tmp_path / "r.jsonl"
    lines = [json.dumps({"group_id": "g", "rollout_id": i, "token_ids": [i, 2, 3], "reward": 1.0}) + "\n" for i in range(3)]
    full = "".join(lines)
    keep = len(lines[0]) + len(lines[1])
    p.write_text(full[: keep + cut])  # injected fault: the third line is cut after `cut` bytes
    assert repair_jsonl_tail(p) == cut
    assert p.read_text() == full[:keep]
    assert (tmp_path / "r.jsonl.torn").read_text() == full[keep: keep + cut] + "\n"
    assert len(read_rollouts(p)) == 2
    assert repair_jsonl_tail(p) == 0


def test_repair_intact_empty_missing_and_newline_torn(tmp_path):
    p = tmp_path / "r.jsonl"
    assert repair_jsonl_tail(p) == 0  # missing
    p.write_text(""); assert repair_jsonl_tail(p) == 0
    p.write_text('{"a": 1}\n'); assert repair_jsonl_tail(p) == 0 and p.read_text() == '{"a": 1}\n'
    p.write_text('{"a": 1}\n{"a": 2'+ "\n")  # a torn line that got a newline after it
    assert repair_jsonl_tail(p) == 8 and p.read_text() == '{"a": 1}\n'
    p.write_bytes(b'{"a": 1}\n{"b": "\xff\xfe')  # cut inside a line that is not even UTF-8
    assert repair_jsonl_tail(p) == 9 and p.read_text() == '{"a": 1}\n'
    p.write_bytes(b'{"a": 1}\n{"b": "caf\xe9"}\n')  # complete (Latin-1) line: the reader reports it, repair keeps it
    assert repair_jsonl_tail(p) == 0 and p.read_bytes().endswith(b'"caf\xe9"}\n')


def test_repair_of_a_long_last_line_spanning_blocks(tmp_path):
    p = tmp_path / "r.jsonl"
    first = json.dumps({"a": 1}) + "\n"
    p.write_text(first + '{"b": "' + "x" * 200_000)
    assert repair_jsonl_tail(p) == 200_007 and p.read_text() == first


# ------------------------------------------------------------------------------------------------ atomic_write

def test_atomic_write_keeps_old_file_when_write_fails(tmp_path, monkeypatch):
    p = atomic_write(tmp_path / "m.csv", "a,b\n1,2\n")
    def boom(*a): raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", boom)  # injected: the disk fills while the new file is flushed
    with pytest.raises(OSError, match="No space left"):
        atomic_write(p, "a,b\n3,4\n")
    assert p.read_text() == "a,b\n1,2\n"
    assert [f.name for f in tmp_path.iterdir()] == ["m.csv"]  # no temporary file left behind


def test_atomic_write_keeps_mode_and_rejects_bad_data(tmp_path):
    p = atomic_write(tmp_path / "m.csv", b"x")
    p.chmod(0o640)
    atomic_write(p, "y")
    assert p.stat().st_mode & 0o777 == 0o640 and p.read_text() == "y"
    with pytest.raises(TypeError, match="`data` must be str or bytes"): atomic_write(p, 3)


# ------------------------------------------------------------------------------------------------ append_jsonl

@pytest.mark.parametrize("nbytes", [0, 1, 9, 25])
def test_disk_full_mid_append_leaves_strict_jsonl(tmp_path, monkeypatch, nbytes):
    p = append_jsonl(tmp_path / "r.jsonl", [{"i": 0}, {"i": 1}])
    before = p.read_bytes()
    disk_full_after(monkeypatch, nbytes)
    with pytest.raises(OSError, match=r"could not append to .*r\.jsonl: No space left on device; the partial write was removed") as e:
        append_jsonl(p, [{"i": 2, "pad": "x" * 20}, {"i": 3}])
    assert e.value.errno == errno.ENOSPC and "\n" not in str(e.value)
    monkeypatch.undo()
    assert p.read_bytes() == before
    append_jsonl(p, [{"i": 2}])  # the disk has room again: the run resumes
    assert [json.loads(l)["i"] for l in p.read_text().splitlines()] == [0, 1, 2]


def test_append_repairs_a_torn_tail_first(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"i": 0}\n{"i": 1')
    with pytest.warns(UserWarning, match="removed a torn last line"):
        append_jsonl(p, {"i": 1})
    assert p.read_text() == '{"i": 0}\n{"i": 1}\n'
    with pytest.raises(ValueError): append_jsonl(p, {"x": float("nan")})  # nothing written for a bad record
    assert p.read_text() == '{"i": 0}\n{"i": 1}\n'


def test_write_rollouts_disk_full_then_resume(tmp_path, monkeypatch):
    p = write_rollouts([{"group_id": "g", "rollout_id": 0, "token_ids": [1], "reward": 1.0}], tmp_path / "r.jsonl")
    disk_full_after(monkeypatch, 10)
    with pytest.raises(OSError, match="No space left on device"):
        write_rollouts([{"group_id": "g", "rollout_id": 1, "token_ids": [2], "reward": 0.0}], p)
    monkeypatch.undo()
    assert read_rollouts(p).rollout_id.tolist() == [0]


# ------------------------------------------------------------------------------------------------ kill -9, then resume

def start_and_kill(code, path, min_lines, timeout=120):
    "Run `code` in a subprocess writing `path`; SIGKILL it once `path` holds `min_lines` lines. Returns the lines then."
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None: raise AssertionError(f"finished before the kill: {proc.stderr.read().decode()[-2000:]}")
            if Path(path).exists() and Path(path).read_bytes().count(b"\n") >= min_lines: break
            time.sleep(0.02)
        else: raise AssertionError("the subprocess never wrote enough")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill(); proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return proc.pid


ANNOTATE = """
import sys, time, numpy as np, pandas as pd
from ktae_lab.epicprm import annotate_dataset, Completion
SLOW = {slow}
def comp(q, prefix, n):  # deterministic in (question, prefix), whatever the call order
    if SLOW: time.sleep(0.02)
    rng = np.random.default_rng([len(prefix), sum(map(ord, q))])
    p = 0.8 if len(prefix) <= 2 else 0.05
    return [Completion("t", bool(x), -0.3, 20) for x in rng.random(n) < p]
STEPS = [f"Step {{i + 1}}: s{{i}}" for i in range(9)]
df = pd.DataFrame(dict(id=[f"s{{i}}" for i in range(10)], question=[f"q{{i // 3}}" for i in range(10)], reference_answer="1",
                       steps=[STEPS[: 4 + i % 5] for i in range(10)], correct=[False] * 10))
"""


def test_annotate_dataset_killed_then_resumed(tmp_path):
    import pandas as pd
    path = tmp_path / "ann.jsonl"
    pid = start_and_kill(ANNOTATE.format(slow=True) + f"annotate_dataset(df, comp, {str(path)!r}, 'epic_binary', progress=False)\n",
                         path, min_lines=3)
    assert (tmp_path / "ann.jsonl.lock").read_text().strip() == str(pid)       # the killed writer's lock is left behind
    with path.open("ab") as f: f.write(b'{"id": "s9", "question": "q3", "sta')   # and, as if killed mid-write, a torn line
    ns = {}
    exec(ANNOTATE.format(slow=False), ns)
    with pytest.warns(UserWarning, match="removed a torn last line"):
        resumed = ns["annotate_dataset"](ns["df"], ns["comp"], path, "epic_binary", progress=False)
    full = ns["annotate_dataset"](ns["df"], ns["comp"], None, "epic_binary", progress=False)
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    ids = [r["id"] for r in lines]
    assert sorted(ids) == sorted(full.id) and len(ids) == len(set(ids))        # nothing lost, nothing twice
    assert resumed.first_error.tolist() == full.first_error.tolist() and resumed.labels.tolist() == full.labels.tolist()
    assert not (tmp_path / "ann.jsonl.lock").exists()


def test_annotate_dataset_second_writer_refused(tmp_path):
    path = tmp_path / "ann.jsonl"
    code = ANNOTATE.format(slow=True) + f"annotate_dataset(df, comp, {str(path)!r}, 'epic_binary', progress=False)\n"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=ENV, stderr=subprocess.PIPE)
    try:
        t0 = time.monotonic()
        while not (tmp_path / "ann.jsonl.lock").exists() and time.monotonic() - t0 < 60: time.sleep(0.02)
        ns = {}
        exec(ANNOTATE.format(slow=False), ns)
        with pytest.raises(OutputLockedError, match=rf"ann\.jsonl is being written by another process \(pid {proc.pid};"):
            ns["annotate_dataset"](ns["df"], ns["comp"], path, "epic_binary", progress=False)
    finally:
        proc.kill(); proc.wait()


def test_annotate_dataset_disk_full_then_resume(tmp_path, monkeypatch):
    ns = {}
    exec(ANNOTATE.format(slow=False), ns)
    path = tmp_path / "ann.jsonl"
    real = os.write
    calls = {"n": 0}
    def write(fd, data):  # the third record's append finds the disk full after 7 bytes
        calls["n"] += bytes(data[:1]) == b"{"
        if calls["n"] == 3 and bytes(data[:1]) == b"{": real(fd, bytes(data[:7])); raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)
    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError, match="could not append to .*ann.jsonl: No space left on device"):
        ns["annotate_dataset"](ns["df"], ns["comp"], path, "epic_binary", progress=False)
    monkeypatch.undo()
    assert [json.loads(l)["id"] for l in path.read_text().splitlines()] == ["s0", "s1"]   # strict JSONL, two records
    res = ns["annotate_dataset"](ns["df"], ns["comp"], path, "epic_binary", progress=False)
    assert len(res) == 10 and len(path.read_text().splitlines()) == 10


def test_cli_score_disk_full_is_one_line_and_keeps_old_table(tmp_path, monkeypatch, sample_path, run_cli):
    out = tmp_path / "t.csv"
    assert run_cli(["score", sample_path, "-o", out])[0] == 0
    before = out.read_bytes()
    def full(*a): raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    rc, _, err = run_cli(["score", sample_path, "-o", out, "--preset", "clean"])
    assert rc == 2 and err == f"ktae-lab score: error: {out}: No space left on device\n"     # the file is named
    monkeypatch.undo()
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


ABLATE = """
import sys, time, torch
import ktae_lab.lab as lab
from ktae_lab.lab import LabConfig, run_ablation
torch.set_num_threads(1)
TOK = lab.lab_tokenizer()
def verifier(tokenizer, responses, response_mask, answers, marker="#"):  # deterministic in the responses: mixed groups
    B, dev = responses.shape[0], responses.device
    c = ((responses * response_mask).sum(1) % 2).float()
    ones = torch.ones(B, dtype=torch.bool, device=dev)
    return dict(reward=c, finished=ones, uses_steps=ones)
lab.score_responses = verifier
lab.prepare_warm_start = lambda seed, cfg, progress=False: {{"state": lab._new_policy(TOK, cfg, seed).state_dict()}}
SLOW = {slow}
if SLOW:
    real_step = lab.rl_step
    def slow_step(*a, **k): time.sleep(0.15); return real_step(*a, **k)
    lab.rl_step = slow_step
cfg = LabConfig(n_train=300, n_heldout=16, min_ops=2, max_ops=2, max_operand=3, steps=6, prompts_per_step=4, group_size=4,
                max_new_tokens=12, overlong_buffer=4, eval_every=2, warm_steps=0, warm_batch=16, progress=False)
"""


def test_ablate_killed_then_resumed(tmp_path, monkeypatch):
    import pandas as pd
    import ktae_lab.lab as lab
    for name in ("score_responses", "prepare_warm_start", "rl_step"):   # the fakes below patch the module: restore after
        monkeypatch.setattr(lab, name, getattr(lab, name))
    out = tmp_path / "runs"
    code = ABLATE.format(slow=True) + f"run_ablation(['grpo', 'grpo+ktae'], 2, cfg, {str(out)!r}, progress=False)\n"
    start_and_kill(code, out / "metrics.csv", min_lines=1 + 7, timeout=300)    # header + one finished run, then kill
    partial = pd.read_csv(out / "metrics.csv")                                 # complete CSV (written atomically)
    assert len(partial) % 7 == 0 and not partial.duplicated(["algo", "seed", "step"]).any()
    ns = {}
    exec(ABLATE.format(slow=False), ns)
    df = ns["run_ablation"](["grpo", "grpo+ktae"], 2, ns["cfg"], out, progress=False)
    final = pd.read_csv(out / "metrics.csv")
    assert len(final) == 2 * 2 * 7 and not final.duplicated(["algo", "seed", "step"]).any()  # nothing lost, nothing twice
    keep = ["algo", "seed", "step", "accuracy"]
    merged = partial[keep].merge(final[keep], on=["algo", "seed", "step"], suffixes=("_before", "_after"))
    assert len(merged) == len(partial) and (merged.accuracy_before.fillna(-1) == merged.accuracy_after.fillna(-1)).all()
    assert not (out / "metrics.csv.lock").exists()


# ------------------------------------------------------------------------------------------------ ktae-lab sample

@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    "The tiny random model of ktae_lab.lm saved as a model directory, so `ktae-lab sample --model DIR` can load it."
    import transformers
    from ktae_lab.lm import tiny_random_lm
    d = tmp_path_factory.mktemp("tiny_model")
    transformers.logging.set_verbosity_error()
    model, tok, _ = tiny_random_lm()
    model.save_pretrained(d); tok.save_pretrained(d)
    return d


def _problems(path, n):
    path.write_text("".join(json.dumps({"problem_id": f"p{i:02d}", "question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(n)))
    return path


SAMPLE = """
import sys, time, torch
torch.set_num_threads(1)
import ktae_lab.lm as lm
SLOW = {slow}
if SLOW:  # a slower model, so that the kill lands in the middle of the run
    real = lm.generate
    def slow_generate(*a, **k): time.sleep(0.1); return real(*a, **k)
    lm.generate = slow_generate
    import ktae_lab.sampling as s; s.generate = slow_generate
from ktae_lab.cli import main
sys.exit(main({args!r}))
"""


def _sample_args(model, problems, out):
    return ["sample", "--model", str(model), "--problems", str(problems), "-o", str(out), "-G", "3", "--max-new-tokens", "6",
            "--problems-per-batch", "2", "--no-progress", "--seed", "5"]


def test_sample_killed_then_resumed_is_byte_identical(tmp_path, tiny_model_dir, run_cli):
    problems = _problems(tmp_path / "problems.jsonl", 24)
    ref = tmp_path / "ref.jsonl"
    assert run_cli(_sample_args(tiny_model_dir, problems, ref))[0] == 0          # uninterrupted
    out = tmp_path / "out.jsonl"
    args = _sample_args(tiny_model_dir, problems, out)
    start_and_kill(SAMPLE.format(slow=True, args=args), out, min_lines=2 * 3 * 2)  # two batches written, then kill -9
    with out.open("ab") as f: f.write(b'{"group_id": "p9')                         # as if killed mid-line
    rc, _, err = run_cli(args)                                                      # the same command resumes
    assert rc == 0, err
    assert out.read_bytes() == ref.read_bytes()                                     # nothing lost, nothing twice, same draws
    assert (tmp_path / "out.jsonl.torn").read_text() == '{"group_id": "p9\n'
    assert not (tmp_path / "out.jsonl.lock").exists()


def test_sample_second_writer_refused_before_loading(tmp_path, tiny_model_dir, run_cli):
    problems = _problems(tmp_path / "problems.jsonl", 40)
    out = tmp_path / "out.jsonl"
    args = _sample_args(tiny_model_dir, problems, out)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SAMPLE.format(slow=True, args=args))], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t0 = time.monotonic()
        while not (tmp_path / "out.jsonl.lock").exists() and time.monotonic() - t0 < 120: time.sleep(0.02)
        rc, _, err = run_cli(args)
        assert rc == 2 and err == (f"ktae-lab sample: error: {out} is being written by another process (pid {proc.pid}; "
                                   f"lock file {out}.lock); wait for it to finish, or delete the lock file if that process is gone\n")
    finally:
        proc.kill(); proc.wait()


def test_sample_disk_full_one_line_then_resume(tmp_path, tiny_model_dir, run_cli, monkeypatch):
    problems = _problems(tmp_path / "problems.jsonl", 6)
    ref, out = tmp_path / "ref.jsonl", tmp_path / "out.jsonl"
    assert run_cli(_sample_args(tiny_model_dir, problems, ref))[0] == 0
    real = os.write
    seen = {"n": 0}
    def write(fd, data):  # the second batch of records finds the disk full after 100 bytes
        if bytes(data[:1]) == b"{":
            seen["n"] += 1
            if seen["n"] == 2: real(fd, bytes(data[:100])); raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)
    monkeypatch.setattr(os, "write", write)
    rc, _, err = run_cli(_sample_args(tiny_model_dir, problems, out))
    monkeypatch.undo()
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"ktae-lab sample: error: could not append to {out}: No space left")
    assert out.read_bytes() == ref.read_bytes()[: len(out.read_bytes())] and out.read_bytes().endswith(b"\n")
    assert run_cli(_sample_args(tiny_model_dir, problems, out))[0] == 0                  # space again: resume
    assert out.read_bytes() == ref.read_bytes()


# ------------------------------------------------------------------------------------------------ crafted checkpoints
# A `.pt` file is a pickle: one that names a callable would run it on load. Every loader of the package reads with
# weights_only=True; a crafted file must create nothing and get one clear error naming it.

class _MakesAFile:
    "Unpickling this calls os.mkdir(target): the side effect a crafted checkpoint would have if it were loaded unsafely."
    def __init__(self, target): self.target = str(target)
    def __reduce__(self): return (os.mkdir, (self.target,))


def _crafted(path, target, wrap=lambda x: x):
    import torch
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(wrap(_MakesAFile(target)), path)
    return path


def _refused(call, path, target):
    from ktae_lab.data import UnsafeCheckpointError
    with pytest.raises(UnsafeCheckpointError) as e: call()
    assert str(path) in str(e.value) and "could run code: refused" in str(e.value) and "GLOBAL" in str(e.value)
    assert not Path(target).exists(), "the crafted checkpoint ran code"


def test_crafted_prm_checkpoint_runs_nothing(tmp_path):
    from ktae_lab.prm import load_prm
    from ktae_lab.task import lab_tokenizer
    f = _crafted(tmp_path / "evil.pt", tmp_path / "pwned", lambda x: {"format": 1, "state": x})
    _refused(lambda: load_prm(f, lab_tokenizer()), f, tmp_path / "pwned")


def test_crafted_lab_run_checkpoint_runs_nothing(tmp_path):
    import ktae_lab.lab as lab
    cfg = lab.LabConfig(n_train=60, n_heldout=8, min_ops=2, max_ops=2, max_operand=3, steps=3, prompts_per_step=2, group_size=2,
                        max_new_tokens=6, overlong_buffer=2, eval_every=1, warm_steps=0, warm_batch=4, d_model=16, n_heads=2, progress=False)
    warm = {"state": lab._new_policy(lab.lab_tokenizer(), cfg, 0).state_dict()}
    f = _crafted(tmp_path / "run.pt", tmp_path / "pwned", lambda x: {"identity": x})
    _refused(lambda: lab.train_run("grpo", 0, cfg, warm, checkpoint=f), f, tmp_path / "pwned")


def test_crafted_files_in_a_resumed_ablation_folder_run_nothing(tmp_path):
    import ktae_lab.lab as lab
    cfg = lab.LabConfig(n_train=60, n_heldout=8, min_ops=2, max_ops=2, max_operand=3, steps=3, prompts_per_step=2, group_size=2,
                        max_new_tokens=6, overlong_buffer=2, eval_every=1, warm_steps=0, warm_batch=4, d_model=16, n_heads=2, progress=False)
    out = tmp_path / "ab"
    f = _crafted(out / "checkpoints" / "warm-seed0.pt", tmp_path / "pwned", lambda x: {"state": x})   # the warm start
    _refused(lambda: lab.run_ablation(["grpo"], 1, cfg, out, progress=False), f, tmp_path / "pwned")
    assert f.exists()                                  # a planted file is refused, not silently deleted
    import torch
    torch.save({"state": lab._new_policy(lab.lab_tokenizer(), cfg, 0).state_dict()}, f)   # a sound warm start this time
    g = _crafted(out / "checkpoints" / "grpo-seed0.pt", tmp_path / "pwned", lambda x: {"identity": x})  # a run checkpoint
    _refused(lambda: lab.run_ablation(["grpo"], 1, cfg, out, progress=False), g, tmp_path / "pwned")


def test_crafted_prm_path_on_the_command_line_runs_nothing(tmp_path, run_cli):
    f = _crafted(tmp_path / "evil.pt", tmp_path / "pwned", lambda x: {"format": 1, "state": x})
    rc, _, err = run_cli(["ablate", "--algos", "grpo+prm", "--seeds", "1", "-o", tmp_path / "ab", "--lab", f"prm_path={f}", "--no-progress"])
    assert rc == 2 and err.startswith("ktae-lab ablate: error: ") and len(err.strip().splitlines()) == 1
    assert str(f) in err and "could run code" in err and not (tmp_path / "pwned").exists()


def test_crafted_policy_in_a_resumed_prm_folder_runs_nothing(tmp_path):
    from ktae_lab.prm_lab import PRMLabConfig, run_prm_pipeline
    f = _crafted(tmp_path / "prm" / "seed0" / "policy.pt", tmp_path / "pwned")
    _refused(lambda: run_prm_pipeline(tmp_path / "prm", cfg=PRMLabConfig.quick(), device="cpu", progress=False, seeds=1), f, tmp_path / "pwned")


def test_no_unsafe_loading_anywhere_in_the_package():
    "Every torch.load passes weights_only=True; nothing unpickles (pickle, joblib, np.load(allow_pickle), pd.read_pickle)."
    import re
    srcs = sorted((REPO / "ktae_lab").glob("*.py")) + sorted((REPO / "tools").glob("*.py"))
    srcs += sorted((REPO / "nbs").rglob("*.ipynb"))
    bad = []
    for f in srcs:
        text = f.read_text()
        if f.suffix == ".ipynb":
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "code")
        for m in re.finditer(r"torch\.load\(([^()]|\([^()]*\))*\)", text):
            if "weights_only=True" not in m.group(0): bad.append(f"{f.name}: {m.group(0)[:80]}")
        for pat in (r"\bpickle\.loads?\(", r"\bjoblib\.load\(", r"allow_pickle\s*=\s*True", r"read_pickle\(", r"\bdill\.", r"\bcloudpickle\."):
            bad += [f"{f.name}: {m.group(0)}" for m in re.finditer(pat, text)]
    assert not bad, f"unsafe loading: {bad}"
    assert len(srcs) > 20


def test_stale_lock_takeover_has_one_winner(tmp_path):
    "30 trials, each with 6 processes racing to take over the same stale lock: at most one may hold it at a time (2 of 30 failed before)."
    code = textwrap.dedent("""
        import os, sys, time
        import ktae_lab.data as data
        from ktae_lab.data import output_lock, OutputLockedError
        real = data._lock_pid
        def slow_lock_pid(*a, **k):   # descheduled right after reading the stale pid: widens the takeover race
            pid = real(*a, **k); time.sleep(0.02); return pid
        data._lock_pid = slow_lock_pid
        folder = sys.argv[1]
        open(f"{folder}/ready{os.getpid()}", "w").close()          # imported: the parent starts the race once all six are
        while not os.path.exists(f"{folder}/go"): time.sleep(0.01)
        go = float(open(f"{folder}/go").read())
        for trial in range(30):
            time.sleep(max(0.0, go + 0.25 * trial - time.time()))   # sleep, not spin: six spinning processes held both cores
            try:
                with output_lock(f"{folder}/o{trial}.jsonl"):
                    with open(f"{folder}/log{trial}", "a") as f: f.write(f"in {os.getpid()}\\n")
                    time.sleep(0.1)
                    with open(f"{folder}/log{trial}", "a") as f: f.write(f"out {os.getpid()}\\n")
            except OutputLockedError: pass
    """)
    for trial in range(30): (tmp_path / f"o{trial}.jsonl.lock").write_text(f"{dead_pid()}\n")   # stale locks to take over
    ps = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=ENV) for _ in range(6)]
    t0 = time.time()
    while len(list(tmp_path.glob("ready*"))) < 6 and time.time() - t0 < 120 and all(p.poll() is None for p in ps): time.sleep(0.05)
    (tmp_path / "go.tmp").write_text(str(time.time() + 0.3)); (tmp_path / "go.tmp").rename(tmp_path / "go")
    for p in ps: assert p.wait(timeout=120) == 0
    overlaps = 0
    for trial in range(30):
        held, lines = 0, (tmp_path / f"log{trial}").read_text().splitlines()
        assert lines, f"trial {trial}: nobody took the stale lock"
        for line in lines:
            held += 1 if line.startswith("in") else -1
            overlaps += held > 1
    assert overlaps == 0, f"{overlaps} times two processes held the lock together"


# ------------------------------------------------------------------------------------------------ caches of the PRM pipeline

def test_truncated_solutions_cache_is_redone(tmp_path, capsys):
    "train_solutions.csv cut mid-line (or missing rows) was used as is; it is sampled again, giving the whole table."
    import pandas as pd
    import ktae_lab.lab as lab
    from ktae_lab import prm_lab
    lc = lab.LabConfig(n_train=60, n_heldout=8, min_ops=2, max_ops=2, max_operand=3, max_new_tokens=8, overlong_buffer=2, d_model=16, n_heads=2, progress=False)
    train, _ = lab.lab_data(lc)
    pol = lab._new_policy(lab.lab_tokenizer(), lc, 0).eval()
    problems = train.iloc[:5].reset_index(drop=True)
    whole = prm_lab._seed_samples(tmp_path, "train", pol, problems, 4, 0, lc)
    f = tmp_path / "train_solutions.csv"
    data = f.read_bytes()
    assert len(whole) == 20
    for cut in (data[: len(data) // 2], data[: data.rfind(b"\n", 0, len(data) - 1) + 1], data[:30], b"\xff\xfe garbage"):
        f.write_bytes(cut)
        again = prm_lab._seed_samples(tmp_path, "train", pol, problems, 4, 0, lc)
        pd.testing.assert_frame_equal(again, whole)
        assert f.read_bytes() == data and "damaged cache" in capsys.readouterr().err
    f.write_bytes(data)
    assert "damaged" not in capsys.readouterr().err
    prm_lab._seed_samples(tmp_path, "train", pol, problems, 4, 0, lc)
    assert capsys.readouterr().err == ""                                     # a whole cache is read back silently
