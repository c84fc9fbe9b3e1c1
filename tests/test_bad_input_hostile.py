"""Hostile inputs to the surfaces added last (process reward models, credit, the lab's checkpoints and ablation folders,
the explorers, the command line): one table, measured as a census and run as tests.

Each row: (id, surface, call(tmp) -> result, expect) where `expect` is a regular expression the error message must
match (a clear error) or a function result -> bool (a right answer); `fails_as` is the class a row falls in when its
call returns without the expected answer (a security hole for the crafted checkpoint and the HTML rows).

Census (one command, any tree on PYTHONPATH): `PYTHONPATH=<tree> python tests/test_bad_input_hostile.py [-v]`
prints the count per class: security hole, data loss, hang, silently wrong, traceback, unclear error, clear error,
right answer."""
import contextlib, errno, io, json, math, os, re, signal, sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

torch.set_num_threads(1)
NAN, INF = float("nan"), float("inf")
SUR = "\ud800"                  # a lone surrogate: a str Python holds but UTF-8 cannot write
DEEP = "[" * 100_000 + "]" * 100_000


class WorkStarted(Exception):
    "The expensive step began: the input passed every check."


def _started(*a, **k): raise WorkStarted()


@contextlib.contextmanager
def patched(*pairs):
    "Replace module attributes (module, name, value) for the duration."
    saved = []
    for mod, name, val in pairs:
        if hasattr(mod, name): saved.append((mod, name, getattr(mod, name))); setattr(mod, name, val)
    try: yield
    finally:
        for mod, name, val in saved: setattr(mod, name, val)


def cli(*argv, stub=()):
    "Run `ktae-lab ARGV` in-process: rc 0 -> the stdout; rc 2 with one `ktae-lab ...: error:` line -> ValueError(line)."
    from ktae_lab.cli import main
    out, err = io.StringIO(), io.StringIO()
    try:
        with patched(*stub), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main(list(argv))
    except SystemExit as e: rc = e.code if isinstance(e.code, int) else 1
    text = err.getvalue().strip("\n")
    if rc == 0: return out.getvalue()
    lines = text.split("\n")
    if "WorkStarted" in text: raise WorkStarted()
    if "Traceback" in text: raise RuntimeError(f"traceback on stderr: {lines[-1]}")
    if rc == 2 and lines[-1].startswith("ktae-lab") and ": error: " in lines[-1]: raise ValueError(lines[-1])   # notes may come before it
    raise RuntimeError(f"exit {rc}, stderr {text[-300:]!r}")


def enospc_write(*a, **k): raise OSError(errno.ENOSPC, "No space left on device")


# ------------------------------------------------------------------------------------------------ shared objects
def _tok():
    from ktae_lab.task import lab_tokenizer
    return lab_tokenizer()


def _prm(nan=False):
    from ktae_lab.prm import PRMConfig, ProcessRewardModel
    p = ProcessRewardModel(_tok(), PRMConfig(d_model=16, n_layers=1, n_heads=2, steps=2, batch_size=4), label_source="test", task="ktae_lab.arithmetic")
    if nan:
        with torch.no_grad():
            for q in p.parameters(): q.fill_(NAN)
    return p


def _ann(**kw):
    a = dict(id="a", question="1+2:", reference_answer="3", status="ok", error=None, method="epic_adaptive", correct=False,
             first_error=1, labels=[1, 0], soft_labels=None, rollouts=4, tokens=8,
             probes=[dict(step=0, estimate=0.5, count_estimate=0.5, rollouts=2, tokens=4, lo=0, hi=1, is_error=False)],
             baseline=dict(k=4, v0=0.5, skipped=False, pilot_correct=2, rollouts=4, tokens=8))
    a.update(kw); return a


def _file(tmp, name, data):
    p = Path(tmp) / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    return p


def _rollout_lines(*extra):
    base = [json.dumps({"group_id": "g", "token_ids": [1, 2], "reward": 1.0}), json.dumps({"group_id": "g", "token_ids": [3], "reward": 0.0})]
    return ("\n".join(base + list(extra)) + "\n")


def _steps_advantage(rew, valid, steps, G=2):
    from ktae_lab.lab import process_advantages
    return process_advantages(rew, valid, steps, G)


_R = torch.tensor([[1., 1.], [1., 0.]]); _V = torch.ones(2, 2, dtype=torch.bool); _ST = torch.tensor([[0, 0, 1, 1, -1], [0, 1, 1, -1, -1]])
_IV = torch.tensor([[True, True], [True, False]])


def _same_as_finite(bad):
    "A non-finite reward at an invalid step gives what any finite value there gives."
    a = _steps_advantage(torch.tensor([[1., 1.], [1., bad]]), _IV, _ST)
    b = _steps_advantage(torch.tensor([[1., 1.], [1., 5.]]), _IV, _ST)
    return torch.equal(a, b) and bool(torch.isfinite(a).all())


def _scale_free(scale, dtype=torch.float32):
    a = _steps_advantage(_R.to(dtype) * scale, _V, _ST)
    b = _steps_advantage(_R, _V, _ST)
    return bool(torch.allclose(a.float(), b.float(), atol=1e-4))


def _ablate_twice(tmp, first, second, via_cli=False):
    "Run an ablation folder with the PRM made one way, then another way, the runs themselves stubbed out."
    import ktae_lab.lab as lab
    from ktae_lab.prm_lab import lab_prm
    def empty(algos, seeds, cfg, out, *a, **k):           # the runs stubbed out; the summary the CLI prints
        if out is not None: Path(out, "summary.md").write_text("stub\n")
        return pd.DataFrame()
    if via_cli:
        base = ["ablate", "-o", str(Path(tmp) / "abl"), "--algos", "grpo+prm", "--seeds", "1", "--steps", "1", "--workers", "1", "--no-progress"]
        cli(*base, "--prm-method", first, stub=[(lab, "_run_ablation", empty)])
        return cli(*base, "--prm-method", second, stub=[(lab, "_run_ablation", empty)])
    cfg = lab.LabConfig(steps=1, progress=False)
    with patched((lab, "_run_ablation", empty)):
        lab.run_ablation(["grpo+prm"], 1, cfg, Path(tmp) / "abl", prm=partial(lab_prm, **first))
        return lab.run_ablation(["grpo+prm"], 1, cfg, Path(tmp) / "abl", prm=partial(lab_prm, **second))


def _pipeline(tmp, **kw):
    "run_prm_pipeline with the per-seed work stubbed: WorkStarted when every check passed."
    import ktae_lab.prm_lab as pl
    with patched((pl, "_seed_run", _started)):
        return pl.run_prm_pipeline(Path(tmp) / kw.pop("folder", "pipe"), quick=True, progress=False, device="cpu", **kw)


def _pipeline_config(tmp, text):
    d = Path(tmp) / "pipe"; d.mkdir(exist_ok=True); _file(d, "config.json", text)
    return _pipeline(tmp)


def _ablation(tmp, **kw):
    import ktae_lab.lab as lab
    with patched((lab, "_run_ablation", _started)):
        return lab.run_ablation(["grpo"], cfg=lab.LabConfig(steps=1, progress=False), out=Path(tmp) / "abl", **kw)


def _ablation_config(tmp, text):
    d = Path(tmp) / "abl"; d.mkdir(exist_ok=True); (d / "config.json").write_text(text)
    return _ablation(tmp, seeds=1)


def _full_disk(fn):
    "Run `fn` with every file write failing with ENOSPC (as a full disk does)."
    import ktae_lab.data as data
    real = os.fdopen
    class Full(io.BufferedWriter):
        def write(self, b): raise OSError(errno.ENOSPC, "No space left on device")
    def fdopen(fd, mode="r", *a, **k):
        f = real(fd, mode, *a, **k)
        if "w" in mode or "a" in mode:
            f.close(); raise OSError(errno.ENOSPC, "No space left on device")
        return f
    with patched((data.os, "fdopen", fdopen)), patched((os, "write", enospc_write)):
        return fn()


def _annotate_many(is_correct, **kw):
    "annotate_many on two lab solutions with a completer that must not be reached when the input is refused."
    from ktae_lab.credit import annotate_many
    def comp(*a, **k): raise WorkStarted()
    return annotate_many(["1+2:", "2+2:"], [["1+2=3", "#3"], ["2+2=5", "#5"]], ["3", "4"], comp, "math_shepherd",
                         is_correct=is_correct, progress=False, **kw)


def _widgets():
    from ktae_lab import widgets
    return widgets


# ------------------------------------------------------------------------------------------------ the table
def H(id, surface, call, expect, fails_as="silently wrong"):
    "`fails_as`: the class of a right-answer row whose check fails (a security hole, data loss)."
    return (id, surface, call, expect, fails_as)


def _m(name):
    import importlib
    return importlib.import_module(f"ktae_lab.{name}")


CASES = [
    # ---------------------------------------------------------------- 24_prm
    H("prmcfg-d_model-0", "prm", lambda t: _m("prm").PRMConfig(d_model=0).validate() if hasattr(_m("prm").PRMConfig, "validate") else _m("prm").ProcessRewardModel(_tok(), _m("prm").PRMConfig(d_model=0)), r"`d_model`"),
    H("prmcfg-lr-nan", "prm", lambda t: _m("prm").ProcessRewardModel(_tok(), _m("prm").PRMConfig(lr=NAN)), r"`lr`"),
    H("prmcfg-sep-empty", "prm", lambda t: _m("prm").ProcessRewardModel(_tok(), _m("prm").PRMConfig(sep="")), r"`sep`"),
    H("prmcfg-heads-divide", "prm", lambda t: _m("prm").ProcessRewardModel(_tok(), _m("prm").PRMConfig(d_model=16, n_heads=3)), r"`n_heads`|`d_model`"),
    H("prmcfg-steps-float", "prm", lambda t: _m("prm").ProcessRewardModel(_tok(), _m("prm").PRMConfig(steps=2.5)), r"`steps`"),
    H("prm-tokenizer-none", "prm", lambda t: _m("prm").ProcessRewardModel(None), r"`tokenizer`"),
    H("prm-cfg-str", "prm", lambda t: _m("prm").ProcessRewardModel(_tok(), cfg="small"), r"`cfg`"),
    H("encode-response-int", "prm", lambda t: _m("prm").encode_steps(_tok(), ["1+2:"], [123]), r"`responses"),
    H("encode-lengths", "prm", lambda t: _m("prm").encode_steps(_tok(), ["1+2:"], ["3", "4"]), r"one response per prompt|same length"),
    H("encode-prompt-surrogate", "prm", lambda t: _m("prm").encode_steps(_tok(), ["1+2:" + SUR], ["1+2=3"]), r"`prompts|surrogate|alphabet|character"),
    H("encode-response-surrogate", "prm", lambda t: _m("prm").encode_steps(_tok(), ["1+2:"], ["1+2=3" + SUR]), r"`responses|surrogate|alphabet|character"),
    H("encode-step-not-str", "prm", lambda t: _m("prm").encode_steps(_tok(), ["1+2:"], [["1+2=3", 4]]), r"`responses"),
    H("score-nan-weights", "prm", lambda t: _m("prm").score_steps(_prm(nan=True), ["1+2:"], ["1+2=3,#3"]), r"NaN"),
    H("score-batch-0", "prm", lambda t: _m("prm").score_steps(_prm(), ["1+2:"], ["3"], batch_size=0), r"`batch_size`"),
    H("score-prm-str", "prm", lambda t: _m("prm").score_steps("prm.pt", ["1+2:"], ["3"]), r"`prm`"),
    H("score-lengths", "prm", lambda t: _m("prm").score_steps(_prm(), ["1+2:", "2+2:"], ["3"]), r"same length"),
    H("score-prompts-str", "prm", lambda t: _m("prm").score_steps(_prm(), "1+2:", ["3"]), r"`prompts`"),
    H("prm-loss-shape", "prm", lambda t: _m("prm").prm_loss(torch.zeros(2, 3), torch.zeros(2, 2), torch.ones(2, 3, dtype=torch.bool)), r"same shape"),
    H("prm-loss-target-nan", "prm", lambda t: _m("prm").prm_loss(torch.zeros(1, 2), torch.tensor([[NAN, 1.]]), torch.ones(1, 2, dtype=torch.bool)), r"`targets`"),
    H("train-target-2", "prm", lambda t: _m("prm").train_prm(_prm(), ["1+2:"], ["1+2=3"], [[2.0]]), r"`targets\[0\]`"),
    H("train-target-str", "prm", lambda t: _m("prm").train_prm(_prm(), ["1+2:"], ["1+2=3"], [["1"]]), r"`targets\[0\]`"),
    H("train-targets-str", "prm", lambda t: _m("prm").train_prm(_prm(), ["1+2:"], ["1+2=3"], "1"), r"`targets`"),
    H("train-target-nan", "prm", lambda t: _m("prm").train_prm(_prm(), ["1+2:"], ["1+2=3"], [[NAN]]), r"`targets\[0\]`"),
    H("targets-no-method", "prm", lambda t: _m("prm").annotation_targets({"labels": [1, 0], "status": "ok"}, 2), r"lacks method"),
    H("targets-nsteps-list", "prm", lambda t: _m("prm").annotation_targets(_ann(), [2]), r"`n_steps` must be an int"),
    H("targets-nsteps-str", "prm", lambda t: _m("prm").annotation_targets(_ann(), "2"), r"`n_steps` must be an int"),
    H("targets-labels-str", "prm", lambda t: _m("prm").annotation_targets(_ann(labels="10"), 2), r"`ann\['labels'\]`"),
    H("targets-soft-nan", "prm", lambda t: _m("prm").annotation_targets(_ann(method="math_shepherd", labels=[1, 0], soft_labels=[NAN, 0.]), 2, soft=True), r"soft_labels|NaN"),
    H("targets-probe-step-str", "prm", lambda t: _m("prm").annotation_targets(_ann(probes=[dict(step="0", estimate=0.5, count_estimate=0.5)]), 2, soft=True), r"step"),
    H("targets-probe-estimate-nan", "prm", lambda t: _m("prm").annotation_targets(_ann(probes=[dict(step=0, estimate=NAN, count_estimate=NAN)]), 2, soft=True), r"estimate|NaN"),
    H("targets-ann-list", "prm", lambda t: _m("prm").annotation_targets([1, 0], 2), r"`ann`"),
    H("save-prm-str", "prm", lambda t: _m("prm").save_prm("model", Path(t) / "x.pt"), r"`prm`"),
    H("save-prm-parent-file", "prm", lambda t: _m("prm").save_prm(_prm(), _file(t, "afile", "x") / "x.pt"), r"afile"),
    H("load-prm-missing", "prm", lambda t: _m("prm").load_prm(Path(t) / "missing.pt", _tok()), r"missing\.pt"),
    H("load-prm-torn", "prm", lambda t: _m("prm").load_prm(_file(t, "torn.pt", b"PK\x03\x04torn"), _tok()), r"torn\.pt"),
    H("fingerprint-none", "prm", lambda t: _m("prm").vocab_fingerprint(None), r"`tokenizer`"),
    # ---------------------------------------------------------------- 44_prm_lab
    H("first-error-threshold-nan", "prm_lab", lambda t: _m("prm_lab").predicted_first_error([[0.2]], threshold=NAN), r"`threshold`"),
    H("first-error-threshold-str", "prm_lab", lambda t: _m("prm_lab").predicted_first_error([[0.2]], threshold="0.5"), r"`threshold`"),
    H("first-error-score-nan", "prm_lab", lambda t: _m("prm_lab").predicted_first_error([[0.9, NAN]]), r"`scores`.*NaN|NaN"),
    H("first-error-scores-str", "prm_lab", lambda t: _m("prm_lab").predicted_first_error("0.3"), r"`scores`"),
    H("processbench-none", "prm_lab", lambda t: _m("prm_lab").processbench_scores(None, None), r"`predicted`"),
    H("processbench-lengths", "prm_lab", lambda t: _m("prm_lab").processbench_scores([0], [0, 1]), r"same length"),
    H("bon-draws-0", "prm_lab", lambda t: _m("prm_lab").best_of_n([[1, 0]], dict(o=[[1, 0]]), ns=(2,), draws=0), r"`draws`"),
    H("bon-scores-nan", "prm_lab", lambda t: _m("prm_lab").best_of_n([[1, 0], [0, 1]], dict(prm=[[0.2, NAN], [NAN, 0.3]]), ns=(2,)), r"NaN"),
    H("bon-ns-int", "prm_lab", lambda t: _m("prm_lab").best_of_n([[1, 0]], dict(o=[[1, 0]]), ns=2), r"`ns`"),
    H("bon-scores-list", "prm_lab", lambda t: _m("prm_lab").best_of_n([[1, 0]], [[1, 0]], ns=(2,)), r"`scores`"),
    H("bon-correct-2", "prm_lab", lambda t: _m("prm_lab").best_of_n([[2, 0]], dict(o=[[1, 0]]), ns=(2,)), r"`correct`"),
    H("bon-seed-negative", "prm_lab", lambda t: _m("prm_lab").best_of_n([[1, 0]], dict(o=[[1, 0]]), ns=(2,), seed=-1), r"`seed`"),
    H("bon-scores-str", "prm_lab", lambda t: _m("prm_lab").best_of_n([[1, 0]], dict(o=[["a", "b"]]), ns=(2,)), r"`scores\['o'\]`"),
    H("pipeline-seeds-str", "prm_lab", lambda t: _pipeline(t, seeds="12"), r"`seeds`"),
    H("pipeline-seeds-float", "prm_lab", lambda t: _pipeline(t, seeds=2.5), r"`seeds` must be a count"),
    H("pipeline-seeds-huge", "prm_lab", lambda t: _pipeline(t, seeds=[0, 10**20]), r"`seeds`"),
    H("pipeline-seeds-dict", "prm_lab", lambda t: _pipeline(t, seeds={0: 1}), r"`seeds`"),
    H("pipeline-config-torn", "prm_lab", lambda t: _pipeline_config(t, '{"warm_steps": 4'), r"config\.json"),
    H("pipeline-config-list", "prm_lab", lambda t: _pipeline_config(t, '[1, 2]'), r"config\.json"),
    H("pipeline-config-deep", "prm_lab", lambda t: _pipeline_config(t, DEEP), r"config\.json"),
    H("pipeline-config-latin1", "prm_lab", lambda t: _pipeline_config(t, b'{"w": "caf\xe9"}'), r"config\.json"),
    H("cache-jsonl-torn-middle", "prm_lab", lambda t: _m("prm_lab")._read_records(_file(t, "c.jsonl", '{"row": 0}\n{"row": 1\n{"row": 2}\n')), r"c\.jsonl, line 2"),
    H("cache-jsonl-latin1", "prm_lab", lambda t: _m("prm_lab")._read_records(_file(t, "c.jsonl", b'{"row": 0, "q": "caf\xe9"}\n')), r"c\.jsonl, line 1"),
    H("cache-jsonl-no-row", "prm_lab", lambda t: _m("prm_lab")._read_records(_file(t, "c.jsonl", '{"id": 0}\n')), r"c\.jsonl, line 1"),
    H("cache-jsonl-deep", "prm_lab", lambda t: _m("prm_lab")._read_records(_file(t, "c.jsonl", '{"row": 0}\n' + DEEP + "\n{\"row\": 1}\n")), r"c\.jsonl, line 2"),
    H("pipeline-out-file", "prm_lab", lambda t: _pipeline(t, folder=_file(t, "afile", "x").name), r"is a file"),
    H("pipeline-cfg-str", "prm_lab", lambda t: _m("prm_lab").run_prm_pipeline(Path(t) / "p", cfg="quick", progress=False), r"`cfg`"),
    H("prmlabcfg-ns-0", "prm_lab", lambda t: _m("prm_lab").PRMLabConfig(ns=(0,)).validate(), r"`ns`"),
    H("prmlabcfg-methods", "prm_lab", lambda t: _m("prm_lab").PRMLabConfig(methods=("nope",)).validate(), r"`methods`|nope"),
    H("prmlabcfg-draws-0", "prm_lab", lambda t: _m("prm_lab").PRMLabConfig(draws=0).validate(), r"`draws`"),
    H("prmlabcfg-seedsamples-str", "prm_lab", lambda t: _m("prm_lab").PRMLabConfig(n_samples="32").validate(), r"`n_samples`"),
    H("markdown-table-str", "prm_lab", lambda t: _m("prm_lab").markdown_table("x"), r"`df`"),
    H("plot-bon-empty", "prm_lab", lambda t: _m("prm_lab").plot_best_of_n(pd.DataFrame()), r"`eval_df`"),
    H("lab-prm-seed-str", "prm_lab", lambda t: _m("prm_lab").lab_prm("0", _m("lab").LabConfig(), {"state": {}}, t), r"`seed`"),
    H("lab-prm-seed-huge", "prm_lab", lambda t: _m("prm_lab").lab_prm(10**20, _m("lab").LabConfig(), {"state": {}}, t), r"`seed`"),
    # ---------------------------------------------------------------- 43_credit
    H("many-is-correct-str", "credit", lambda t: _annotate_many(["False", "True"]), r"`is_correct`"),
    H("many-is-correct-2", "credit", lambda t: _annotate_many([2, 0]), r"`is_correct`"),
    H("many-is-correct-str-scalar", "credit", lambda t: _annotate_many("FT"), r"`is_correct`"),
    H("many-workers-0", "credit", lambda t: _annotate_many(None, workers=0), r"`workers`"),
    H("many-lengths", "credit", lambda t: _m("credit").annotate_many(["q"], [["a"], ["b"]], ["1"], _started, progress=False), r"same length"),
    H("annotate-is-correct-str", "credit", lambda t: _m("epicprm").annotate("1+2:", ["1+2=3", "#3"], "3", _started, "math_shepherd", is_correct="False"), r"`is_correct`"),
    H("auroc-nan", "credit", lambda t: _m("credit").auroc(torch.tensor([NAN, 0.2, 0.3]), torch.tensor([1, 0, 1])), r"`scores`|NaN"),
    H("auroc-list", "credit", lambda t: _m("credit").auroc([0.1, 0.2], [0, 1]), lambda r: r == 1.0),
    H("auroc-labels-2", "credit", lambda t: _m("credit").auroc(torch.tensor([0.1, 0.2]), torch.tensor([0, 2])), r"`labels`"),
    H("auroc-lengths", "credit", lambda t: _m("credit").auroc(torch.tensor([0.1, 0.2]), torch.tensor([0, 1, 1])), r"`labels`|`scores`"),
    H("rollout-auroc-shapes", "credit", lambda t: _m("credit").rollout_auroc(torch.zeros(2, 3), torch.zeros(3, 2)), r"`scores`.*`labels`"),
    H("rollout-auroc-1d", "credit", lambda t: _m("credit").rollout_auroc(torch.zeros(3), torch.zeros(3)), r"`scores`.*`labels`"),
    H("rollout-auroc-nan", "credit", lambda t: _m("credit").rollout_auroc(torch.tensor([[NAN, 0.2]]), torch.tensor([[1, 0]])), r"`scores`|NaN"),
    H("rollout-auroc-empty", "credit", lambda t: _m("credit").rollout_auroc(torch.zeros(0, 4), torch.zeros(0, 4)), lambda r: r[0].item() == 0.5 and r[1] == 0),
    H("ktae-null-perm-0", "credit", lambda t: _m("credit").ktae_null({}, n_perm=0), r"`n_perm`"),
    H("ktae-null-chunk-bool", "credit", lambda t: _m("credit").ktae_null({}, chunk=True), r"`chunk`"),
    H("ktae-null-seed-neg", "credit", lambda t: _m("credit").ktae_null({}, seed=-1), r"`seed`"),
    H("pairwise-intervals-str", "credit", lambda t: _m("credit").pairwise_intervals("x"), r"`scores`"),
    H("pairwise-intervals-col", "credit", lambda t: _m("credit").pairwise_intervals(pd.DataFrame({"method": ["a"], "hit": [True]}), metric="nope"), r"nope"),
    H("pairwise-intervals-level", "credit", lambda t: _m("credit").pairwise_intervals(pd.DataFrame({"method": ["a"], "hit": [True]}), level=1.0), r"`level`"),
    H("pairwise-intervals-unpaired", "credit", lambda t: _m("credit").pairwise_intervals(pd.DataFrame({"method": ["a", "a", "b"], "hit": [True, False, True]})), r"same solutions"),
    H("token-truth-float", "credit", lambda t: _m("credit").token_truth(torch.tensor([[0, 1, -1]]), [1.5]), r"`first_wrong`"),
    H("token-truth-str", "credit", lambda t: _m("credit").token_truth(torch.tensor([[0, 1, -1]]), "1"), r"`first_wrong`"),
    H("token-truth-steps-list", "credit", lambda t: _m("credit").token_truth([[0, 1]], [1]), r"`steps`"),
    H("sentence-steps-int", "credit", lambda t: _m("credit").sentence_steps(5), r"`text`"),
    H("sentence-steps-surrogate", "credit", lambda t: _m("credit").sentence_steps("a = 1. b" + SUR + " = 2."), lambda r: isinstance(r, list) and all(isinstance(x, str) for x in r) and SUR in "".join(r)),
    H("probe-values-no-method", "credit", lambda t: _m("credit").probe_step_values({"labels": [1, 0], "status": "ok", "probes": []}, 2), r"method"),
    H("probe-values-nsteps-str", "credit", lambda t: _m("credit").probe_step_values(_ann(), "2"), r"`n_steps`"),
    H("method-table-str", "credit", lambda t: _m("credit").method_table("x"), r"`scores`"),
    H("seed-spread-col", "credit", lambda t: _m("credit").seed_spread(pd.DataFrame({"m": ["a"], "seed": [0], "v": [1.0]}), "m", ["nope"]), r"nope"),
    H("hand-agreement-str", "credit", lambda t: _m("credit").hand_agreement("x"), r"`records`"),
    H("completer-temp-nan", "credit", lambda t: _m("credit").LabCompleter(torch.nn.Linear(1, 1), _tok(), temperature=NAN), r"`temperature`"),
    H("completer-rows-0", "credit", lambda t: _m("credit").LabCompleter(torch.nn.Linear(1, 1), _tok(), max_rows=0), r"`max_rows`"),
    H("lab-policy-seed-neg", "credit", lambda t: _m("credit").lab_policy(-1), r"`seed`"),
    H("lab-policy-rl-neg", "credit", lambda t: _m("credit").lab_policy(0, rl_steps=-1), r"`rl_steps`"),
    H("lab-policy-algo", "credit", lambda t: _m("credit").lab_policy(0, rl_steps=1, algo="nope"), r"nope"),
    H("lab-policy-cfg-str", "credit", lambda t: _m("credit").lab_policy(0, cfg="small"), r"`cfg`"),
    H("lab-policy-warm-str", "credit", lambda t: _m("credit").lab_policy(0, warm="warm.pt"), r"`warm`"),
    H("lab-policy-seed-huge", "credit", lambda t: _m("credit").lab_policy(10**20), r"`seed`"),
    # ---------------------------------------------------------------- 41_task
    H("first-wrong-finished-str", "task", lambda t: _m("task").first_wrong_step("1+2:", "1+2=3,#3", finished="False"), r"`finished`"),
    H("first-wrong-finished-none", "task", lambda t: _m("task").first_wrong_step("1+2:", "1+2=3,#3", finished=None), r"`finished`"),
    H("first-wrong-finished-np", "task", lambda t: _m("task").first_wrong_step("1+2:", _m("task").reference_solution("1+2:"), finished=np.bool_(False)), lambda r: r is not None),
    H("first-wrong-prompt-int", "task", lambda t: _m("task").first_wrong_step(5, "3"), r"`prompt`"),
    H("first-wrong-prompt-surrogate", "task", lambda t: _m("task").first_wrong_step("1+2:" + SUR, "3"), r"`prompt`"),
    H("first-wrong-response-surrogate", "task", lambda t: _m("task").first_wrong_step("1+2:", "1" + SUR), r"`response`"),
    H("solution-steps-sep-empty", "task", lambda t: _m("task").solution_steps("a,b", sep=""), r"`sep`"),
    H("token-steps-list", "task", lambda t: _m("task").token_steps([[1, 2]], [[1, 1]], 3), r"`responses`"),
    H("token-steps-sep-str", "task", lambda t: _m("task").token_steps(torch.tensor([[1, 2]]), torch.tensor([[1, 1]]), ","), r"`sep_token_id`"),
    # ---------------------------------------------------------------- 42_lab
    H("padv-nan-invalid", "lab", lambda t: _same_as_finite(NAN), lambda r: r is True),
    H("padv-inf-invalid", "lab", lambda t: _same_as_finite(INF), lambda r: r is True),
    H("padv-1e20", "lab", lambda t: _scale_free(1e20), lambda r: r is True),
    H("padv-1e300-f64", "lab", lambda t: _scale_free(1e300, torch.float64), lambda r: r is True),
    H("padv-int-rewards", "lab", lambda t: _steps_advantage(torch.tensor([[1, 1], [1, 0]]), _V, _ST), r"`step_rewards` must be a floating-point"),
    H("padv-steps-float", "lab", lambda t: _steps_advantage(_R, _V, _ST.float()), r"`steps`"),
    H("padv-steps-beyond", "lab", lambda t: _steps_advantage(_R, _V, _ST + 5), r"`steps`"),
    H("padv-group-float", "lab", lambda t: _steps_advantage(_R, _V, _ST, 2.0), r"`group_size`"),
    H("padv-nan-valid", "lab", lambda t: _steps_advantage(torch.tensor([[NAN, 1.], [1., 0.]]), _V, _ST), r"`step_rewards`"),
    H("ablation-seeds-float", "lab", lambda t: _ablation(t, seeds=2.5), r"`seeds` must be a count"),
    H("ablation-seeds-str", "lab", lambda t: _ablation(t, seeds="12"), r"`seeds`"),
    H("ablation-seeds-huge", "lab", lambda t: _ablation(t, seeds=[0, 10**20]), r"`seeds`"),
    H("ablation-seeds-none", "lab", lambda t: _ablation(t, seeds=None), r"`seeds`"),
    H("ablation-prm-method-mixed", "lab", lambda t: _ablate_twice(t, dict(method="epic_adaptive"), dict(method="math_shepherd")), r"prm"),
    H("ablation-prm-steps-mixed", "lab", lambda t: _ablate_twice(t, dict(method="epic_adaptive"), dict(method="epic_adaptive", prm_steps=5)), r"prm"),
    H("ablation-config-deep", "lab", lambda t: _ablation_config(t, DEEP), r"config\.json"),
    H("ablation-config-list", "lab", lambda t: _ablation_config(t, "[]"), r"config\.json"),
    H("sign-flip-nan", "lab", lambda t: _m("lab").sign_flip_p([NAN, 1.0, 2.0]), r"`d`|NaN"),
    H("sign-flip-str", "lab", lambda t: _m("lab").sign_flip_p("ab"), r"`d`"),
    H("cfg-threshold-none", "lab", lambda t: _m("lab").cfg_threshold(None), r"`cfg`"),
    # ---------------------------------------------------------------- 32_widgets, 30_viz, 21_epicprm readers
    H("parse-ids-surrogate", "widgets", lambda t: _widgets().parse_ids("1, " + SUR), r"`text`|token ids|integer"),
    H("parse-ids-int", "widgets", lambda t: _widgets().parse_ids(5), r"`text`"),
    H("parse-ids-400-digits", "widgets", lambda t: _widgets().parse_ids("9" * 400), r"token id|`text`|large"),
    H("load-records-latin1", "widgets", lambda t: _widgets().load_annotation_records(_file(t, "a.jsonl", b'{"id": "caf\xe9"}\n')), r"a\.jsonl.*line 1"),
    H("load-records-deep", "widgets", lambda t: _widgets().load_annotation_records(_file(t, "a.jsonl", json.dumps(_ann()) + "\n" + DEEP + "\n")), r"a\.jsonl.*line 2"),
    H("load-records-surrogate", "widgets", lambda t: _widgets().load_annotation_records(_file(t, "a.jsonl", b'{"id": "\xed\xa0\x80"}\n')), r"a\.jsonl.*line 1"),
    H("order-by-k-str", "widgets", lambda t: _widgets().order_by_abs_k("x"), r"`table`"),
    H("read-annotations-latin1", "epicprm", lambda t: _m("epicprm").read_annotations(_file(t, "a.jsonl", b'{"id": "caf\xe9"}\n')), r"a\.jsonl.*line 1"),
    H("read-annotations-deep", "epicprm", lambda t: _m("epicprm").read_annotations(_file(t, "a.jsonl", DEEP + "\n")), r"a\.jsonl.*line 1"),
    H("annotation-steps-int", "viz", lambda t: _m("viz").annotation_steps(_ann(), steps=5), r"`steps`"),
    H("search-path-num-steps-str", "viz", lambda t: _m("viz").plot_search_path(_ann(), num_steps="2"), r"`num_steps`"),
    H("search-path-step-list", "viz", lambda t: _m("viz").plot_search_path(_ann(probes=[dict(step=[0], estimate=0.5, lo=0, hi=1, is_error=False)])), r"`step` must be an int, got list"),
    H("annotate-steps-int", "epicprm", lambda t: _m("epicprm").annotate("1+2:", 5, "3", _started), r"`steps` must be a list of str, got int"),
    H("annotation-html-title-surrogate", "viz", lambda t: _m("viz").annotation_html(_ann(), ["1+2=3", "#3"], title="x" + SUR), lambda r: isinstance(r, str) and r.encode("utf-8", "replace") is not None),
    # ---------------------------------------------------------------- 01_data readers and writers used by these surfaces
    H("rollouts-400-digit-reward", "data", lambda t: _m("data").read_rollouts(_file(t, "r.jsonl", _rollout_lines('{"group_id": "g", "token_ids": [4], "reward": ' + "9" * 400 + "}"))), r"r\.jsonl.*line 3"),
    H("rollouts-deep", "data", lambda t: _m("data").read_rollouts(_file(t, "r.jsonl", _rollout_lines(DEEP))), r"r\.jsonl.*line 3"),
    H("rollouts-surrogate-group", "data", lambda t: _m("data").read_rollouts(_file(t, "r.jsonl", _rollout_lines('{"group_id": "\\ud800", "token_ids": [4], "reward": 0.0}'))), r"r\.jsonl.*line 3"),
    H("atomic-write-full-disk", "data", lambda t: _full_disk(lambda: _m("data").atomic_write(Path(t) / "out.csv", "a,b\n")), r"out\.csv"),
    H("append-jsonl-full-disk", "data", lambda t: _full_disk(lambda: _m("data").append_jsonl(Path(t) / "out.jsonl", [{"a": 1}])), r"out\.jsonl"),
    H("append-jsonl-surrogate", "data", lambda t: _m("data").append_jsonl(Path(t) / "s.jsonl", [{"a": "x" + SUR}]), r"s\.jsonl|surrogate"),
    H("atomic-write-surrogate", "data", lambda t: _m("data").atomic_write(Path(t) / "s.txt", "x" + SUR), r"s\.txt|surrogate"),
    # ---------------------------------------------------------------- 49_cli
    H("cli-ablate-seeds-huge", "cli", lambda t: cli("ablate", "-o", str(Path(t) / "o"), "--seeds", "0,99999999999999999999", "--no-progress", stub=[(_m("lab"), "run_ablation", _started)]), r"--seeds"),
    H("cli-ablate-seeds-count-huge", "cli", lambda t: cli("ablate", "-o", str(Path(t) / "o"), "--seeds", "99999999999", "--no-progress", stub=[(_m("lab"), "run_ablation", _started)]), r"--seeds"),
    H("cli-prm-seeds-huge", "cli", lambda t: cli("prm", "-o", str(Path(t) / "o"), "--seeds", "0,99999999999999999999", stub=[(_m("prm_lab"), "run_prm_pipeline", _started)]), r"--seeds"),
    H("cli-ablate-prm-method-mixed", "cli", lambda t: _ablate_twice(t, "epic_adaptive", "math_shepherd", via_cli=True), r"prm"),
    H("cli-ablate-prm-method-bad", "cli", lambda t: cli("ablate", "-o", str(Path(t) / "o"), "--algos", "grpo+prm", "--prm-method", "nope", "--no-progress", stub=[(_m("lab"), "run_ablation", _started)]), r"--prm-method"),
    H("cli-ablate-lab-seed-surrogate", "cli", lambda t: cli("ablate", "-o", str(Path(t) / "o"), "--lab", "max_ops=" + SUR, "--no-progress", stub=[(_m("lab"), "run_ablation", _started)]), r"max_ops"),
    H("cli-score-400-digit", "cli", lambda t: cli("score", str(_file(t, "r.jsonl", _rollout_lines('{"group_id": "g", "token_ids": [4], "reward": ' + "9" * 400 + "}"))), "-o", str(Path(t) / "s.jsonl")), r"r\.jsonl.*line 3"),
    H("cli-score-deep", "cli", lambda t: cli("score", str(_file(t, "r.jsonl", _rollout_lines(DEEP))), "-o", str(Path(t) / "s.jsonl")), r"r\.jsonl.*line 3"),
    H("cli-report-title-surrogate", "cli", lambda t: cli("report", str(_m("data").sample_rollouts_path()), "-o", str(Path(t) / "r.html"), "--title", "x\udcff"), r"--title"),
    H("cli-report-out-surrogate", "cli", lambda t: cli("report", str(_m("data").sample_rollouts_path()), "-o", str(Path(t) / "r\udcff.html")), lambda r: "wrote" in r or "r" in r),
]



def _crafted_checkpoint(tmp):
    "A .pt whose unpickling would create a file; True when loading it created none."
    class Boom:
        def __reduce__(self): return (open, (str(Path(tmp) / "pwned"), "w"))
    f = Path(tmp) / "evil.pt"; torch.save({"state": Boom()}, f)
    try: _m("prm").load_prm(f, _tok())
    except Exception: pass
    return not (Path(tmp) / "pwned").exists()


def _no_script(html): return "<script>alert" not in html and "<img src=x onerror" not in html


CASES += [   # security, hangs and the minimal report schema
    H("sec-prm-crafted-pt", "prm", _crafted_checkpoint, lambda r: r is True, fails_as="security hole"),
    H("sec-annotation-html-k", "viz", lambda t: _m("viz").annotation_html(_ann(baseline=dict(k="<script>alert(1)</script>", v0=0.5)), ["1+2=3", "#3"]), _no_script, fails_as="security hole"),
    H("sec-annotation-html-probe", "viz", lambda t: _m("viz").annotation_html(_ann(probes=[dict(step=0, estimate=0.5, count_estimate=0.5, rollouts="<img src=x onerror=alert(1)>", tokens=1, lo=0, hi=1, is_error=False)]), ["1+2=3", "#3"]), _no_script, fails_as="security hole"),
    H("hang-make-problems", "task", lambda t: _m("lab").lab_data(_m("lab").LabConfig(max_operand=1, max_ops=2, min_ops=2, n_train=50, n_heldout=8)),
      lambda r: set(r[0].prompt) == {"1+1:"} and set(r[1].prompt) == {"1-1:"} or set(r[0].prompt) == {"1-1:"} and set(r[1].prompt) == {"1+1:"}),
    H("hang-many-none", "credit", lambda t: _m("credit").annotate_many(["1+2:"], [["1+2=3", "#3"]], ["3"], lambda *a, **k: None, "math_shepherd", progress=False), r"completer|protocol"),
    H("report-minimal-schema", "report", lambda t: _m("report").report_html(_file(t, "m.jsonl", _rollout_lines()), plots=False), lambda r: isinstance(r, str) and "<html" in r.lower()),
]


# ------------------------------------------------------------------------------------------------ classify
CLASSES = ["security hole", "data loss", "hang", "silently wrong", "traceback", "unclear error", "clear error", "right answer"]


class _Timeout(BaseException): pass


def _exc_class(e, expect):
    "An error's class: clear (the expected kind, the message matches), unclear (a ValueError/TypeError/KeyError/OSError that does not say it), else traceback."
    msg = str(e)
    if isinstance(e, (ValueError, TypeError, KeyError, FileNotFoundError, OSError)):
        if isinstance(expect, str) and re.search(expect, msg) and type(e) not in (UnicodeDecodeError, UnicodeEncodeError, KeyError):
            return "clear error", msg[:160]
        return "unclear error", f"{type(e).__name__}: {msg[:160]}"
    return "traceback", f"{type(e).__name__}: {msg[:160]}"


def classify(call, expect, tmp, seconds=20, fails_as="silently wrong"):
    "One case's class and a note."
    def alarm(*a): raise _Timeout()
    old = signal.signal(signal.SIGALRM, alarm); signal.alarm(seconds)
    try:
        try:
            import warnings
            with contextlib.redirect_stderr(io.StringIO()):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = call(tmp)
        finally: signal.alarm(0)
    except _Timeout: return "hang", f"no answer in {seconds} s"
    except WorkStarted: return ("silently wrong" if isinstance(expect, str) else "right answer"), "accepted; the work began"
    except RecursionError as e: return "traceback", f"RecursionError: {str(e)[:120]}"
    except Exception as e:
        if "WorkStarted" not in f"{type(e).__name__} {e} {e.__cause__!r}": raise_as = e
        else: return ("silently wrong" if isinstance(expect, str) else "right answer"), "accepted; the work began"
        return _exc_class(raise_as, expect)
    except BaseException as e: return "traceback", f"{type(e).__name__}: {str(e)[:160]}"
    finally: signal.signal(signal.SIGALRM, old)
    if isinstance(expect, str): return "silently wrong", f"no error; returned {type(res).__name__}"
    try: ok = bool(expect(res))
    except Exception as e: ok = False
    return ("right answer" if ok else fails_as), repr(res)[:160]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_refused_clearly_or_answered_right(case, tmp_path):
    id, surface, call, expect, fails_as = case
    cls, note = classify(call, expect, tmp_path, fails_as=fails_as)
    assert cls in ("clear error", "right answer"), f"{id}: {cls}: {note}"


def test_hostile_table_is_large_and_distinct():
    ids = [c[0] for c in CASES]
    assert len(ids) >= 110 and len(set(ids)) == len(ids)


if __name__ == "__main__":
    import collections, tempfile
    verbose = "-v" in sys.argv
    counts, rows = collections.Counter(), []
    for id, surface, call, expect, fails_as in CASES:
        with tempfile.TemporaryDirectory() as d:
            cls, note = classify(call, expect, Path(d), fails_as=fails_as)
        counts[cls] += 1; rows.append((id, surface, cls, note))
    for c in CLASSES: print(f"{counts[c]:4d}  {c}")
    print(f"{sum(counts.values()):4d}  total")
    if verbose:
        for id, surface, cls, note in rows:
            if cls not in ("clear error", "right answer"): print(f"  {surface:8s} {id:34s} {cls:15s} {note}")
