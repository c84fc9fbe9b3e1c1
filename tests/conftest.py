"""Shared test fixtures: rollout records and files, padded token batches, and an in-process CLI runner.

Builders are offered as fixtures that return the builder (`make_rollout(reward=0)`, `token_batch(seed=1)`), so test
files never import from each other or from this file."""
import contextlib, io, json
from pathlib import Path

import pytest
import numpy as np
import torch
from xdist_groups import group_node_ids


def _rollout(**kw) -> dict:
    "One valid rollout record (schema v1 of ktae_lab.data); keywords replace or add fields."
    return {"group_id": "g", "token_ids": [5, 6, 7], "reward": 1.0, **kw}


def _write_jsonl(path, lines) -> Path:
    "Write dicts (as JSON) or raw strings, one per line, to `path` (UTF-8)."
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines), encoding="utf-8")
    return path


def _token_batch(seed=0, n_groups=3, G=4, L=10, vocab=30, p_correct=0.5, dtype=torch.float32, pad_ids=True, shuffle=False) -> dict:
    """The tests' one random token batch, in the layout of 00_core: responses, response_mask [B, L] (right-padded),
    rewards [B], index [B] (object array "q0", "q1", ...). `pad_ids`: random ids under the padding too (code must ignore
    them); `shuffle`: rows permuted, so groups interleave (verl batches need not be contiguous)."""
    g = torch.Generator().manual_seed(seed)
    B = n_groups * G
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    response_mask = (torch.arange(L) < lengths[:, None]).long()
    responses = torch.randint(0 if pad_ids else 1, vocab, (B, L), generator=g)
    if not pad_ids: responses = responses * response_mask
    rewards = (torch.rand(B, generator=g) < p_correct).to(dtype)
    index = np.array([f"q{i // G}" for i in range(B)], dtype=object)
    if shuffle:
        perm = torch.randperm(B, generator=g)
        responses, response_mask, rewards, index = responses[perm], response_mask[perm], rewards[perm], index[perm.numpy()]
    return dict(responses=responses, response_mask=response_mask, rewards=rewards, index=index)


# the worked example of 12_ktae: four rollouts of one prompt, ids 11-18, EOS 151645 inside the mask
WORKED_EOS, WORKED_PAD = 151645, 151643
WORKED_ROWS = [([11, 12, 13, 12, 18], 1.0), ([11, 13, 14, 12], 1.0), ([11, 15, 12, 16, 16, 18], 0.0), ([11, 15, 17, 18], 0.0)]


def _worked_records(group="q") -> list[dict]:
    return [{"group_id": group, "rollout_id": i, "token_ids": t + [WORKED_EOS], "reward": r, "eos_token_id": WORKED_EOS,
             "pad_token_id": WORKED_PAD} for i, (t, r) in enumerate(WORKED_ROWS)]


@pytest.fixture
def make_rollout(): return _rollout


@pytest.fixture
def write_jsonl(): return _write_jsonl


@pytest.fixture
def token_batch(): return _token_batch


@pytest.fixture
def worked_rollouts(tmp_path) -> Path:
    "The worked example of 12_ktae as a rollout JSONL file."
    return _write_jsonl(tmp_path / "worked.jsonl", _worked_records())


@pytest.fixture
def sample_path() -> Path:
    "The shipped hand-made sample data/sample_rollouts.jsonl (5 groups x 8 rollouts)."
    from ktae_lab.data import sample_rollouts_path
    return sample_rollouts_path()


@pytest.fixture
def run_cli():
    "Run `ktae_lab.cli.main(argv)` in-process; return (exit status, stdout, stderr)."
    def run(argv):
        from ktae_lab.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
            rc = main([str(a) for a in argv])
        return rc, out.getvalue(), err.getvalue()
    return run


# Longest work first, so that `pytest -n 2 --dist loadgroup` (README's test command) does not end with one worker
# still running a long test while the other idles: the vLLM engine tests (one xdist group: one server, started once, and
# restarted once by the kill test), the docs site (one xdist group: built once, then driven in Chromium),
# then the notebooks (each runs whole; the tutorials, the longest, first), then the files with the end-to-end runs,
# then everything else in its usual order. Without xdist only the order changes.
_FIRST = ("test_engine.py", "test_docs.py", "test_notebooks.py", "test_prm.py", "test_faults.py", "test_lab.py", "test_ktae.py")


def _rank(it) -> tuple:
    f = _FIRST.index(it.path.name) if it.path.name in _FIRST else len(_FIRST)
    return (f, 0 if f == 2 and "[tutorials/" in it.nodeid else 1)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    items[:] = sorted(items, key=_rank)   # stable: the order within each file is kept
    if getattr(config.option, "loadgroup", False): group_node_ids(items)   # `loadgroup` is set on xdist workers only


def _tiny_grpo_parts():
    "A tiny random Llama, its character-level tokenizer and 8 prompts: one real TRL GRPOTrainer step runs on a CPU in seconds."
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, LlamaConfig, LlamaForCausalLM
    from datasets import Dataset
    vocab = {"<pad>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate("abcdefghij0123456789 +=")}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>")); tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=0, eos_token_id=1, bos_token_id=1))
    return model, hf_tok, Dataset.from_dict({"prompt": ["1+1=", "2+2=", "a b", "c d"] * 2})


@pytest.fixture
def tiny_grpo_parts(): return _tiny_grpo_parts
