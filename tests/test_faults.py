"""Files under faults: every fault is injected by the test itself (a torn line, a second writer in another process,
a lock left by a dead process, a full disk, kill -9 of a running command) and the file must come out usable."""
import errno, json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest

from ktae_lab.data import (OutputLockedError, append_jsonl, atomic_write, output_lock, read_rollouts,
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
    p.write_text('{"a": 1}\n\xff\xfe'.encode("latin-1").decode("latin-1"), encoding="latin-1")  # non-UTF-8 garbage
    assert repair_jsonl_tail(p) > 0 and p.read_text() == '{"a": 1}\n'
    assert not (tmp_path / "x.torn").exists()


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
