"""Rollout records: round trips, to_batch padding, a property test, the shipped sample (error messages: test_bad_input_cli.py)."""
import json, math, subprocess, sys
from pathlib import Path
import tempfile

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck

from ktae_lab.data import (ROLLOUT_FIELDS, SCHEMA_VERSION, RolloutBatch, read_rollouts, sample_rollouts_path,
                           to_batch, validate_rollout, write_rollouts)

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- round trip

def test_round_trip_full_record(tmp_path, make_rollout):
    rec = make_rollout
    full = rec(rollout_id=3, prompt="2+2?", response="4 <eos>", tokens=["4", "<eos>", "!"], response_mask=[1, 1, 0],
               correct=True, reference_answer="4", extracted_answer="4", truncated=True, model="m", tokenizer="t",
               eos_token_id=6, pad_token_id=0, sampling={"temperature": 0.7, "top_p": 0.95, "seed": 1},
               meta={"split": "train", "nested": [1, {"a": None}]}, schema_version="1")
    p = write_rollouts([full], tmp_path / "a" / "b" / "r.jsonl")
    assert p.exists() and p.parent.name == "b"
    df = read_rollouts(p)
    assert list(df.columns) == list(ROLLOUT_FIELDS) and len(df) == 1
    assert df.iloc[0].to_dict() == validate_rollout(full)
    assert df.attrs["path"] == str(p)


def test_append_and_overwrite(tmp_path, make_rollout):
    rec = make_rollout
    p = tmp_path / "r.jsonl"
    write_rollouts([rec(rollout_id=0), rec(rollout_id=1)], p)
    write_rollouts(rec(group_id=2, rollout_id=0), p)  # one dict, appended
    assert read_rollouts(p).group_id.tolist() == ["g", "g", 2]
    write_rollouts([rec(group_id="h")], p, append=False)
    assert read_rollouts(p).group_id.tolist() == ["h"]


def test_append_to_file_without_final_newline(tmp_path, make_rollout):
    rec = make_rollout
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(rec(rollout_id=0)))  # no trailing newline
    write_rollouts(rec(rollout_id=1), p)
    assert read_rollouts(p).rollout_id.tolist() == [0, 1]


def test_frame_round_trip_keeps_nulls_and_ints(tmp_path, make_rollout):
    rec = make_rollout
    recs = [rec(rollout_id=0, eos_token_id=7), rec(rollout_id=1), rec(group_id=4, rollout_id=None, correct=False)]
    df = read_rollouts(write_rollouts(recs, tmp_path / "a.jsonl"))
    assert df.eos_token_id.tolist() == [7, None, None]  # object column: ints stay ints, missing stays None
    df2 = read_rollouts(write_rollouts(df, tmp_path / "b.jsonl"))
    assert df2.to_dict("records") == df.to_dict("records")


def test_frame_with_nan_for_missing_optional(tmp_path):
    df = pd.DataFrame({"group_id": ["a", "b"], "token_ids": [[1], [2, 3]], "reward": [0.0, 1.0],
                       "eos_token_id": [np.nan, np.nan], "prompt": ["p", None]})
    out = read_rollouts(write_rollouts(df, tmp_path / "r.jsonl"))
    assert out.eos_token_id.tolist() == [None, None] and out.prompt.tolist() == ["p", None]


def test_blank_lines_skipped_but_counted(tmp_path, make_rollout, write_jsonl):
    rec = make_rollout
    write_lines = write_jsonl
    p = write_lines(tmp_path / "r.jsonl", [rec(), "", "   ", rec(token_ids=[1, -2])])
    with pytest.raises(ValueError, match=r"line 4, field `token_ids`"):
        read_rollouts(p)


def test_empty_file(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("")
    df = read_rollouts(p)
    assert len(df) == 0 and list(df.columns) == list(ROLLOUT_FIELDS)
    b = to_batch(df)
    assert b.responses.shape == (0, 0) and b.rewards.shape == (0,) and b.tokens is None


def test_validate_does_not_mutate_and_accepts_numpy_ints(make_rollout):
    rec = make_rollout
    r = rec(token_ids=np.array([1, 2, 3]), reward=np.float32(0.5), group_id=np.int64(3), response_mask=[True, True, False])
    out = validate_rollout(r)
    assert out["token_ids"] == [1, 2, 3] and type(out["token_ids"][0]) is int
    assert out["group_id"] == 3 and type(out["group_id"]) is int and out["reward"] == 0.5
    assert out["response_mask"] == [1, 1, 0]
    assert isinstance(r["token_ids"], np.ndarray) and "meta" not in r


# ---------------------------------------------------------------- to_batch

def test_to_batch_shapes_padding_mask(tmp_path, make_rollout):
    rec = make_rollout
    recs = [rec(group_id="a", token_ids=[1, 2, 3], reward=1, tokens=["x", "y", "z"], response_mask=[1, 0, 1]),
            rec(group_id="b", token_ids=[4], reward=0, tokens=["w"]),
            rec(group_id="a", token_ids=[], reward=0.5, tokens=[])]
    b = to_batch(write_rollouts(recs, tmp_path / "r.jsonl"), pad_id=99)
    assert isinstance(b, RolloutBatch) and len(b) == 3
    assert b.responses.dtype == torch.long and b.response_mask.dtype == torch.long and b.rewards.dtype == torch.float32
    assert b.responses.tolist() == [[1, 2, 3], [4, 99, 99], [99, 99, 99]]
    assert b.response_mask.tolist() == [[1, 0, 1], [1, 0, 0], [0, 0, 0]]
    assert b.rewards.tolist() == [1.0, 0.0, 0.5]
    assert b.index == ["a", "b", "a"]
    assert b.tokens == [["x", "y", "z"], ["w"], []]
    assert len(b.frame) == 3 and repr(b) == "RolloutBatch(B=3, L=3, groups=2, tokens=yes)"


def test_to_batch_from_plain_frame_and_partial_tokens():
    df = pd.DataFrame({"group_id": [0, 0, 1], "token_ids": [[7, 8], [9], [1, 2, 3, 4]], "reward": [1, 0, 1],
                       "tokens": [["a", "b"], None, ["c", "d", "e", "f"]]})
    b = to_batch(df)  # no response_mask column: all real positions count
    assert b.responses.tolist() == [[7, 8, 0, 0], [9, 0, 0, 0], [1, 2, 3, 4]]
    assert b.response_mask.sum(1).tolist() == [2, 1, 4]
    assert b.tokens is None and b.index == [0, 0, 1]


# ---------------------------------------------------------------- property: write -> read -> to_batch recovers tokens

group_ids_st = st.one_of(st.text(max_size=6), st.integers(-3, 3))
record_st = st.integers(0, 12).flatmap(lambda n: st.fixed_dictionaries(
    {"group_id": group_ids_st, "token_ids": st.lists(st.integers(0, 2 ** 40), min_size=n, max_size=n),
     "reward": st.floats(allow_nan=False, allow_infinity=False, width=32)},
    optional={"response_mask": st.lists(st.integers(0, 1), min_size=n, max_size=n),
              "tokens": st.lists(st.text(max_size=4), min_size=n, max_size=n),
              "prompt": st.text(max_size=10), "meta": st.dictionaries(st.text(max_size=3), st.integers())}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=st.lists(record_st, max_size=8), pad_id=st.integers(0, 5))
def test_property_write_read_to_batch(recs, pad_id):
    with tempfile.TemporaryDirectory() as d:
        df = read_rollouts(write_rollouts(recs, Path(d) / "x" / "r.jsonl"))
    assert len(df) == len(recs)
    assert df.to_dict("records") == [validate_rollout(r) for r in recs]
    b = to_batch(df, pad_id=pad_id)
    L = max((len(r["token_ids"]) for r in recs), default=0)
    assert b.responses.shape == (len(recs), L) == b.response_mask.shape
    for i, r in enumerate(recs):
        n = len(r["token_ids"])
        assert b.responses[i, :n].tolist() == r["token_ids"]
        assert (b.responses[i, n:] == pad_id).all() and (b.response_mask[i, n:] == 0).all()
        assert b.response_mask[i, :n].tolist() == r.get("response_mask", [1] * n)
    assert b.rewards.tolist() == [float(np.float32(r["reward"])) for r in recs]
    assert b.index == [r["group_id"] for r in recs]


# ---------------------------------------------------------------- the shipped sample

def test_sample_validates_and_has_mixed_groups():
    p = sample_rollouts_path()
    assert p == REPO / "data" / "sample_rollouts.jsonl"
    df = read_rollouts(p)
    sizes = df.groupby("group_id").size()
    stats = df.groupby("group_id").reward.agg(["sum", "size"])
    mixed = stats[(stats["sum"] >= 2) & (stats["size"] - stats["sum"] >= 2)]
    assert len(mixed) >= 3 and (sizes[mixed.index] >= 8).all()
    assert ((stats["sum"] == stats["size"]) & (stats["size"] >= 8)).any()  # the all-correct group
    assert set(df.reward) == {0.0, 1.0} and (df.correct == (df.reward > 0)).all()
    assert (df.extracted_answer == df.reference_answer).tolist() == df.correct.tolist()
    assert df.rollout_id.notna().all() and df.prompt.notna().all() and df.response.notna().all()
    assert (df.schema_version == "1").all() and (df.model == "hand-written").all()
    eos = df.eos_token_id.iloc[0]
    assert all(ids[-1] == eos and toks[-1] == "<eos>" for ids, toks in zip(df.token_ids, df.tokens))
    assert (df.meta.map(bool) == ~df.correct.astype(bool)).all()  # every wrong rollout names its mistake
    b = to_batch(df)
    assert b.responses.shape[0] == len(df) and b.tokens is not None


def test_sample_is_reproducible(tmp_path):
    script = (REPO / "data" / "make_sample.py").read_text()
    copy = tmp_path / "make_sample.py"
    copy.write_text(script)
    subprocess.run([sys.executable, str(copy)], check=True, capture_output=True)
    assert (tmp_path / "sample_rollouts.jsonl").read_bytes() == sample_rollouts_path().read_bytes()


def test_sample_path_missing(monkeypatch, tmp_path):
    import ktae_lab
    monkeypatch.setattr(ktae_lab, "__file__", str(tmp_path / "ktae_lab" / "__init__.py"))
    with pytest.raises(FileNotFoundError, match="ships in the ktae_lab source repository"):
        sample_rollouts_path()
