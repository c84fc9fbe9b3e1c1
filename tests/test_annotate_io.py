"""`ktae_lab.annotate_io` and `ktae-lab annotate`: each layout read, a real annotation run on a tiny random model
(resumed after a cut), the exports, and one real step of TRL's PRMTrainer on our TRL rows (error messages:
test_bad_input_annotate.py)."""
import json, os, shutil, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest

from ktae_lab.annotate_io import (read_solutions, write_export, score_against, to_trl, latest_records, processbench_scores,
                                  math_shepherd_solution)
from ktae_lab.data import shipped_data_path
from ktae_lab.epicprm import read_annotations

REPO = Path(__file__).resolve().parent.parent
LAY = REPO / "data" / "layouts"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    "A tiny random Llama and its word-level tokenizer saved as a model folder (what `--model DIR` loads)."
    from ktae_lab.lm import tiny_random_lm
    d = tmp_path_factory.mktemp("tiny_lm")
    model, tok, _ = tiny_random_lm(seed=0, d_model=16, n_layers=1, n_heads=2)
    model.save_pretrained(d); tok.save_pretrained(d)
    return d


def _annotate(run_cli, model_dir, *args):
    return run_cli(["annotate", *args, "--model", model_dir, "--max-new-tokens", "3", "--threads", "1", "--no-progress"])


def test_parquet_and_csv_lists_read_like_jsonl(tmp_path):
    pb = read_solutions(LAY / "processbench.jsonl", answers=LAY / "processbench_answers.jsonl")
    raw = pd.read_json(LAY / "processbench.jsonl", lines=True)
    raw.to_parquet(tmp_path / "pb.parquet")                        # steps become numpy arrays
    raw.assign(steps=raw.steps.map(json.dumps)).to_csv(tmp_path / "pb.csv", index=False)   # steps become JSON text
    (tmp_path / "pb.json").write_text(raw.to_json(orient="records"))   # one JSON array, as Hugging Face downloads are
    for f in ("pb.parquet", "pb.csv", "pb.json"):
        got = read_solutions(tmp_path / f, answers=LAY / "processbench_answers.jsonl")
        assert got.to_dict("records") == pb.to_dict("records"), f


def test_math_shepherd_labels_match_trls_reading():
    "Our reading of a Math-Shepherd row gives what TRL's conversion script gives: the steps and one bool per step tag."
    row = json.loads((LAY / "math_shepherd.jsonl").read_text().splitlines()[1])
    q, steps, labels = math_shepherd_solution(row["input"], row["label"])
    assert labels == [True, False, False] and len(steps) == row["input"].count("ки") == 3
    assert q.endswith("?") and steps[0].startswith("Step 1:") and "ки" not in "".join(steps)


def test_annotate_resumes_and_exports(tmp_path, run_cli, tiny_model_dir):
    "A real model run: cut after two solutions, the rerun annotates only the other two; exports come from the records."
    sols = read_solutions(LAY / "processbench.jsonl", answers=LAY / "processbench_answers.jsonl")
    half = tmp_path / "half.jsonl"
    half.write_text("".join(l + "\n" for l in (LAY / "processbench.jsonl").read_text().splitlines()[:2]))
    out = tmp_path / "ann.jsonl"
    common = ["--answers", LAY / "processbench_answers.jsonl", "-o", out, "--method", "math_shepherd", "--param", "n=2"]
    rc, text, err = _annotate(run_cli, tiny_model_dir, half, *common)
    assert rc == 0, err
    assert json.loads(text.splitlines()[0])["annotated"] == 2 and len(read_annotations(out)) == 2
    with open(out, "a") as f: f.write('{"id": "pb-2", "question": "A box')        # a kill mid-line
    rc, text, err = _annotate(run_cli, tiny_model_dir, LAY / "processbench.jsonl", *common)
    assert rc == 0, err
    assert "ktae-lab annotate: warning: " in err and "torn" in err          # the cut line is reported, kept in .torn, and redone
    s = json.loads(text.splitlines()[0])
    assert s["annotated"] == 2 and s["solutions"] == 4 and s["ok"] == 4
    recs = read_annotations(out)
    assert [r["id"] for r in recs] == list(sols.id) and all(len(r["probes"]) == len(r["steps"]) - 1 for r in recs)
    assert recs[0]["meta"]["model"] == str(tiny_model_dir) and recs[0]["meta"]["params"] == {"n": 2} and "ktae_lab" in recs[0]["meta"]
    # exporting a finished file loads no model (a missing model directory is never touched)
    rc, text, err = run_cli(["annotate", LAY / "processbench.jsonl", "--answers", LAY / "processbench_answers.jsonl", "-o",
                             tmp_path / "trl.jsonl", "--format", "trl", "--records", out, "--method", "math_shepherd",
                             "--model", tmp_path / "no_such_model", "--against", LAY / "processbench.jsonl"])
    assert rc == 0, err
    rows = [json.loads(l) for l in (tmp_path / "trl.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == list(sols.question) and all(len(r["completions"]) == len(r["labels"]) for r in rows)
    assert all(isinstance(b, bool) for r in rows for b in r["labels"])
    assert "acc_erroneous" in text and "math_shepherd" in text


def test_epic50k_export_is_what_epicprms_trainer_reads(tmp_path):
    "EpicPRM's RewardDataset (xiaolizh1/EpicPRM train_reward_model.py) re-implemented on our file: json.load, total_steps, ratings."
    recs = read_annotations(shipped_data_path("smollm2_annot_epic_adaptive.jsonl"))
    n = write_export(recs + [dict(recs[0], id="skipped-one", status="skipped", steps=[dict(s, rating=None) for s in recs[0]["steps"]])],
                     tmp_path / "e.json", "epic50k")
    assert n == 20                                                   # the skipped record is left out
    data = json.load(open(tmp_path / "e.json"))
    wrong = sum(1 for ex in data for i in range(ex["total_steps"]) for it in ex[f"step{i}"] if it["rating"] not in (0, 1))
    assert wrong == sum(1 for r in recs for s in r["steps"] if s["rating"] == 0)   # every wrong step trains as an error


def test_score_against_counts_skips_as_misses():
    labels = read_solutions(LAY / "processbench.jsonl", need_answer=False)
    recs = [dict(id="pb-0", method="m", status="ok", first_error=None), dict(id="pb-1", method="m", status="skipped", first_error=None),
            dict(id="pb-3", method="m", status="ok", first_error=0), dict(id="extra", method="m", status="ok", first_error=1)]
    s = score_against(recs, labels).iloc[0]
    assert (s.solutions, s.erroneous, s.correct, s.skipped, s.unlabelled) == (3, 2, 1, 1, 1)
    assert s.acc_erroneous == 0.5 and s.acc_correct == 1.0
    assert processbench_scores([None], [None])["f1"] == 0.0          # an empty half: 0, never NaN


def _trl_prm_dir():
    "TRL 1.13 (the last release with PRMTrainer), installed beside the environment by tools/setup_trl_prm.sh."
    d = Path(os.environ.get("KTAE_LAB_TRL_PRM", Path.home() / ".cache" / "ktae_lab" / "trl-prm"))
    return d if (d / "trl" / "experimental" / "prm" / "prm_trainer.py").is_file() else None


_PRM_STEP = r"""
import json, sys, torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForTokenClassification
from trl.experimental.prm import PRMConfig, PRMTrainer
from ktae_lab.lm import tiny_tokenizer
rows = [json.loads(l) for l in open(sys.argv[1])]
tok = tiny_tokenizer()
tokenized = [PRMTrainer.tokenize_row(r, tok, "\n", None, None, False, False) for r in rows]
torch.manual_seed(0)
model = LlamaForTokenClassification(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                num_attention_heads=2, num_key_value_heads=2, num_labels=2, pad_token_id=tok.pad_token_id))
args = PRMConfig(output_dir=sys.argv[2], max_steps=1, per_device_train_batch_size=4, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
out = PRMTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok).train()
print(json.dumps(dict(steps=out.global_step, loss=out.training_loss, labels=[[l for l in t["labels"] if l != -100] for t in tokenized])))
"""


def test_trl_prm_trainer_trains_one_step_on_our_rows(tmp_path):
    "TRL's PRMTrainer reads our `--format trl` file: one label per step lands on the step's last token, and a step trains."
    d = _trl_prm_dir()
    if d is None: pytest.skip("TRL's PRMTrainer (removed in TRL 1.14) is not installed: run `sh tools/setup_trl_prm.sh`")
    recs = read_annotations(shipped_data_path("smollm2_annot_math_shepherd.jsonl"))
    write_export(recs, tmp_path / "trl.jsonl", "trl")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(d), str(REPO)]), TRL_EXPERIMENTAL_SILENCE="1", HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    r = subprocess.run([sys.executable, "-c", _PRM_STEP, tmp_path / "trl.jsonl", tmp_path / "prm"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["steps"] == 1 and 0 < got["loss"] < 10
    assert got["labels"] == [[int(s["rating"]) for s in rec["steps"]] for rec in recs]


def test_processbench_export_reads_back(tmp_path, run_cli):
    "`--format processbench` then `read_solutions`: the same ids, steps, first errors and answers; the file scores itself perfectly."
    rec = tmp_path / "smol.jsonl"
    shutil.copy(shipped_data_path("smollm2_annot_math_shepherd.jsonl"), rec)
    labels = shipped_data_path("smollm2_processbench.jsonl")
    rc, text, err = run_cli(["annotate", labels, "-o", tmp_path / "pb.jsonl", "--format", "processbench", "--records", rec,
                             "--method", "math_shepherd", "--no-progress"])
    assert rc == 0, err
    back = read_solutions(tmp_path / "pb.jsonl")
    recs = read_annotations(rec)
    assert list(back.id) == [r["id"] for r in recs] and list(back.steps) == [[s["text"] for s in r["steps"]] for r in recs]
    assert list(back.label) == [-1 if r["first_error"] is None else r["first_error"] for r in recs]
    assert list(back.reference_answer) == [r["reference_answer"] for r in recs]
    s = score_against(recs, back).iloc[0]
    assert s.acc_erroneous == 1.0 and s.erroneous == 20
