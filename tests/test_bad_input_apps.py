"""Bad inputs to the public functions of the application layer (lm, completers, sampling, lab): table-driven.

Every case must raise a clear error (ValueError/TypeError/FileNotFoundError) whose message names the argument or
what was expected; none may pass silently or end in an unrelated traceback.
"""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import ktae_lab.lab as lab
from ktae_lab import completers, lm, sampling
from ktae_lab.prm_lab import lab_prm as _lab_prm
import ktae_lab.prm_lab as prm_lab

torch.set_num_threads(1)
NAN, INF = float("nan"), float("inf")
MODEL, TOK, _ = lm.tiny_random_lm(seed=0)
PLAIN = lm.tiny_tokenizer(chat_template=False)
IDS, AM = lm.encode_prompts(TOK, ["how many apples ?", "what is 2 ?"])
RESP = torch.tensor([[5, 6, TOK.eos_token_id], [7, TOK.eos_token_id, 0]]); RMASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
LTOK = lab.lab_tokenizer()
LCFG = lab.LabConfig(n_train=60, n_heldout=8, min_ops=2, max_ops=2, max_operand=3, steps=2, prompts_per_step=2,
                     group_size=2, max_new_tokens=6, overlong_buffer=2, eval_every=1, warm_steps=0, warm_batch=4,
                     d_model=16, n_heads=2, progress=False)
LPOL = lab._new_policy(LTOK, LCFG, 0)
LTRAIN, LHELD = lab.lab_data(LCFG)
PROBS = [{"problem_id": "a", "question": "how many apples ?", "answer": "3"}]
GOOD_DF = pd.DataFrame({"algo": ["grpo"] * 2, "seed": [0, 0], "step": [0, 1], "eval_acc": [0.1, 0.2],
                        "eval_greedy_acc": [0.1, 0.2], "eval_len": [3.0, 3.0], "entropy": [NAN, 1.0], "mixed_share": [NAN, 0.5],
                        "mean_abs_k": [NAN, 0.1], "step_time": [NAN, 0.1]})
E = (ValueError, TypeError)


_W = {"state": LPOL.state_dict()}
BIG = lab.LabConfig(d_model=1024, n_heads=8, n_layers=8, warm_batch=4096, progress=False)


def _file(t):
    f = t / "afile"; f.write_text("x\n"); return f


def _batch_changed(t):
    "A batch of seeds [0, 1] leaves its step-1 checkpoints; resuming them as the batch [0] must be refused."
    lab.train_many("grpo", [0, 1], LCFG, [_W, _W], checkpoints=t)
    return lab.train_many("grpo", [0], LCFG, [_W], checkpoints=t)


def _mixed_runners(t):
    "An output folder of seeds run one by one is refused to a batched run (and its results never mixed)."
    try: lab.run_ablation(["grpo"], [0], LCFG, t / "o", progress=False, seed_batch=1)
    except ValueError: pass                                  # the untrained warm start is too weak: config.json is written first
    return lab.run_ablation(["grpo"], [0], LCFG, t / "o", progress=False)


def _problems_file(tmp, text, name="p.jsonl"):
    p = tmp / name; p.write_text(text); return p


CASES = [
    # ---------------------------------------------------------------- ktae_lab.lm
    ("resolve_device", lambda t: lm.resolve_device("gpu"), "not a device name"),
    ("resolve_device", lambda t: lm.resolve_device(""), "not a device name"),
    ("resolve_device", lambda t: lm.resolve_device("meta"), "not a device name"),
    ("resolve_device", lambda t: lm.resolve_device(0), "`device` must be a str"),
    ("resolve_device", lambda t: lm.resolve_device("cuda:99") if not torch.cuda.is_available() else lm.resolve_device("cuda:99"), "`device`"),
    ("resolve_dtype", lambda t: lm.resolve_dtype("int8"), "`dtype`"),
    ("resolve_dtype", lambda t: lm.resolve_dtype("fp8"), "`dtype`"),
    ("resolve_dtype", lambda t: lm.resolve_dtype(torch.int32), "`dtype`"),
    ("resolve_dtype", lambda t: lm.resolve_dtype(None), "`dtype`"),
    ("resolve_dtype", lambda t: lm.resolve_dtype(32), "`dtype`"),
    ("load_model", lambda t: lm.load_model("./missing/model"), "model directory not found"),
    ("load_model", lambda t: lm.load_model(str(t / "nope")), "model directory not found"),
    ("load_model", lambda t: lm.load_model("a/b/c"), "model directory not found"),
    ("load_model", lambda t: lm.load_model(""), "`model`"),
    ("load_model", lambda t: lm.load_model(None), "`model`"),
    ("load_model", lambda t: lm.load_model("smollm2", dtype="half-ish"), "`dtype`"),
    ("load_model", lambda t: lm.load_model("smollm2", device="gpu"), "`device`"),
    ("load_model", lambda t: lm.load_model("smollm2", gguf_file="model.bin"), "`gguf_file`"),
    ("tiny_tokenizer", lambda t: lm.tiny_tokenizer("yes"), "`chat_template`"),
    ("tiny_tokenizer", lambda t: lm.tiny_tokenizer(1), "`chat_template`"),
    ("tiny_tokenizer", lambda t: lm.tiny_tokenizer(None), "`chat_template`"),
    ("tiny_tokenizer", lambda t: lm.tiny_tokenizer([]), "`chat_template`"),
    ("tiny_tokenizer", lambda t: lm.tiny_tokenizer(0.0), "`chat_template`"),
    ("tiny_random_lm", lambda t: lm.tiny_random_lm(seed=-1), "`seed`"),
    ("tiny_random_lm", lambda t: lm.tiny_random_lm(d_model=0), "`d_model`"),
    ("tiny_random_lm", lambda t: lm.tiny_random_lm(d_model=30), "divisible"),
    ("tiny_random_lm", lambda t: lm.tiny_random_lm(n_heads=4, n_kv_heads=3), "divisible"),
    ("tiny_random_lm", lambda t: lm.tiny_random_lm(n_layers=1.5), "`n_layers`"),
    ("tiny_random_lm", lambda t: lm.tiny_random_lm(tokenizer="gpt2"), "`tokenizer`"),
    ("tiny_random_lm", lambda t: lm.tiny_random_lm(device="gpu"), "`device`"),
    ("uses_chat_template", lambda t: lm.uses_chat_template(PLAIN, True), "has no chat template"),
    ("uses_chat_template", lambda t: lm.uses_chat_template(TOK, "yes"), "`chat_template`"),
    ("uses_chat_template", lambda t: lm.uses_chat_template(TOK, 1), "`chat_template`"),
    ("uses_chat_template", lambda t: lm.uses_chat_template(None), "`tokenizer`"),
    ("uses_chat_template", lambda t: lm.uses_chat_template("gpt2"), "`tokenizer`"),
    ("render_prompt", lambda t: lm.render_prompt(TOK, ""), "`question`"),
    ("render_prompt", lambda t: lm.render_prompt(TOK, None), "`question`"),
    ("render_prompt", lambda t: lm.render_prompt(TOK, "q", system_prompt=3), "`system_prompt`"),
    ("render_prompt", lambda t: lm.render_prompt(TOK, "q", prefix=None), "`prefix`"),
    ("render_prompt", lambda t: lm.render_prompt(PLAIN, "q", chat_template=True), "has no chat template"),
    ("render_prompt", lambda t: lm.render_prompt(None, "q"), "`tokenizer`"),
    ("pad_id", lambda t: lm.pad_id(None), "`tokenizer`"),
    ("pad_id", lambda t: lm.pad_id("gpt2"), "`tokenizer`"),
    ("pad_id", lambda t: lm.pad_id(3), "`tokenizer`"),
    ("pad_id", lambda t: lm.pad_id(type("T", (), {"pad_token_id": None, "eos_token_id": None})()), "neither a pad nor an EOS"),
    ("pad_id", lambda t: lm.pad_id(type("T", (), {"pad_token_id": -1, "eos_token_id": None})()), "`tokenizer`"),
    ("encode_prompts", lambda t: lm.encode_prompts(TOK, []), "non-empty list"),
    ("encode_prompts", lambda t: lm.encode_prompts(TOK, "how many"), "non-empty list"),
    ("encode_prompts", lambda t: lm.encode_prompts(TOK, ["a", 3]), "strings"),
    ("encode_prompts", lambda t: lm.encode_prompts(TOK, ["a"], prepend_bos=True), "BOS"),
    ("encode_prompts", lambda t: lm.encode_prompts(TOK, [""], add_special_tokens=False), "no tokens"),
    ("encode_prompts", lambda t: lm.encode_prompts(None, ["a"]), "`tokenizer`"),
    ("derive_seed", lambda t: lm.derive_seed("0"), "`seed`"),
    ("derive_seed", lambda t: lm.derive_seed(1.5), "`seed`"),
    ("derive_seed", lambda t: lm.derive_seed(None, "g"), "`seed`"),
    ("derive_seed", lambda t: lm.derive_seed(True, "g"), "`seed`"),
    ("derive_seed", lambda t: lm.derive_seed(-1, "g"), "`seed`"),
    ("generate", lambda t: lm.generate(MODEL, IDS, AM, 0, TOK.eos_token_id, TOK.pad_token_id, generator=0), "`max_new_tokens`"),
    ("generate", lambda t: lm.generate(MODEL, IDS, AM, 4, TOK.eos_token_id, TOK.pad_token_id, NAN, generator=0), "`temperature`"),
    ("generate", lambda t: lm.generate(MODEL, IDS, AM, 4, TOK.eos_token_id, TOK.pad_token_id, -1.0, generator=0), "`temperature`"),
    ("generate", lambda t: lm.generate(MODEL, IDS, AM, 4, TOK.eos_token_id, TOK.pad_token_id, top_p=0.0, generator=0), "`top_p`"),
    ("generate", lambda t: lm.generate(MODEL, IDS, AM, 4, TOK.eos_token_id, TOK.pad_token_id, top_p=NAN, generator=0), "`top_p`"),
    ("generate", lambda t: lm.generate(MODEL, IDS, AM, 4, TOK.eos_token_id, TOK.pad_token_id), "`generator` is required"),
    ("generate", lambda t: lm.generate(MODEL, IDS, AM, 4, TOK.eos_token_id, TOK.pad_token_id, generator=[1, 2, 3]), "equal contiguous blocks"),
    ("generate", lambda t: lm.generate(MODEL, IDS, AM, 4, TOK.eos_token_id, TOK.pad_token_id, generator="0"), "`generator`"),
    ("generate", lambda t: lm.generate(MODEL, IDS.float(), AM, 4, TOK.eos_token_id, TOK.pad_token_id, generator=0), "`input_ids`"),
    ("generate", lambda t: lm.generate(MODEL, IDS, AM[:, 1:], 4, TOK.eos_token_id, TOK.pad_token_id, generator=0), "`attention_mask`"),
    ("generate", lambda t: lm.generate(MODEL, IDS, AM, 4, [], TOK.pad_token_id, generator=0), "`eos_token_id`"),
    ("generate", lambda t: lm.generate(MODEL, IDS, AM, 4, TOK.eos_token_id, None, generator=0), "`pad_token_id`"),
    ("generate", lambda t: lm.generate(MODEL, IDS + 10_000, AM, 4, TOK.eos_token_id, TOK.pad_token_id, generator=0), "`input_ids`"),
    ("generate", lambda t: lm.generate("model", IDS, AM, 4, TOK.eos_token_id, TOK.pad_token_id, generator=0), "`model`"),
    ("token_log_probs", lambda t: lm.token_log_probs(MODEL, IDS, AM[:1], RESP, RMASK), "`prompt_mask`"),
    ("token_log_probs", lambda t: lm.token_log_probs(MODEL, IDS, AM, RESP[:1], RMASK[:1]), "`responses`"),
    ("token_log_probs", lambda t: lm.token_log_probs(MODEL, IDS, AM, RESP, RMASK[:, :2]), "`response_mask`"),
    ("token_log_probs", lambda t: lm.token_log_probs(MODEL, IDS[0], AM[0], RESP, RMASK), "`prompt_ids`"),
    ("token_log_probs", lambda t: lm.token_log_probs(MODEL, IDS, AM, RESP.float(), RMASK), "`responses`"),
    ("token_log_probs", lambda t: lm.token_log_probs(MODEL, IDS, AM, RESP + 10_000, RMASK), "`responses`"),
    ("token_log_probs", lambda t: lm.token_log_probs(None, IDS, AM, RESP, RMASK), "`model`"),
    ("eos_token_ids", lambda t: lm.eos_token_ids(MODEL, None), "`tokenizer`"),
    ("eos_token_ids", lambda t: lm.eos_token_ids(MODEL, "gpt2"), "`tokenizer`"),
    ("eos_token_ids", lambda t: lm.eos_token_ids(None, type("T", (), {"eos_token_id": None})()), "EOS"),
    ("eos_token_ids", lambda t: lm.eos_token_ids(MODEL, type("T", (), {"eos_token_id": -3})()), "EOS"),
    ("eos_token_ids", lambda t: lm.eos_token_ids(MODEL, type("T", (), {"eos_token_id": "x"})()), "EOS"),
    # ---------------------------------------------------------------- ktae_lab.completers
    ("completion_prompt", lambda t: completers.completion_prompt(TOK, "q", "step 1"), "`prefix_steps`"),
    ("completion_prompt", lambda t: completers.completion_prompt(TOK, "q", ["a", 3]), "`prefix_steps`"),
    ("completion_prompt", lambda t: completers.completion_prompt(TOK, "", ["a"]), "`question`"),
    ("completion_prompt", lambda t: completers.completion_prompt(TOK, "q", ["a"], step_sep=None), "`step_sep`"),
    ("completion_prompt", lambda t: completers.completion_prompt(TOK, "q", ["a"], system_prompt=1), "`system_prompt`"),
    ("completion_prompt", lambda t: completers.completion_prompt(None, "q", ["a"]), "`tokenizer`"),
    ("TransformersCompleter", lambda t: completers.TransformersCompleter(MODEL, TOK, max_new_tokens=0), "`max_new_tokens`"),
    ("TransformersCompleter", lambda t: completers.TransformersCompleter(MODEL, TOK, temperature=NAN), "`temperature`"),
    ("TransformersCompleter", lambda t: completers.TransformersCompleter(MODEL, TOK, top_p=2), "`top_p`"),
    ("TransformersCompleter", lambda t: completers.TransformersCompleter(MODEL, TOK, batch_size=-1), "`batch_size`"),
    ("TransformersCompleter", lambda t: completers.TransformersCompleter(MODEL, TOK, seed=1.5), "`seed`"),
    ("TransformersCompleter", lambda t: completers.TransformersCompleter(MODEL, None), "`tokenizer`"),
    ("engine_install", lambda t: completers.engine_install(123), "`cache` must be a folder path"),
    ("engine_install", lambda t: completers.engine_install(""), "`cache` must be a folder path"),
    ("engine_install", lambda t: completers.engine_install(["x"]), "`cache` must be a folder path"),
    ("engine_install", lambda t: completers.engine_install(str(t / "a\0b")), "without NUL"),
    ("engine_install", lambda t: (t / "f").write_text("x") and completers.engine_install(str(t / "f")), "is a file, not the engine's cache folder"),
    ("TransformersCompleter.__call__", lambda t: completers.TransformersCompleter(MODEL, TOK, 4)("q", [], 0), "`n`"),
    ("TransformersCompleter.__call__", lambda t: completers.TransformersCompleter(MODEL, TOK, 4)("q", [], 2.0), "`n`"),
    ("TransformersCompleter.__call__", lambda t: completers.TransformersCompleter(MODEL, TOK, 4)("q", [], True), "`n`"),
    ("TransformersCompleter.__call__", lambda t: completers.TransformersCompleter(MODEL, TOK, 4)("q", "step", 2), "`prefix_steps`"),
    ("TransformersCompleter.__call__", lambda t: completers.TransformersCompleter(MODEL, TOK, 4)("", [], 2), "`question`"),
    # ---------------------------------------------------------------- ktae_lab.sampling
    ("load_problems", lambda t: sampling.load_problems(t / "missing.jsonl"), "problem file not found"),
    ("load_problems", lambda t: sampling.load_problems(t), "problem file not found"),
    ("load_problems", lambda t: sampling.load_problems(_problems_file(t, "{oops\n")), "line 1: not valid JSON"),
    ("load_problems", lambda t: sampling.load_problems(_problems_file(t, "[1, 2]\n")), "expected an object"),
    ("load_problems", lambda t: sampling.load_problems(_problems_file(t, "\n")), "no problems"),
    ("load_problems", lambda t: sampling.load_problems(_problems_file(t, "question,answer\nq,\n", "p.csv")), "`answer` is missing"),
    ("load_problems", lambda t: sampling.load_problems(_problems_file(t, '{"question": "q", "answer": 1}\n\xff\n'.encode("latin-1").decode("latin-1"))), "line 2"),
    ("check_problems", lambda t: sampling.check_problems([{"question": "q"}]), "`answer` is missing"),
    ("check_problems", lambda t: sampling.check_problems([{"question": "q", "answer": NAN}]), "`answer` is missing"),
    ("check_problems", lambda t: sampling.check_problems([{"question": "q", "answer": True}]), "`answer` is missing"),
    ("check_problems", lambda t: sampling.check_problems([{"question": 3, "answer": "1"}]), "`question` is missing"),
    ("check_problems", lambda t: sampling.check_problems([]), "no problems"),
    ("check_problems", lambda t: sampling.check_problems("not a list"), "list of problem"),
    ("SampleConfig.validate", lambda t: sampling.SampleConfig(temperature=NAN).validate(), "`temperature`"),
    ("SampleConfig.validate", lambda t: sampling.SampleConfig(temperature=INF).validate(), "`temperature`"),
    ("SampleConfig.validate", lambda t: sampling.SampleConfig(top_p=0).validate(), "`top_p`"),
    ("SampleConfig.validate", lambda t: sampling.SampleConfig(num_rollouts=0).validate(), "`num_rollouts`"),
    ("SampleConfig.validate", lambda t: sampling.SampleConfig(max_new_tokens=2.0).validate(), "`max_new_tokens`"),
    ("SampleConfig.validate", lambda t: sampling.SampleConfig(seed=-1).validate(), "`seed`"),
    ("SampleConfig.validate", lambda t: sampling.SampleConfig(problems_per_batch=True).validate(), "`problems_per_batch`"),
    ("SampleConfig.validate", lambda t: sampling.SampleConfig(system_prompt=1).validate(), "`system_prompt`"),
    ("SampleConfig.validate", lambda t: sampling.SampleConfig(chat_template="yes").validate(), "`chat_template`"),
    ("generate_group_batch", lambda t: sampling.generate_group_batch(MODEL, TOK, ["q"], ["a", "b"]), "`group_ids`"),
    ("generate_group_batch", lambda t: sampling.generate_group_batch(MODEL, TOK, [], []), "`prompts`"),
    ("generate_group_batch", lambda t: sampling.generate_group_batch(MODEL, TOK, "q", ["a"]), "`prompts`"),
    ("generate_group_batch", lambda t: sampling.generate_group_batch(MODEL, TOK, ["q", "r"], ["a", "a"]), "`group_ids`"),
    ("generate_group_batch", lambda t: sampling.generate_group_batch(MODEL, TOK, ["q"], ["a"], {"num_rollouts": 2}), "`config`"),
    ("generate_group_batch", lambda t: sampling.generate_group_batch(MODEL, TOK, ["q"], ["a"], sampling.SampleConfig(top_p=3)), "`top_p`"),
    ("grade_rollout", lambda t: sampling.grade_rollout(None, "8"), "`response`"),
    ("grade_rollout", lambda t: sampling.grade_rollout(8, "8"), "`response`"),
    ("grade_rollout", lambda t: sampling.grade_rollout("8", ""), "`reference_answer`"),
    ("grade_rollout", lambda t: sampling.grade_rollout("8", None), "`reference_answer`"),
    ("grade_rollout", lambda t: sampling.grade_rollout("8", "8", truncated="False"), "`truncated`"),
    ("grade_rollout", lambda t: sampling.grade_rollout("8", "8", rel_tol=-1), "`rel_tol`"),
    ("grade_rollout", lambda t: sampling.grade_rollout("8", "8", rel_tol=NAN), "`rel_tol`"),
    ("resume_state", lambda t: sampling.resume_state(t / "r.jsonl", None, "m", "t", PROBS), "`settings`"),
    ("resume_state", lambda t: sampling.resume_state(t / "r.jsonl", {}, "m", "t", PROBS), "`settings`"),
    ("resume_state", lambda t: sampling.resume_state(t / "r.jsonl", sampling.SampleConfig().settings(), None, "t", PROBS), "`model_name`"),
    ("resume_state", lambda t: sampling.resume_state(t / "r.jsonl", sampling.SampleConfig().settings(), "m", 3, PROBS), "`tokenizer_name`"),
    ("resume_state", lambda t: sampling.resume_state(t / "r.jsonl", sampling.SampleConfig().settings(), "m", "t", "p"), "`problems`"),
    ("resume_state", lambda t: sampling.resume_state(t, sampling.SampleConfig().settings(), "m", "t", PROBS), "directory"),
    ("sample_rollouts", lambda t: sampling.sample_rollouts(PROBS, MODEL, TOK, t / "r.jsonl", limit=-1), "`limit`"),
    ("sample_rollouts", lambda t: sampling.sample_rollouts(PROBS, MODEL, TOK, t / "r.jsonl", limit=1.5), "`limit`"),
    ("sample_rollouts", lambda t: sampling.sample_rollouts(PROBS, MODEL, TOK, t / "r.jsonl", {"seed": 1}), "`config`"),
    ("sample_rollouts", lambda t: sampling.sample_rollouts(PROBS, MODEL, TOK, t, progress=False), "directory"),
    ("sample_rollouts", lambda t: sampling.sample_rollouts(PROBS, MODEL, TOK, None), "`output`"),
    ("sample_rollouts", lambda t: sampling.sample_rollouts(PROBS, MODEL, TOK, t / "r.jsonl", model_name=""), "`model_name`"),
    ("sample_rollouts", lambda t: sampling.sample_rollouts(PROBS, MODEL, PLAIN, t / "r.jsonl"), "has no chat template"),
    ("sample_rollouts", lambda t: sampling.sample_rollouts([{"question": "q"}], MODEL, TOK, t / "r.jsonl"), "`answer` is missing"),
    ("sample_rollouts", lambda t: sampling.sample_rollouts(PROBS, MODEL, TOK, t / "r.jsonl", sampling.SampleConfig(temperature=NAN)), "`temperature`"),
    ("group_summary", lambda t: sampling.group_summary(t / "missing.jsonl"), "not found|No such file"),
    ("group_summary", lambda t: sampling.group_summary(3), "`rollouts`"),
    ("group_summary", lambda t: sampling.group_summary(pd.DataFrame({"x": [1]})), "`rollouts`"),
    ("group_summary", lambda t: sampling.group_summary(pd.DataFrame()), "`rollouts`"),
    ("group_summary", lambda t: sampling.group_summary(_summary_df(), correct_threshold=NAN), "`correct_threshold`"),
    ("group_summary", lambda t: sampling.group_summary(_summary_df(), correct_threshold="0"), "`correct_threshold`"),
    ("rollout_stats", lambda t: sampling.rollout_stats(t / "missing.jsonl"), "not found|No such file"),
    ("rollout_stats", lambda t: sampling.rollout_stats(None), "`rollouts`"),
    ("rollout_stats", lambda t: sampling.rollout_stats([1, 2]), "`rollouts`"),
    ("rollout_stats", lambda t: sampling.rollout_stats(pd.DataFrame({"group_id": ["a"]})), "`rollouts`"),
    ("rollout_stats", lambda t: sampling.rollout_stats(_summary_df().iloc[:0]), "no rollouts"),
    # ---------------------------------------------------------------- ktae_lab.lab
    ("algorithm_spec", lambda t: lab.algorithm_spec("ppo"), "valid algorithms"),
    ("algorithm_spec", lambda t: lab.algorithm_spec(""), "valid algorithms"),
    ("algorithm_spec", lambda t: lab.algorithm_spec(None), "valid algorithms"),
    ("algorithm_spec", lambda t: lab.algorithm_spec(3), "valid algorithms"),
    ("algorithm_spec", lambda t: lab.algorithm_spec("grpo+ktae+ktae"), "valid algorithms"),
    ("LabConfig.validate", lambda t: lab.LabConfig(temperature=NAN).validate(), "`temperature`"),
    ("LabConfig.validate", lambda t: lab.LabConfig(grad_clip=-1.0).validate(), "`grad_clip`"),
    ("LabConfig.validate", lambda t: lab.LabConfig(overlong_factor=INF).validate(), "`overlong_factor`"),
    ("LabConfig.validate", lambda t: lab.LabConfig(lr=NAN).validate(), "`lr`"),
    ("LabConfig.validate", lambda t: lab.LabConfig(group_size=1).validate(), "`group_size`"),
    ("LabConfig.validate", lambda t: lab.LabConfig(device="tpu").validate(), "`device`"),
    ("LabConfig.validate", lambda t: lab.LabConfig(ktae={"beta": NAN}).validate(), "beta"),
    ("warm_start", lambda t: lab.warm_start(LPOL, LTOK, LTRAIN, steps=-1), "`steps`"),
    ("warm_start", lambda t: lab.warm_start(LPOL, LTOK, LTRAIN, steps=1, batch_size=0), "`batch_size`"),
    ("warm_start", lambda t: lab.warm_start(LPOL, LTOK, LTRAIN, steps=1, lr=NAN), "`lr`"),
    ("warm_start", lambda t: lab.warm_start(LPOL, LTOK, LTRAIN, steps=1, shortcut_frac=2.0), "`shortcut_frac`"),
    ("warm_start", lambda t: lab.warm_start(LPOL, LTOK, LTRAIN, steps=1, label_smoothing=1.0), "`label_smoothing`"),
    ("warm_start", lambda t: lab.warm_start(LPOL, LTOK, LTRAIN[["prompt"]], steps=1), "`problems`"),
    ("evaluate", lambda t: lab.evaluate(LPOL, LTOK, LHELD, max_new_tokens=0, generator=torch.Generator()), "`max_new_tokens`"),
    ("evaluate", lambda t: lab.evaluate(LPOL, LTOK, LHELD, temperature=NAN, generator=torch.Generator()), "`temperature`"),
    ("evaluate", lambda t: lab.evaluate(LPOL, LTOK, LHELD), "`generator` is required"),
    ("evaluate", lambda t: lab.evaluate(LPOL, LTOK, LHELD.iloc[:0], generator=torch.Generator()), "`problems`"),
    ("evaluate", lambda t: lab.evaluate(LPOL, LTOK, LHELD[["prompt"]], generator=torch.Generator()), "`problems`"),
    ("generate_groups", lambda t: lab.generate_groups(LPOL, LTOK, LTRAIN, [], 2, 4, generator=torch.Generator()), "`idx`"),
    ("generate_groups", lambda t: lab.generate_groups(LPOL, LTOK, LTRAIN, [10**6], 2, 4, generator=torch.Generator()), "`idx`"),
    ("generate_groups", lambda t: lab.generate_groups(LPOL, LTOK, LTRAIN, [0], 0, 4, generator=torch.Generator()), "`group_size`"),
    ("generate_groups", lambda t: lab.generate_groups(LPOL, LTOK, LTRAIN, [0], 2, 0, generator=torch.Generator()), "`max_new_tokens`"),
    ("generate_groups", lambda t: lab.generate_groups(LPOL, LTOK, LTRAIN, [0], 2, 4, temperature=-1.0, generator=torch.Generator()), "`temperature`"),
    ("generate_groups", lambda t: lab.generate_groups(LPOL, LTOK, LTRAIN, [0], 2, 4, generator=torch.Generator(), prompt_len=-1), "`prompt_len`"),
    # process rewards (42_lab): step-level advantages and step rewards
    ("process_advantages", lambda t: lab.process_advantages(torch.zeros(4, 3), torch.ones(4, 2, dtype=torch.bool), torch.zeros(4, 5, dtype=torch.long), 2), "`step_valid`"),
    ("process_advantages", lambda t: lab.process_advantages(torch.zeros(4, 3), torch.ones(4, 3, dtype=torch.bool), torch.zeros(3, 5, dtype=torch.long), 2), "`steps` has 3 rows"),
    ("process_advantages", lambda t: lab.process_advantages(torch.zeros(4, 3), torch.ones(4, 3, dtype=torch.bool), torch.zeros(4, 5, dtype=torch.long), 3), "`group_size`"),
    ("process_advantages", lambda t: lab.process_advantages(torch.full((4, 3), NAN), torch.ones(4, 3, dtype=torch.bool), torch.zeros(4, 5, dtype=torch.long), 2), "`step_rewards` contains NaN"),
    ("process_advantages", lambda t: lab.process_advantages([[0.0]], torch.ones(4, 3, dtype=torch.bool), torch.zeros(4, 5, dtype=torch.long), 2), "`step_rewards` must be a torch.Tensor"),
    ("process_advantages", lambda t: lab.process_advantages(torch.zeros(4, 3), torch.ones(4, 3, dtype=torch.bool), torch.zeros(4, 5, dtype=torch.long), 2, eps=-1.0), "`eps`"),
    ("step_rewards", lambda t: lab.step_rewards(LTOK, torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), "oracle"), "`source`"),
    ("step_rewards", lambda t: lab.step_rewards(LTOK, torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), "prm"), "needs a `prm`"),
    ("step_rewards", lambda t: lab.step_rewards(None, torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), "truth"), "`tokenizer`"),
    ("step_rewards", lambda t: lab.step_rewards(LTOK, torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), "truth"), "`response_mask` shape"),
    ("step_rewards", lambda t: lab.step_rewards(LTOK, torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), "truth"), "`prompt_ids` has 1 rows"),
    ("step_rewards", lambda t: lab.step_rewards(LTOK, torch.ones(2, 3, dtype=torch.long), torch.ones(2, 2, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), "truth"), "`prompt_mask` shape"),
    ("step_rewards", lambda t: lab.step_rewards(LTOK, torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), torch.ones(2, 4), torch.ones(2, 4, dtype=torch.long), "truth"), "`responses` must hold integer"),
    ("cfg_threshold", lambda t: lab.cfg_threshold(None), "`cfg`"),
    ("cfg_threshold", lambda t: lab.cfg_threshold({}), "`cfg`"),
    ("cfg_threshold", lambda t: lab.cfg_threshold("cfg"), "`cfg`"),
    ("cfg_threshold", lambda t: lab.cfg_threshold(lab.LabConfig(ktae={"nope": 1})), "valid names"),
    ("cfg_threshold", lambda t: lab.cfg_threshold(lab.LabConfig(ktae_preset="x")), "valid presets"),
    ("rl_step", lambda t: lab.rl_step(LPOL, None, LTOK, LTRAIN, LCFG, lab.algorithm_spec("drgrpo"), np.random.default_rng(0)), "`optimizer`"),
    ("rl_step", lambda t: lab.rl_step(LPOL, _opt(), LTOK, LTRAIN, {}, lab.algorithm_spec("drgrpo"), np.random.default_rng(0)), "`cfg`"),
    ("rl_step", lambda t: lab.rl_step(LPOL, _opt(), LTOK, LTRAIN, LCFG, "grpo", np.random.default_rng(0)), "`algo`"),
    ("rl_step", lambda t: lab.rl_step(LPOL, _opt(), LTOK, LTRAIN, LCFG, lab.algorithm_spec("drgrpo"), 0), "`rng`"),
    ("rl_step", lambda t: lab.rl_step(LPOL, _opt(), LTOK, LTRAIN, LCFG, lab.algorithm_spec("grpo"), np.random.default_rng(0), torch.Generator()), "reference policy"),
    ("rl_step", lambda t: lab.rl_step(LPOL, _opt(), LTOK, LTRAIN, LCFG, lab.algorithm_spec("drgrpo"), np.random.default_rng(0)), "`generator` is required"),
    ("lab_data", lambda t: lab.lab_data(None), "`cfg`"),
    ("lab_data", lambda t: lab.lab_data({}), "`cfg`"),
    ("lab_data", lambda t: lab.lab_data(lab.LabConfig(n_train=0)), "`n_train`"),
    ("lab_data", lambda t: lab.lab_data(lab.LabConfig(min_ops=1)), "`min_ops`"),
    ("lab_data", lambda t: lab.lab_data(lab.LabConfig(max_operand=-2)), "`max_operand`"),
    ("prepare_warm_start", lambda t: lab.prepare_warm_start(-1, LCFG), "`seed`"),
    ("prepare_warm_start", lambda t: lab.prepare_warm_start("0", LCFG), "`seed`"),
    ("prepare_warm_start", lambda t: lab.prepare_warm_start(0, {}), "`cfg`"),
    ("prepare_warm_start", lambda t: lab.prepare_warm_start(0, lab.LabConfig(steps=0)), "`steps`"),
    ("prepare_warm_start", lambda t: lab.prepare_warm_start(0, LCFG), "increase the warm-start steps"),
    ("train_run", lambda t: lab.train_run("ppo", 0, LCFG), "valid algorithms"),
    ("train_run", lambda t: lab.train_run("grpo", -1, LCFG), "`seed`"),
    ("train_run", lambda t: lab.train_run("grpo", "0", LCFG), "`seed`"),
    ("train_run", lambda t: lab.train_run("grpo", 0, {"steps": 1}), "`cfg`"),
    ("train_run", lambda t: lab.train_run("grpo", 0, LCFG, warm={"weights": 1}), "`warm`"),
    ("train_run", lambda t: lab.train_run("grpo", 0, LCFG, warm={"state": {}}, checkpoint=t), "`checkpoint`"),
    # ---------------------------------------------------------------- batched seeds (issue 20)
    ("run_ablation", lambda t: lab.run_ablation(["grpo"], range(3, 6), LCFG, t / "o", progress=False, seed_batch=0), "`seed_batch` must be None or an int >= 1"),
    ("run_ablation", lambda t: lab.run_ablation(["grpo"], [2, 3, 2], LCFG, t / "o", progress=False), r"duplicates \[2\]"),
    ("run_ablation", lambda t: lab.run_ablation(["grpo"], 1000, BIG, t / "o", progress=False), r"at most \d+ seeds fit in one batch; pass `seed_batch="),
    ("run_ablation", lambda t: _mixed_runners(t), "differs in runner"),
    ("check_seed_batch", lambda t: lab.check_seed_batch(10**9, LCFG), r"seeds in one batch need about .* GiB .* at most \d+ seeds fit"),
    ("check_seed_batch", lambda t: lab.check_seed_batch(0, LCFG), "`n` must be a number of seeds >= 1"),
    ("check_seed_batch", lambda t: lab.check_seed_batch(2.0, LCFG), "`n` must be a number of seeds"),
    ("check_seed_batch", lambda t: lab.check_seed_batch(True, LCFG), "`n` must be a number of seeds"),
    ("check_seed_batch", lambda t: lab.check_seed_batch(2, {"steps": 1}), "`cfg` must be a LabConfig"),
    ("warm_starts", lambda t: lab.warm_starts([0, 0], LCFG), r"duplicates \[0\]"),
    ("warm_starts", lambda t: lab.warm_starts("0-3", LCFG), "`seeds` must be a count"),
    ("warm_starts", lambda t: lab.warm_starts([-1], LCFG), "`seeds` must be a count"),
    ("warm_starts", lambda t: lab.warm_starts(1000, BIG), "seeds fit in one batch"),
    ("warm_starts", lambda t: lab.warm_starts([0], None), "`cfg` must be a LabConfig"),
    ("train_many", lambda t: lab.train_many("ppo", [0], LCFG, [_W]), "valid algorithms"),
    ("train_many", lambda t: lab.train_many("grpo", [0, 1, 0], LCFG, [_W] * 3), r"duplicates \[0\]"),
    ("train_many", lambda t: lab.train_many("grpo", [0, 1], LCFG, [_W]), "one `prepare_warm_start` result per seed"),
    ("train_many", lambda t: lab.train_many("grpo", [0], LCFG, [_W], prms=["a", "b"]), "one PRM file per seed"),
    ("train_many", lambda t: lab.train_many("grpo+prm", [0], LCFG, [_W]), "needs a PRM checkpoint file for every seed"),
    ("train_many", lambda t: lab.train_many("grpo", [0], LCFG, [_W], checkpoints=_file(t)), "is a file; name a folder"),
    ("train_many", lambda t: _batch_changed(t), r"belongs to a batch of seeds \[0, 1\], but this run batches the seeds \[0\]"),
    ("lab_variant", lambda t: lab.lab_variant("longest"), "unknown task variant 'longest'; valid variants: default, long, carry, distractor"),
    ("lab_variant", lambda t: lab.lab_variant("LONG"), "unknown task variant 'LONG'"),
    ("lab_variant", lambda t: lab.lab_variant(""), "unknown task variant ''"),
    ("lab_variant", lambda t: lab.lab_variant(None), "unknown task variant None"),
    ("lab_variant", lambda t: lab.lab_variant(["long"]), "unknown task variant"),
    ("LabConfig.validate", lambda t: lab.LabConfig(task="longest").validate(), "unknown task variant 'longest'"),
    ("run_ablation", lambda t: lab.run_ablation(["grpo"], [1, 1], LCFG, t / "o", progress=False), "duplicates"),
    ("run_ablation", lambda t: lab.run_ablation(["grpo", "grpo"], 1, LCFG, t / "o", progress=False), "duplicates"),
    ("run_ablation", lambda t: lab.run_ablation([], 1, LCFG, t / "o", progress=False), "`algos` is empty"),
    ("run_ablation", lambda t: lab.run_ablation(["grpo"], 0, LCFG, t / "o", progress=False), "`seeds`"),
    ("run_ablation", lambda t: lab.run_ablation(["grpo"], ["a"], LCFG, t / "o", progress=False), "`seeds`"),
    ("run_ablation", lambda t: lab.run_ablation(["grpo"], 1, LCFG, t / "o", workers=0, progress=False), "`workers`"),
    ("run_ablation", lambda t: lab.run_ablation(["grpo"], 1, {"steps": 1}, t / "o", progress=False), "`cfg`"),
    ("summarize", lambda t: lab.summarize(GOOD_DF.iloc[:0]), "no rows"),
    ("summarize", lambda t: lab.summarize(GOOD_DF.drop(columns=["eval_acc"])), "`df`"),
    ("summarize", lambda t: lab.summarize(None), "`df`"),
    ("summarize", lambda t: lab.summarize(GOOD_DF, final_evals=0), "`final_evals`"),
    ("evaluate", lambda t: lab.evaluate(LPOL, LTOK, LHELD, generator=torch.Generator(), samples=0), "`samples`"),
    ("LabConfig", lambda t: lab.LabConfig(eval_samples=0).validate(), "`eval_samples`"),
    ("LabConfig", lambda t: lab.LabConfig(final_evals=1.5).validate(), "`final_evals`"),
    ("summarize", lambda t: lab.summarize([1, 2]), "`df`"),
    ("summarize", lambda t: lab.summarize(GOOD_DF[GOOD_DF.step > 0]), "step 0"),
    ("summary_markdown", lambda t: lab.summary_markdown(None), "`summ`"),
    ("summary_markdown", lambda t: lab.summary_markdown(GOOD_DF), "`summ`"),
    ("summary_markdown", lambda t: lab.summary_markdown(pd.DataFrame()), "`summ`"),
    ("summary_markdown", lambda t: lab.summary_markdown("table"), "`summ`"),
    ("summary_markdown", lambda t: lab.summary_markdown(lab.summarize(GOOD_DF).drop(columns=["seeds"])), "`summ`"),
    ("sign_flip_p", lambda t: lab.sign_flip_p([]), "`d` must be"),
    ("sign_flip_p", lambda t: lab.sign_flip_p([[0.1, 0.2]]), "`d` must be"),
    ("sign_flip_p", lambda t: lab.sign_flip_p([0.1, NAN]), "`d` must be"),
    ("sign_flip_p", lambda t: lab.sign_flip_p([INF]), "`d` must be"),
    ("sign_flip_p", lambda t: lab.sign_flip_p("abc"), "`d` must be"),
    ("sign_flip_p", lambda t: lab.sign_flip_p(None), "`d` must be"),
    ("paired_differences", lambda t: lab.paired_differences(None), "`df`"),
    ("paired_differences", lambda t: lab.paired_differences(GOOD_DF.drop(columns=["eval_acc"])), "`df` lacks"),
    ("paired_differences", lambda t: lab.paired_differences(GOOD_DF, baseline="nope"), "unknown algorithm 'nope'"),
    ("paired_differences", lambda t: lab.paired_differences(GOOD_DF, baseline="dapo"), "`baseline` 'dapo' has no runs"),
    ("paired_differences", lambda t: lab.paired_differences(GOOD_DF, metrics=("final_nope",)), "unknown metric"),
    ("paired_differences", lambda t: lab.paired_differences(GOOD_DF.iloc[:0]), "no rows"),
    ("paired_markdown", lambda t: lab.paired_markdown(None), "`pairs`"),
    ("paired_markdown", lambda t: lab.paired_markdown("table"), "`pairs`"),
    ("paired_markdown", lambda t: lab.paired_markdown(pd.DataFrame()), "`pairs`"),
    ("paired_markdown", lambda t: lab.paired_markdown(GOOD_DF), "`pairs`"),
    ("paired_markdown", lambda t: lab.paired_markdown(lab.summarize(GOOD_DF)), "`pairs`"),
    ("lab_prm", lambda t: _lab_prm(0, LCFG, {}, t), "`warm` must be"),
    ("lab_prm", lambda t: _lab_prm(0, None, {"state": LPOL.state_dict()}, t), "`cfg` must be a LabConfig"),
    ("lab_prm", lambda t: _lab_prm(0, LCFG, {"state": LPOL.state_dict()}, t, method="nope"), "`method` must be one of"),
    ("lab_prm", lambda t: _lab_prm(0, LCFG, {"state": LPOL.state_dict()}, t, n_problems=0), "`n_problems` must be"),
    ("lab_prm", lambda t: _lab_prm(0, LCFG, {"state": LPOL.state_dict()}, t, n_problems=10**6), "exceeds the training pool"),
    ("lab_prm", lambda t: _lab_prm(0, LCFG, {"state": LPOL.state_dict()}, t, prm_steps=0), "`prm_steps` must be"),
    ("plot_curves", lambda t: lab.plot_curves(GOOD_DF, ["accuracy_x"]), "unknown metric"),
    ("plot_curves", lambda t: lab.plot_curves(GOOD_DF, []), "`metrics`"),
    ("plot_curves", lambda t: lab.plot_curves(GOOD_DF, smooth=0), "`smooth`"),
    ("plot_curves", lambda t: lab.plot_curves(GOOD_DF, smooth="5"), "`smooth`"),
    ("plot_curves", lambda t: lab.plot_curves(None), "`df`"),
    ("plot_curves", lambda t: lab.plot_curves(GOOD_DF.iloc[:0]), "`df`"),
    # a task with too few distinct problems used to loop forever (every prompt held out): now it says how many exist
    # the split holds out a share of every operand count (at least one problem each side), so a tiny task still splits:
    ("lab_data", lambda t: lab.lab_data(lab.LabConfig(max_operand=1, min_ops=2, max_ops=2, heldout_frac=0.0)), "`heldout_frac`"),
    ("lab_data", lambda t: lab.lab_data(lab.LabConfig(max_operand=2, min_ops=2, max_ops=2, heldout_frac=1.0)), "`heldout_frac`"),
    ("make_problems", lambda t: lab.make_problems(3, max_operand=1, min_ops=2, max_ops=2, exclude={"1+1:", "1-1:"}), "only 2 distinct problems"),
    # ---------------------------------------------------------------- ktae_lab.prm_lab: budgets, cross-validated F1, candidates
    ("scaled_budgets", lambda t: prm_lab.scaled_budgets(0.3), "not whole numbers"),
    ("scaled_budgets", lambda t: prm_lab.scaled_budgets(1.0), "only scale 0.5"),
    ("scaled_budgets", lambda t: prm_lab.scaled_budgets(0), "`scale`"),
    ("scaled_budgets", lambda t: prm_lab.scaled_budgets(NAN), "`scale`"),
    ("scaled_budgets", lambda t: prm_lab.scaled_budgets("0.5"), "`scale`"),
    ("cv_threshold_f1", lambda t: prm_lab.cv_threshold_f1([[0.2]] * 4, [None] * 4, [0, 0, 1, 1], folds=4), "needs at least 4 problems"),
    ("cv_threshold_f1", lambda t: prm_lab.cv_threshold_f1([[0.2]] * 4, [None] * 3, [0, 1, 2, 3]), "same length"),
    ("cv_threshold_f1", lambda t: prm_lab.cv_threshold_f1([[NAN]] * 4, [None] * 4, [0, 1, 2, 3]), "`scores"),
    ("cv_threshold_f1", lambda t: prm_lab.cv_threshold_f1([[0.2]] * 4, [None] * 4, [0, 1, 2, 3], folds=1), "`folds`"),
    ("cv_threshold_f1", lambda t: prm_lab.cv_threshold_f1([[0.2]] * 4, [None] * 4, [0, 1, 2, 3], folds=2.5), "`folds`"),
    ("best_of_n", lambda t: prm_lab.best_of_n([[1, 0]], dict(o=[[1, 0]]), ns=(2,), eligible=[[1, 0, 1]]), "`eligible`"),
    ("best_of_n", lambda t: prm_lab.best_of_n([[1, 0]], dict(o=[[1, 0]]), ns=(2,), eligible=[[2, 0]]), "`eligible`"),
    ("PRMLabConfig.validate", lambda t: prm_lab.PRMLabConfig(budgets={"nope": {}}).validate(), "`budgets`"),
    ("PRMLabConfig.validate", lambda t: prm_lab.PRMLabConfig(budgets=[1]).validate(), "`budgets`"),
    ("PRMLabConfig.validate", lambda t: prm_lab.PRMLabConfig(threshold_folds=0).validate(), "`threshold_folds`"),
    ("annotator_table", lambda t: prm_lab.annotator_table(pd.DataFrame(dict(response=["1#1"], correct=[True], first_wrong=[None])),
                                                          {"math_shepherd": []}), "has 0 entries for 1 solutions"),
]


def _summary_df():
    return pd.DataFrame({"group_id": ["a", "a"], "reward": [1.0, 0.0], "truncated": [False, False],
                         "token_ids": [[1, 2], [3]], "meta": [{}, {}]})


def _opt():
    return torch.optim.SGD(LPOL.parameters(), lr=0.0)


@pytest.mark.parametrize("name, call, msg", CASES, ids=[f"{i:03d}-{c[0]}" for i, c in enumerate(CASES)])
def test_bad_input_gets_a_clear_error(name, call, msg, tmp_path):
    with pytest.raises((ValueError, TypeError, FileNotFoundError)) as e:
        call(tmp_path)
    import re
    assert re.search(msg, str(e.value)), f"{name}: unclear message {str(e.value)!r}"


def test_every_public_function_has_five_bad_inputs():
    import collections, inspect
    counts = collections.Counter(c[0] for c in CASES)
    public = []
    for mod in (lm, completers, sampling):
        for n in mod.__all__:
            obj = getattr(mod, n)
            if inspect.isfunction(obj) and inspect.signature(obj).parameters and n != "sample_main": public.append(n)
    for n in lab.__all__:
        obj = getattr(lab, n)
        if inspect.isfunction(obj) and inspect.signature(obj).parameters and n != "ablate_main": public.append(n)
    public += ["SampleConfig.validate", "LabConfig.validate", "TransformersCompleter", "TransformersCompleter.__call__"]
    few = {n: counts[n] for n in public if counts[n] < 5}
    assert not few, f"fewer than five bad inputs: {few}"
