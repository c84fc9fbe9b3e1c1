"""Rollout records: round trips, every bad-input error, to_batch padding, a property test, the shipped sample."""
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


def rec(**kw):
    base = {"group_id": "g", "token_ids": [5, 6, 7], "reward": 1.0}
    base.update(kw)
    return base


def write_lines(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------- round trip

def test_round_trip_full_record(tmp_path):
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


def test_append_and_overwrite(tmp_path):
    p = tmp_path / "r.jsonl"
    write_rollouts([rec(rollout_id=0), rec(rollout_id=1)], p)
    write_rollouts(rec(group_id=2, rollout_id=0), p)  # one dict, appended
    assert read_rollouts(p).group_id.tolist() == ["g", "g", 2]
    write_rollouts([rec(group_id="h")], p, append=False)
    assert read_rollouts(p).group_id.tolist() == ["h"]


def test_append_to_file_without_final_newline(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(rec(rollout_id=0)))  # no trailing newline
    write_rollouts(rec(rollout_id=1), p)
    assert read_rollouts(p).rollout_id.tolist() == [0, 1]


def test_frame_round_trip_keeps_nulls_and_ints(tmp_path):
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


def test_blank_lines_skipped_but_counted(tmp_path):
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


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_rollouts(tmp_path / "nope.jsonl")


def test_validate_does_not_mutate_and_accepts_numpy_ints():
    r = rec(token_ids=np.array([1, 2, 3]), reward=np.float32(0.5), group_id=np.int64(3), response_mask=[True, True, False])
    out = validate_rollout(r)
    assert out["token_ids"] == [1, 2, 3] and type(out["token_ids"][0]) is int
    assert out["group_id"] == 3 and type(out["group_id"]) is int and out["reward"] == 0.5
    assert out["response_mask"] == [1, 1, 0]
    assert isinstance(r["token_ids"], np.ndarray) and "meta" not in r


# ---------------------------------------------------------------- bad input: every error names file, line, field

BAD = [
    ('{"group_id": "g", "token_ids": [1, 2], "reward": 1', r"line 2: not valid JSON"),
    ("[1, 2, 3]", r"line 2: expected a JSON object, got list"),
    (rec(token_ids=[1, 2.5]), r"line 2, field `token_ids`: token ids must be integers; position 1 holds 2.5"),
    (rec(token_ids=[1, "2"]), r"line 2, field `token_ids`: token ids must be integers; position 1 holds '2'"),
    (rec(token_ids=[3, -1, 4]), r"line 2, field `token_ids`: token ids must be >= 0; position 1 holds -1"),
    (rec(token_ids=[True, False]), r"line 2, field `token_ids`: token ids must be integers, got booleans"),
    (rec(token_ids=[[1, 2], [3, 4]]), r"line 2, field `token_ids`: token ids must be integers; position 0"),
    (rec(token_ids=[2 ** 70]), r"line 2, field `token_ids`: token ids must fit in int64"),
    (rec(token_ids="1 2 3"), r"line 2, field `token_ids`: expected a list of token ids, got str"),
    ('{"group_id": "g", "token_ids": [1], "reward": NaN}', r"line 2, field `reward`: must be finite, got nan"),
    ('{"group_id": "g", "token_ids": [1], "reward": Infinity}', r"line 2, field `reward`: must be finite, got inf"),
    ('{"group_id": "g", "token_ids": [1], "reward": -Infinity}', r"line 2, field `reward`: must be finite, got -inf"),
    (rec(reward="1.0"), r"line 2, field `reward`: expected a number, got str"),
    (rec(reward=True), r"line 2, field `reward`: expected a number, got bool"),
    (rec(response_mask=[1, 2, 0]), r"line 2, field `response_mask`: must hold only 0 and 1; position 1 holds 2"),
    (rec(response_mask=[1, -1, 0]), r"line 2, field `response_mask`: must hold only 0 and 1; position 1 holds -1"),
    (rec(response_mask=[1, 0.5, 0]), r"line 2, field `response_mask`: 0/1 mask values must be integers; position 1"),
    (rec(response_mask=[1, 1]), r"line 2, field `response_mask`: has 2 entries but `token_ids` has 3"),
    (rec(tokens=["a", "b"]), r"line 2, field `tokens`: has 2 entries but `token_ids` has 3"),
    (rec(tokens=["a", "b", 3]), r"line 2, field `tokens`: expected a list of strings"),
    ({"token_ids": [1], "reward": 1.0}, r"line 2, field `group_id`: missing required field"),
    ({"group_id": "g", "reward": 1.0}, r"line 2, field `token_ids`: missing required field"),
    ({"group_id": "g", "token_ids": [1]}, r"line 2, field `reward`: missing required field"),
    (rec(reward=None), r"line 2, field `reward`: missing required field"),
    (rec(group_id=1.5), r"line 2, field `group_id`: expected a str or int, got float"),
    (rec(group_id=[1]), r"line 2, field `group_id`: expected a str or int, got list"),
    (rec(rewards=1.0), r"line 2, field `rewards`: unknown field; known fields: group_id"),
    (rec(prompt=3), r"line 2, field `prompt`: expected a string or null, got int"),
    (rec(reference_answer=18), r"line 2, field `reference_answer`: expected a string or null, got int"),
    (rec(correct="yes"), r"line 2, field `correct`: expected true, false or null"),
    (rec(truncated=1), r"line 2, field `truncated`: expected true or false"),
    (rec(eos_token_id=-1), r"line 2, field `eos_token_id`: must be >= 0"),
    (rec(pad_token_id="0"), r"line 2, field `pad_token_id`: expected an int or null"),
    (rec(rollout_id=1.0), r"line 2, field `rollout_id`: expected an int or null"),
    (rec(sampling=[0.7]), r"line 2, field `sampling`: expected an object or null"),
    (rec(meta="note"), r"line 2, field `meta`: expected an object"),
]


@pytest.mark.parametrize("line,msg", BAD, ids=[m.split("`")[1] if "`" in m else m[:30] for _, m in BAD])
def test_bad_line_names_file_line_field(tmp_path, line, msg):
    p = write_lines(tmp_path / "bad.jsonl", [rec(rollout_id=0), line])
    with pytest.raises(ValueError, match=msg) as e:
        read_rollouts(p)
    assert str(e.value).startswith(str(p) + ", line 2")


def test_unsupported_and_mixed_schema_version(tmp_path):
    p = write_lines(tmp_path / "v2.jsonl", [rec(schema_version="2")])
    with pytest.raises(ValueError, match=r"v2.jsonl, line 1, field `schema_version`: unsupported version '2'"):
        read_rollouts(p)
    p = write_lines(tmp_path / "v1.jsonl", [rec(schema_version=1)])
    with pytest.raises(ValueError, match=r"line 1, field `schema_version`: unsupported version 1;"):
        read_rollouts(p)
    p = write_lines(tmp_path / "mix.jsonl", [rec(schema_version="1"), rec(), rec(schema_version="2")])
    with pytest.raises(ValueError, match=r"mix.jsonl, line 3, field `schema_version`: '2' differs from '1' on line 1"):
        read_rollouts(p)
    # an omitted version is the current one, not a mix
    assert len(read_rollouts(write_lines(tmp_path / "ok.jsonl", [rec(), rec(schema_version=SCHEMA_VERSION)]))) == 2


def test_duplicate_rollout_id(tmp_path):
    p = write_lines(tmp_path / "d.jsonl", [rec(rollout_id=0), rec(rollout_id=1), rec(group_id="h", rollout_id=0),
                                           rec(rollout_id=1)])
    with pytest.raises(ValueError, match=r"line 4, field `rollout_id`: duplicate rollout_id 1 in group 'g' \(first on line 2\)"):
        read_rollouts(p)


def test_write_rejects_bad_record_and_leaves_file_untouched(tmp_path):
    p = write_rollouts([rec()], tmp_path / "r.jsonl")
    before = p.read_text()
    with pytest.raises(ValueError, match=r"write_rollouts: record 1 \(0-based\): field `reward`: must be finite"):
        write_rollouts([rec(), rec(reward=math.nan)], p)
    assert p.read_text() == before


def test_validate_without_line_and_non_dict():
    with pytest.raises(ValueError, match=r"^field `token_ids`: token ids must be >= 0"):
        validate_rollout(rec(token_ids=[-5]))
    with pytest.raises(ValueError, match=r"^line 9: expected a JSON object, got str"):
        validate_rollout("x", line=9)


# ---------------------------------------------------------------- to_batch

def test_to_batch_shapes_padding_mask(tmp_path):
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


def test_to_batch_bad_inputs():
    good = pd.DataFrame({"group_id": ["a"], "token_ids": [[1, 2]], "reward": [1.0]})
    with pytest.raises(TypeError, match="`pad_id` must be an int"):
        to_batch(good, pad_id=0.0)
    with pytest.raises(TypeError, match="`df_or_path` must be a DataFrame or a path"):
        to_batch([{"group_id": "a"}])
    with pytest.raises(ValueError, match=r"lacks the required column\(s\) \['reward'\]"):
        to_batch(good.drop(columns="reward"))
    with pytest.raises(ValueError, match="`token_ids` must hold lists of integers"):
        to_batch(good.assign(token_ids=[[1.5, 2]]))
    with pytest.raises(ValueError, match="`token_ids` holds negative ids"):
        to_batch(good.assign(token_ids=[[1, -2]]))
    with pytest.raises(ValueError, match="row 0: `response_mask` has 1 entries but `token_ids` has 2"):
        to_batch(good.assign(response_mask=[[1]]))
    with pytest.raises(ValueError, match="`response_mask` must hold only 0 and 1"):
        to_batch(good.assign(response_mask=[[1, 3]]))
    with pytest.raises(ValueError, match="row 0: `reward` inf is NaN, infinite or beyond the float32 range"):
        to_batch(good.assign(reward=[math.inf]))
    with pytest.raises(ValueError, match="row 1: `reward` 1e\\+39 is NaN, infinite or beyond the float32 range"):
        to_batch(pd.concat([good, good.assign(reward=[1e39])]))


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
