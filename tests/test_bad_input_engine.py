"""Bad input to every public function of the engine modules (core, stats, advantages, ktae, losses, dapo, interop).

One table: (function, keyword arguments, exception type, fragment of the message). Every row must raise that type
with a message naming the argument; nothing may pass silently or end in an unrelated traceback. The second half
checks right answers where a wrong dtype or a degenerate batch used to give NaN, inf or zeros."""
import importlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

NAN, INF = float("nan"), float("inf")

# ---------------------------------------------------------------- a small valid batch the rows below spoil
RESP = torch.tensor([[1, 2, 3], [1, 2, 0], [4, 2, 3], [4, 1, 0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 0]])
REW = torch.tensor([1., 0., 1., 0.])
LP = torch.zeros(4, 3)
ADV = torch.tensor([1., -1., 1., -1.])
BATCH = dict(responses=RESP, response_mask=MASK, rewards=REW, group_size=2)
POLICY = dict(old_log_prob=LP, log_prob=LP, advantages=ADV, response_mask=MASK)
TLR = torch.zeros(4, 3); TLR[[0, 2], [2, 2]] = 1.
UID = np.array(["a", "a", "b", "b"], dtype=object)
TABLE = dict(a=torch.tensor([2.]), b=torch.tensor([1.]), c=torch.tensor([0.]), d=torch.tensor([1.]))


def _proto(**batch):
    "A DataProto-like object."
    b = dict(responses=RESP, token_level_rewards=TLR, response_mask=MASK); b.update(batch)
    return SimpleNamespace(batch={k: v for k, v in b.items() if v is not None}, non_tensor_batch={"uid": UID})


def _cfg():
    from ktae_lab.ktae import KTAEConfig
    return KTAEConfig()


def _stats():
    return dict(p=torch.tensor([0.5]), F=torch.tensor([0.4]), IG=torch.tensor([0.3]), h=torch.tensor([0.2]))


def _mod():
    return SimpleNamespace(compute_advantage=lambda *a, **k: None)


def C(fn, exc, frag, **kw):
    "One row: call `ktae_lab.<fn>(**kw)`, expect `exc` whose message contains `frag`."
    return pytest.param(fn, kw, exc, frag, id=f"{fn}-{frag[:40]}")


V, T = ValueError, TypeError
from ktae_lab.data import sample_rollouts_path
SAMPLE = sample_rollouts_path()   # the shipped 5 x 8 sample
CASES = [
    # ---------------- core
    C("core.group_ids", V, "exactly one of `index`", index=[0, 1], group_size=2, batch_size=2),
    C("core.group_ids", V, "exactly one of `index`"),
    C("core.group_ids", V, "`group_size` must be an int > 0", group_size=0, batch_size=4),
    C("core.group_ids", T, "`group_size` must be an int > 0", group_size=2.5, batch_size=4),
    C("core.group_ids", V, "does not divide", group_size=3, batch_size=4),
    C("core.group_ids", V, "`index` must be 1-D", index=torch.zeros(2, 2, dtype=torch.long)),
    C("core.group_ids", T, "`index` tensor must hold integers", index=torch.zeros(4)),
    C("core.group_ids", V, "`index` has 3 entries but the batch has 4", index=[0, 0, 1], batch_size=4),
    C("core.group_ids", V, "`batch_size` is required", group_size=2),
    C("core.group_sum", T, "`values` must be a torch.Tensor", values=[1., 2.], gid=torch.tensor([0, 1]), num_groups=2),
    C("core.group_sum", V, "`gid` shape (3,) does not match", values=torch.ones(2), gid=torch.tensor([0, 1, 1]), num_groups=2),
    C("core.group_sum", T, "`gid` must hold integer", values=torch.ones(2), gid=torch.tensor([0., 1.]), num_groups=2),
    C("core.group_sum", V, "`gid` must be 1-D", values=torch.ones(2), gid=torch.tensor([[0, 1]]), num_groups=2),
    C("core.group_sum", V, "`num_groups` must be an int >= 0", values=torch.ones(2), gid=torch.tensor([0, 1]), num_groups=-1),
    C("core.group_mean_std", T, "`values` must be a floating-point tensor", values=torch.tensor([1, 2]), gid=torch.tensor([0, 1]), num_groups=2),
    C("core.group_mean_std", T, "`values` must be a torch.Tensor", values=[1., 2.], gid=torch.tensor([0, 1]), num_groups=2),
    C("core.group_mean_std", V, "`values` must be 1-D", values=torch.ones(2, 2), gid=torch.tensor([0, 1]), num_groups=2),
    C("core.group_mean_std", V, "`gid` shape (1,) does not match", values=torch.ones(2), gid=torch.tensor([0]), num_groups=1),
    C("core.group_mean_std", T, "`num_groups` must be an int", values=torch.ones(2), gid=torch.tensor([0, 1]), num_groups=2.0),
    C("core.check_token_batch", T, "`responses` must be a torch.Tensor", responses=[[1, 2]], response_mask=torch.ones(1, 2)),
    C("core.check_token_batch", T, "`responses` must hold integer", responses=torch.ones(1, 2), response_mask=torch.ones(1, 2)),
    C("core.check_token_batch", V, "`responses` must be 2-D", responses=torch.ones(2, dtype=torch.long), response_mask=torch.ones(2)),
    C("core.check_token_batch", V, "`response_mask` shape (1, 2) does not match", responses=RESP[:1], response_mask=torch.ones(1, 2)),
    C("core.check_token_batch", V, "`response_mask` must contain only 0 and 1", responses=RESP, response_mask=MASK * 2),
    C("core.check_token_batch", V, "negative token ids", responses=-RESP, response_mask=MASK),
    C("core.check_token_batch", V, "`responses` has token ids >= 2**62", responses=RESP + 2**62, response_mask=MASK),
    C("core.check_token_batch", T, "`response_mask` must be a torch.Tensor", responses=RESP, response_mask=MASK.tolist()),
    C("core.check_rewards", T, "`rewards` must hold numbers, got strings", rewards=["1", "0"], batch_size=2),
    C("core.check_rewards", V, "`rewards` contains NaN", rewards=[1., NAN], batch_size=2),
    C("core.check_rewards", V, "`rewards` contains NaN or infinite", rewards=torch.tensor([1., INF]), batch_size=2),
    C("core.check_rewards", V, "`rewards` has 2 entries, expected 3", rewards=[1., 0.], batch_size=3),
    C("core.check_rewards", V, "`rewards` must be 1-D", rewards=[[1., 0.]], batch_size=1),
    C("core.check_rewards", T, "`rewards` must hold numbers", rewards=[{"r": 1}], batch_size=1),
    C("core.check_rewards", T, "`rewards` must hold real numbers", rewards=torch.tensor([1j]), batch_size=1),
    C("core.check_tensor", T, "`x` must be a torch.Tensor, got list", x=[1], name="x"),
    C("core.check_tensor", T, "`x` must be a torch.Tensor, got ndarray", x=np.ones(2), name="x"),
    C("core.check_tensor", T, "`x` must be a torch.Tensor, got NoneType", x=None, name="x"),
    C("core.check_tensor", T, "`x` must be a torch.Tensor, got str", x="1", name="x"),
    C("core.check_tensor", T, "`x` must be a torch.Tensor, got float", x=1.0, name="x"),
    C("core.check_shape", V, "`x` must be 2-D [B, L], got shape (3,)", x=torch.ones(3), name="x", dim=2),
    C("core.check_shape", V, "`x` shape (2, 3) does not match the expected [B, L] (2, 4)", x=torch.ones(2, 3), name="x", shape=(2, 4)),
    C("core.check_shape", V, "`x` must be 1-D [B]", x=torch.ones(2, 2), name="x", dim=1, label="[B]"),
    C("core.check_shape", V, "`x` shape (3,) does not match the expected [B] (2,)", x=torch.ones(3), name="x", shape=(2,), label="[B]"),
    C("core.check_shape", V, "`x` must be 2-D", x=torch.ones(()), name="x", dim=2),
    C("core.check_float_tensor", T, "`x` must be a floating-point tensor, got torch.int64", x=torch.ones(2, 2, dtype=torch.long), name="x", dim=2),
    C("core.check_float_tensor", T, "`x` must be a torch.Tensor", x=[[1.]], name="x", dim=2),
    C("core.check_float_tensor", V, "`x` shape (2, 2) does not match the expected [B, L] (2, 3)", x=torch.ones(2, 2), name="x", shape=(2, 3)),
    C("core.check_float_tensor", V, "`x` contains NaN or infinite values", x=torch.tensor([NAN]), name="x", shape=(1,), finite=True),
    C("core.check_float_tensor", V, "`x` must be 2-D", x=torch.ones(3), name="x", dim=2),
    C("core.check_float_tensor", T, "`x` must be a floating-point tensor, got torch.bool", x=torch.ones(2, dtype=torch.bool), name="x", dim=1),
    C("core.check_mask", T, "`m` must be a torch.Tensor", mask=[[1, 0]], shape=(1, 2), name="m"),
    C("core.check_mask", V, "`m` shape (1, 3) does not match", mask=torch.ones(1, 3), shape=(1, 2), name="m"),
    C("core.check_mask", V, "`m` must contain only 0 and 1", mask=torch.tensor([[0.5, 1.]]), shape=(1, 2), name="m"),
    C("core.check_mask", V, "`m` must contain only 0 and 1", mask=torch.tensor([[NAN, 1.]]), shape=(1, 2), name="m"),
    C("core.check_mask", V, "`m` must be 2-D", mask=torch.ones(2), shape=(1, 2), name="m"),
    C("core.check_mask", V, "`m` must contain only 0 and 1", mask=torch.tensor([[-1, 1]]), shape=(1, 2), name="m"),
    C("core.check_number", V, "`b` must be a finite number >= 0 and <= 1, got nan", value=NAN, name="b", low=0, high=1),
    C("core.check_number", V, "`b` must be a finite number >= 0 and <= 1, got 2", value=2, name="b", low=0, high=1),
    C("core.check_number", T, "`b` must be a finite number", value="0.5", name="b"),
    C("core.check_number", T, "`b` must be a finite number", value=True, name="b"),
    C("core.check_number", V, "`b` must be a finite number, got inf", value=INF, name="b"),
    C("core.check_number", T, "`n` must be an int", value=1.5, name="n", integer=True),
    C("core.check_number", V, "`x` must be a finite number > 0, got 0", value=0, name="x", low=0, low_open=True),
    C("core.check_number", V, "`r` must be a finite number", value=10**400, name="r"),
    C("core.check_flag", T, "`f` must be True or False, got str 'False'", value="False", name="f"),
    C("core.check_flag", T, "`f` must be True or False, got int 1", value=1, name="f"),
    C("core.check_flag", T, "`f` must be True or False, got NoneType", value=None, name="f"),
    C("core.check_flag", T, "`f` must be True or False, got float nan", value=NAN, name="f"),
    C("core.check_flag", T, "`f` must be True or False, got Tensor", value=torch.tensor(True), name="f"),
    C("core.check_flags", T, "`c` row 1: expected True, False or missing, got str 'False'", values=[True, "False"], name="c"),
    C("core.check_flags", T, "`c` row 0: expected True, False or missing, got int 2", values=[2], name="c"),
    C("core.check_flags", T, "`c` row 2: expected True, False or missing, got float 0.5", values=[True, None, 0.5], name="c"),
    C("core.check_flags", T, "`c` row 0: expected True, False or missing, got list", values=[[True]], name="c"),
    C("core.check_flags", T, "`c` must be a list of True/False values (None: unknown), got str", values="True", name="c"),
    C("core.check_text", T, "`prompt` must be a str, got int", value=3, name="prompt"),
    C("core.check_text", T, "`prompt` must be a str, got bytes", value=b"2+2", name="prompt"),
    C("core.check_text", T, "`prompt` must be a str, got NoneType", value=None, name="prompt"),
    C("core.check_text", V, "`prompt` holds a lone surrogate '\\ud800' at character 1", value="a\ud800", name="prompt"),
    C("core.check_text", V, "`prompt` holds a lone surrogate '\\udcff' at character 0", value="\udcff b", name="prompt"),
    C("core.check_seeds", T, "`seeds` must be a count >= 1 or a list of distinct ints", seeds="12"),
    C("core.check_seeds", T, "`seeds` must be a count >= 1 or a list of distinct ints", seeds=2.5),
    C("core.check_seeds", V, "got 100000000000000000000 in it", seeds=[0, 10**20]),
    C("core.check_seeds", V, "`seeds` has duplicates [1]", seeds=[1, 1]),
    C("core.check_seeds", V, "got 0", seeds=0),
    C("core.check_seeds", T, "got bool True in it", seeds=[True]),
    C("core.check_seeds", V, "got an empty list", seeds=[]),
    C("core.check_positive", V, "`x` must be a finite number > 0, got -1", value=-1, name="x"),
    C("core.check_positive", V, "`x` must be a finite number > 0, got 0", value=0.0, name="x"),
    C("core.check_positive", V, "`x` must be a finite number > 0, got nan", value=NAN, name="x"),
    C("core.check_positive", T, "`x` must be an int > 0", value=2.0, name="x", integer=True),
    C("core.check_positive", T, "`x` must be a finite number > 0", value=None, name="x"),
    C("core.check_choice", V, "unknown `mode` 'x'; valid: a, b", value="x", choices=("a", "b"), name="mode"),
    C("core.check_choice", V, "unknown `mode` None; valid: a, b", value=None, choices=("a", "b"), name="mode"),
    C("core.check_choice", V, "unknown `mode` 1; valid: a, b", value=1, choices=("a", "b"), name="mode"),
    C("core.check_choice", V, "unknown `mode` 'A'", value="A", choices=("a", "b"), name="mode"),
    C("core.check_choice", V, "unknown `mode` ''", value="", choices=("a", "b"), name="mode"),
    C("core.check_advantages", T, "`advantages` must be a torch.Tensor", advantages=[1.], shape=(1, 2)),
    C("core.check_advantages", T, "`advantages` must be a floating-point tensor", advantages=torch.ones(1, dtype=torch.long), shape=(1, 2)),
    C("core.check_advantages", V, "`advantages` shape (3,) does not match the expected [B] (2,) or [B, L] (2, 4)", advantages=torch.ones(3), shape=(2, 4)),
    C("core.check_advantages", V, "`advantages` shape (2, 3) does not match", advantages=torch.ones(2, 3), shape=(2, 4)),
    C("core.check_advantages", V, "`advantages` shape (1, 1, 4)", advantages=torch.ones(1, 1, 4), shape=(1, 4)),
    # ---------------- stats
    C("stats.as_tables", V, "`a` must be non-negative counts", a=-1, b=0, c=0, d=0),
    C("stats.as_tables", V, "`b` must hold whole counts", a=1, b=0.5, c=0, d=0),
    C("stats.as_tables", T, "`c` must hold counts (numbers)", a=1, b=0, c="2", d=0),
    C("stats.as_tables", V, "`d` contains NaN or infinite", a=1, b=0, c=0, d=NAN),
    C("stats.as_tables", T, "`a` must hold counts (numbers), got torch.bool", a=torch.tensor([True]), b=0, c=0, d=0),
    C("stats.as_tables", V, "must broadcast to one shape", a=torch.ones(2), b=torch.ones(3), c=0, d=0),
    C("stats.fisher_exact_pvalue", V, "`a` must be non-negative", a=-1, b=1, c=1, d=1),
    C("stats.fisher_exact_pvalue", V, "`rtol` must be a finite number >= 0", a=1, b=1, c=1, d=1, rtol=-1e-7),
    C("stats.fisher_exact_pvalue", T, "`b` must hold counts", a=1, b=None, c=1, d=1),
    C("stats.fisher_exact_pvalue", V, "`c` must hold whole counts", a=1, b=1, c=1.5, d=1),
    C("stats.fisher_exact_pvalue", V, "`d` contains NaN", a=1, b=1, c=1, d=INF),
    C("stats.fisher_exact_pvalue_released", V, "`a` must be non-negative", a=-1, b=1, c=1, d=1),
    C("stats.fisher_exact_pvalue_released", V, "`width` must be an int > 0", a=1, b=1, c=1, d=1, width=0),
    C("stats.fisher_exact_pvalue_released", T, "`width` must be an int > 0", a=1, b=1, c=1, d=1, width=2.5),
    C("stats.fisher_exact_pvalue_released", V, "`width` must be at least", a=3, b=1, c=3, d=1, width=2),
    C("stats.fisher_exact_pvalue_released", V, "`b` must hold whole counts", a=1, b=0.5, c=1, d=1),
    C("stats.fisher_weight", V, "unknown `transform` 'log'; valid: exp, linear", p=torch.tensor([0.5]), transform="log"),
    C("stats.fisher_weight", T, "`p` must be a floating-point tensor", p=torch.tensor([1])),
    C("stats.fisher_weight", T, "`p` must be a torch.Tensor", p=[0.5]),
    C("stats.fisher_weight", V, "`p` must hold p-values in [0, 1]", p=torch.tensor([1.5])),
    C("stats.fisher_weight", V, "`p` must hold p-values in [0, 1]", p=torch.tensor([NAN])),
    C("stats.binary_entropy", T, "`q` must be a torch.Tensor", q=0.5),
    C("stats.binary_entropy", T, "`q` must be a floating-point tensor", q=torch.tensor([1])),
    C("stats.binary_entropy", V, "`q` must hold probabilities in [0, 1]", q=torch.tensor([1.5])),
    C("stats.binary_entropy", V, "`q` must hold probabilities in [0, 1]", q=torch.tensor([-0.1])),
    C("stats.binary_entropy", V, "`q` must hold probabilities in [0, 1]", q=torch.tensor([NAN])),
    C("stats.information_gain", V, "`a` must be non-negative", a=-1, b=1, c=1, d=1),
    C("stats.information_gain", V, "`b` must hold whole counts", a=1, b=0.5, c=1, d=1),
    C("stats.information_gain", T, "`c` must hold counts", a=1, b=1, c="x", d=1),
    C("stats.information_gain", V, "`d` contains NaN", a=1, b=1, c=1, d=NAN),
    C("stats.information_gain", T, "`a` must hold counts", a=[[1], [1, 2]], b=1, c=1, d=1),
    C("stats.information_gain_released", V, "`a` must be non-negative", a=-1, b=1, c=1, d=1),
    C("stats.information_gain_released", V, "`b` must hold whole counts", a=1, b=0.5, c=1, d=1),
    C("stats.information_gain_released", T, "`c` must hold counts", a=1, b=1, c="x", d=1),
    C("stats.information_gain_released", V, "`d` contains NaN", a=1, b=1, c=1, d=NAN),
    C("stats.information_gain_released", T, "`a` must hold counts", a=None, b=1, c=1, d=1),
    C("stats.cohens_h", V, "`eps` must be a finite number >= 0", a=1, b=1, c=1, d=1, eps=-1e-10),
    C("stats.cohens_h", V, "`eps` must be a finite number >= 0", a=1, b=1, c=1, d=1, eps=NAN),
    C("stats.cohens_h", V, "`a` must be non-negative", a=-1, b=1, c=1, d=1),
    C("stats.cohens_h", V, "`b` must hold whole counts", a=1, b=0.5, c=1, d=1),
    C("stats.cohens_h", T, "`c` must hold counts", a=1, b=1, c="x", d=1),
    C("stats.bm25_tf", T, "`count` must be a torch.Tensor", count=3, length=torch.tensor(11.), avg_length=torch.tensor(11.)),
    C("stats.bm25_tf", V, "`count` must hold non-negative", count=torch.tensor(-1.), length=torch.tensor(11.), avg_length=torch.tensor(11.)),
    C("stats.bm25_tf", V, "`k1` must be a finite number > 0", count=torch.tensor(1.), length=torch.tensor(11.), avg_length=torch.tensor(11.), k1=0.0),
    C("stats.bm25_tf", V, "`b` must be a finite number >= 0 and <= 1", count=torch.tensor(1.), length=torch.tensor(11.), avg_length=torch.tensor(11.), b=NAN),
    C("stats.bm25_tf", V, "`length` must hold non-negative", count=torch.tensor(1.), length=torch.tensor(-11.), avg_length=torch.tensor(11.)),
    C("stats.bm25_tf", T, "`count` must be a floating-point tensor", count=torch.tensor(1), length=torch.tensor(11.), avg_length=torch.tensor(11.)),
    C("stats.frequency_direction", V, "unknown `kind` 'ratio'; valid: bm25_ratio, bounded", tf_c=torch.tensor(1.), tf_w=torch.tensor(1.), kind="ratio"),
    C("stats.frequency_direction", V, "`eps` must be a finite number > 0", tf_c=torch.tensor(1.), tf_w=torch.tensor(0.), eps=0.0),
    C("stats.frequency_direction", T, "`tf_c` must be a torch.Tensor", tf_c=1.0, tf_w=torch.tensor(1.)),
    C("stats.frequency_direction", T, "`tf_w` must be a floating-point tensor", tf_c=torch.tensor(1.), tf_w=torch.tensor(1)),
    C("stats.frequency_direction", V, "`tf_c` contains NaN", tf_c=torch.tensor(NAN), tf_w=torch.tensor(1.)),
    # ---------------- advantages
    C("advantages.grpo_advantages", T, "`rewards` must hold numbers, got strings", rewards=["1", "0"], group_size=2),
    C("advantages.grpo_advantages", V, "`rewards` contains NaN", rewards=torch.tensor([1., NAN]), group_size=2),
    C("advantages.grpo_advantages", V, "`eps` must be a finite number >= 0", rewards=REW, group_size=2, eps=-1e-6),
    C("advantages.grpo_advantages", V, "`eps` must be a finite number >= 0, got nan", rewards=REW, group_size=2, eps=NAN),
    C("advantages.grpo_advantages", V, "does not divide", rewards=REW, group_size=3),
    C("advantages.grpo_advantages", V, "`rewards` must be 1-D", rewards=torch.ones(2, 2), group_size=2),
    C("advantages.grpo_advantages", V, "`index` has 3 entries but the batch has 4", rewards=REW, index=[0, 0, 1]),
    C("advantages.batch_std_advantages", T, "`rewards` must hold numbers", rewards=["a", "b"], group_size=2),
    C("advantages.batch_std_advantages", V, "`rewards` contains NaN", rewards=[INF, 0.], group_size=2),
    C("advantages.batch_std_advantages", V, "`eps` must be a finite number >= 0", rewards=REW, group_size=2, eps=-1.),
    C("advantages.batch_std_advantages", V, "exactly one of `index`", rewards=REW),
    C("advantages.batch_std_advantages", V, "`rewards` must be 1-D", rewards=torch.ones(2, 2), group_size=2),
    C("advantages.rloo_advantages", T, "`rewards` must hold numbers", rewards=["a", "b"], group_size=2),
    C("advantages.rloo_advantages", V, "`rewards` contains NaN", rewards=[NAN, 0.], group_size=2),
    C("advantages.rloo_advantages", V, "exactly one of `index`", rewards=REW),
    C("advantages.rloo_advantages", V, "`group_size` must be an int > 0", rewards=REW, group_size=-2),
    C("advantages.rloo_advantages", V, "`rewards` must be 1-D", rewards=torch.tensor(1.), group_size=1),
    C("advantages.outcome_advantages", V, "unknown `estimator` 'ppo'; valid: grpo, dr_grpo, batch_std, rloo", rewards=REW, group_size=2, estimator="ppo"),
    C("advantages.outcome_advantages", V, "unknown `estimator` None", rewards=REW, group_size=2, estimator=None),
    C("advantages.outcome_advantages", T, "`rewards` must hold numbers", rewards=["1", "0"], group_size=2),
    C("advantages.outcome_advantages", V, "`eps` must be a finite number >= 0", rewards=REW, group_size=2, eps=-1.),
    C("advantages.outcome_advantages", V, "does not divide", rewards=REW, group_size=3, estimator="rloo"),
    C("advantages.token_advantages", T, "`advantages` must be a torch.Tensor", advantages=[1.], response_mask=torch.ones(1, 2)),
    C("advantages.token_advantages", T, "`advantages` must be a floating-point tensor", advantages=torch.ones(1, dtype=torch.long), response_mask=torch.ones(1, 2)),
    C("advantages.token_advantages", V, "`advantages` shape (3,) does not match", advantages=torch.ones(3), response_mask=torch.ones(2, 4)),
    C("advantages.token_advantages", V, "`response_mask` must be 2-D", advantages=torch.ones(2), response_mask=torch.ones(2)),
    C("advantages.token_advantages", V, "`response_mask` must contain only 0 and 1", advantages=torch.ones(1), response_mask=torch.tensor([[2, 1]])),
    C("advantages.token_advantages", T, "`response_mask` must be a torch.Tensor", advantages=torch.ones(1), response_mask=[[1, 1]]),
    C("advantages.outcome_token_advantages", V, "`response_mask` must contain only 0 and 1", rewards=REW, response_mask=MASK * 3, group_size=2),
    C("advantages.outcome_token_advantages", T, "`rewards` must hold numbers", rewards=list("abcd"), response_mask=MASK, group_size=2),
    C("advantages.outcome_token_advantages", V, "unknown `estimator`", rewards=REW, response_mask=MASK, group_size=2, estimator="x"),
    C("advantages.outcome_token_advantages", V, "`response_mask` must be 2-D", rewards=REW, response_mask=torch.ones(4), group_size=2),
    C("advantages.outcome_token_advantages", V, "`advantages` shape (4,) does not match", rewards=REW, response_mask=torch.ones(3, 2), group_size=2),
    # ---------------- ktae: configuration
    C("ktae.resolve_config", V, "valid presets", preset="offical"),
    C("ktae.config_label", V, "valid presets", cfg="offical"),
    C("ktae.config_label", V, "valid presets", cfg=None),
    C("ktae.config_label", V, "valid names", betta=2.0),
    C("ktae.config_label", V, "`top` must be", top=-1.0),
    C("ktae.config_label", V, "`tf_kind`", tf_kind="nope"),
    C("ktae.resolve_config", V, "valid names", betta=2.0),
    C("ktae.resolve_config", V, "`correct_threshold` must be a finite number", correct_threshold=NAN),
    C("ktae.resolve_config", V, "`k1` must be a finite number > 0", k1=-1.0),
    C("ktae.resolve_config", V, "`b` must be a finite number >= 0 and <= 1", b=NAN),
    C("ktae.resolve_config", V, "`h_eps` must be a finite number >= 0", h_eps=-1e-10),
    C("ktae.resolve_config", V, "`tf_eps` must be a finite number > 0", tf_eps=0.0),
    C("ktae.resolve_config", V, "`fisher_rtol` must be a finite number >= 0", fisher_rtol=-1e-7),
    C("ktae.resolve_config", V, "`top` must be a finite number >= 0", top=INF),
    C("ktae.resolve_config", V, "`alpha` must be a finite number >= 0", alpha=-1.0),
    C("ktae.resolve_config", T, "`beta` must be a finite number", beta="2"),
    C("ktae.resolve_config", T, "`use_tf` must be a bool", use_tf="no"),
    C("ktae.resolve_config", V, "unknown `p_transform` 'log'", p_transform="log"),
    C("ktae.resolve_config", V, "unknown `tf_kind` 'x'", tf_kind="x"),
    C("ktae.resolve_config", V, "`ignore_ids` must hold non-negative int", ignore_ids=(-1,)),
    C("ktae.resolve_config", T, "`ignore_ids` must be a sequence of token ids", ignore_ids="151643"),
    C("ktae.resolve_config", T, "`released_numerics` must be a bool", released_numerics=1),
    C("ktae.validate_config", V, "`b` must be a finite number >= 0 and <= 1", cfg=("KTAECFG", dict(b=NAN))),
    C("ktae.validate_config", V, "`gamma` must be a finite number >= 0", cfg=("KTAECFG", dict(gamma=-1.0))),
    C("ktae.validate_config", T, "`half_h` must be a bool", cfg=("KTAECFG", dict(half_h=None))),
    C("ktae.validate_config", T, "`ignore_ids` must be a sequence", cfg=("KTAECFG", dict(ignore_ids=None))),
    C("ktae.validate_config", V, "unknown `p_transform`", cfg=("KTAECFG", dict(p_transform="exp2"))),
    C("ktae.validate_config", T, "`cfg` must be a KTAEConfig", cfg={"b": 0.5}),
    C("ktae.parse_overrides", V, "must look like name=value", spec="beta"),
    C("ktae.parse_overrides", V, "valid names", spec="gama=1"),
    C("ktae.parse_overrides", V, "expected a bool", spec="use_tf=maybe"),
    C("ktae.parse_overrides", V, "expected a float", spec="beta=two"),
    C("ktae.parse_overrides", V, "`k1` must be a finite number > 0", spec="k1=nan"),
    C("ktae.parse_overrides", V, "expected a tuple", spec="ignore_ids=a;b"),
    C("ktae.parse_overrides", T, "`spec` must be", spec=3),
    C("ktae.table_statistics", T, "`cfg` must be a KTAEConfig", a=TABLE["a"], b=TABLE["b"], c=TABLE["c"], d=TABLE["d"], cfg="official"),
    C("ktae.table_statistics", V, "`a` must be non-negative", a=-TABLE["a"], b=TABLE["b"], c=TABLE["c"], d=TABLE["d"], cfg="CFG"),
    C("ktae.table_statistics", V, "`b` must hold whole counts", a=TABLE["a"], b=TABLE["b"] / 2, c=TABLE["c"], d=TABLE["d"], cfg="CFG"),
    C("ktae.table_statistics", V, "`c` contains NaN", a=TABLE["a"], b=TABLE["b"], c=TABLE["c"] * NAN, d=TABLE["d"], cfg="CFG"),
    C("ktae.table_statistics", T, "`d` must hold counts", a=TABLE["a"], b=TABLE["b"], c=TABLE["c"], d="1", cfg="CFG"),
    C("ktae.combine_terms", T, "`cfg` must be a KTAEConfig", stats="STATS", tf_c=torch.tensor([0.3]), tf_w=torch.tensor([0.1]), cfg=None),
    C("ktae.combine_terms", V, "`stats` lacks", stats={"p": torch.tensor([0.5])}, tf_c=torch.tensor([0.3]), tf_w=torch.tensor([0.1]), cfg="CFG"),
    C("ktae.combine_terms", T, "`tf_c` must be a torch.Tensor", stats="STATS", tf_c=0.3, tf_w=torch.tensor([0.1]), cfg="CFG"),
    C("ktae.combine_terms", T, "`tf_w` must be a floating-point tensor", stats="STATS", tf_c=torch.tensor([0.3]), tf_w=torch.tensor([1]), cfg="CFG"),
    C("ktae.combine_terms", V, "`tf_c` contains NaN", stats="STATS", tf_c=torch.tensor([NAN]), tf_w=torch.tensor([0.1]), cfg="CFG"),
    # ---------------- interop.record_step (the recorder, issue 18)
    C("interop.record_step", T, "`record_dir` must be a folder path", record_dir=1, step=1, responses=RESP, response_mask=MASK, rewards=REW, index=UID),
    C("interop.record_step", V, "`step` must be an int >= 0", record_dir="/tmp", step=-1, responses=RESP, response_mask=MASK, rewards=REW, index=UID),
    C("interop.record_step", V, "`responses` must be 2-D", record_dir="/tmp", step=1, responses=REW, response_mask=MASK, rewards=REW, index=UID),
    C("interop.record_step", V, "`response_mask` shape", record_dir="/tmp", step=1, responses=RESP, response_mask=MASK[:, :2], rewards=REW, index=UID),
    C("interop.record_step", V, "`rewards` shape", record_dir="/tmp", step=1, responses=RESP, response_mask=MASK, rewards=REW[:3], index=UID),
    C("interop.record_step", V, "`index` has 3 group ids", record_dir="/tmp", step=1, responses=RESP, response_mask=MASK, rewards=REW, index=UID[:3]),
]

# the four scoring entry points share their batch checks: each gets the same bad batches
for fn in ("ktae.key_token_values", "ktae.ktae_advantages", "ktae.key_token_details", "ktae.token_table"):
    CASES += [
        C(fn, T, "`responses` must be a torch.Tensor", **{**BATCH, "responses": RESP.tolist()}),
        C(fn, T, "`responses` must hold integer token ids", **{**BATCH, "responses": RESP.float()}),
        C(fn, V, "`response_mask` shape (4, 2) does not match", **{**BATCH, "response_mask": MASK[:, :2]}),
        C(fn, V, "`response_mask` must contain only 0 and 1", **{**BATCH, "response_mask": MASK * 2}),
        C(fn, V, "`responses` has negative token ids", **{**BATCH, "responses": RESP - 5}),
        C(fn, V, "`responses` has token ids >= 2**62", **{**BATCH, "responses": RESP + 2**62}),
        C(fn, T, "`rewards` must hold numbers, got strings", **{**BATCH, "rewards": ["1", "0", "1", "0"]}),
        C(fn, V, "`rewards` contains NaN", **{**BATCH, "rewards": torch.tensor([1., NAN, 1., 0.])}),
        C(fn, V, "`rewards` has 3 entries, expected 4", **{**BATCH, "rewards": REW[:3]}),
        C(fn, V, "does not divide", **{**BATCH, "group_size": 3}),
        C(fn, V, "`correct_threshold` must be a finite number", **BATCH, correct_threshold=NAN),
        C(fn, V, "valid presets", **BATCH, preset="nope"),
    ]
CASES += [
    C("ktae.ktae_advantages", V, "unknown `estimator` 'gae'", **BATCH, estimator="gae"),
    C("ktae.ktae_advantages", V, "`eps` must be a finite number >= 0", **BATCH, eps=-1.0),
    C("ktae.ktae_advantages", V, "`outcome_advantage` shape (3,) does not match the expected [B] (4,)", **BATCH, outcome_advantage=torch.zeros(3)),
    C("ktae.ktae_advantages", T, "`outcome_advantage` must be a floating-point tensor", **BATCH, outcome_advantage=torch.zeros(4, dtype=torch.long)),
    C("ktae.ktae_advantages", V, "`outcome_advantage` contains NaN", **BATCH, outcome_advantage=torch.tensor([0., NAN, 0., 0.])),
    C("ktae.ktae_advantages", T, "`outcome_advantage` must be a torch.Tensor", **BATCH, outcome_advantage=[0., 0., 0., 0.]),
    C("ktae.key_token_details", V, "`tokens` has 1 rows, expected 4", **BATCH, tokens=[["a"]]),
    C("ktae.token_table", V, "`tokens` has 1 rows, expected 4", **BATCH, tokens=[["a"]]),
    C("ktae.score_rollouts", V, "unknown `preset` 'fancy'", rollouts=str(SAMPLE), preset="fancy"),
    C("ktae.score_rollouts", T, "`beta` must be a finite number >= 0", rollouts=str(SAMPLE), beta="x"),
    C("ktae.score_rollouts", V, "unknown KTAE override(s) ['nonsense']", rollouts=str(SAMPLE), nonsense=1),
    C("ktae.score_rollouts", FileNotFoundError, "rollout file not found", rollouts="/nonexistent/rollouts.jsonl"),
    C("ktae.score_rollouts", T, "must be a DataFrame or a path, got int", rollouts=42),
    C("ktae.score_rollouts", V, "lacks the required column(s) ['group_id', 'token_ids', 'reward']", rollouts=__import__("pandas").DataFrame({"a": [1]})),
    # ---------------- losses
    C("losses.resolve_agg_mode", V, "unknown `loss_agg_mode` 'mean'; valid: token-mean", loss_agg_mode="mean"),
    C("losses.resolve_agg_mode", V, "unknown `loss_agg_mode` None", loss_agg_mode=None),
    C("losses.resolve_agg_mode", V, "unknown `loss_agg_mode` 'Token-Mean'", loss_agg_mode="Token-Mean"),
    C("losses.resolve_agg_mode", V, "unknown `loss_agg_mode` ''", loss_agg_mode=""),
    C("losses.resolve_agg_mode", V, "unknown `loss_agg_mode` 3", loss_agg_mode=3),
    C("losses.agg_loss", T, "`loss_mat` must be a floating-point tensor", loss_mat=torch.ones(4, 3, dtype=torch.long), loss_mask=MASK),
    C("losses.agg_loss", V, "`loss_mat` must be 2-D", loss_mat=torch.ones(3), loss_mask=MASK),
    C("losses.agg_loss", V, "`loss_mask` shape (4, 2) does not match", loss_mat=LP, loss_mask=MASK[:, :2]),
    C("losses.agg_loss", V, "`loss_mask` must contain only 0 and 1", loss_mat=LP, loss_mask=MASK * 2),
    C("losses.agg_loss", V, "unknown `loss_agg_mode` 'mean'", loss_mat=LP, loss_mask=MASK, loss_agg_mode="mean"),
    C("losses.agg_loss", V, "`batch_num_tokens` must be a finite number > 0, got 0", loss_mat=LP, loss_mask=MASK, batch_num_tokens=0),
    C("losses.agg_loss", V, "`batch_num_tokens` must be a finite number > 0, got -5", loss_mat=LP, loss_mask=MASK, batch_num_tokens=-5),
    C("losses.agg_loss", V, "`global_batch_size` must be a finite number > 0, got 0", loss_mat=LP, loss_mask=MASK, loss_agg_mode="seq-mean-token-mean", global_batch_size=0),
    C("losses.agg_loss", V, "`loss_scale_factor` must be a finite number > 0", loss_mat=LP, loss_mask=MASK, loss_agg_mode="seq-mean-token-sum-norm", loss_scale_factor=0),
    C("losses.agg_loss", T, "`loss_mat` must be a torch.Tensor", loss_mat=LP.tolist(), loss_mask=MASK),
    C("losses.clipped_surrogate", V, "`clip_ratio_low` must be a finite number >= 0 and < 1", log_ratio=LP, advantages=LP, clip_ratio_low=1.0),
    C("losses.clipped_surrogate", V, "`clip_ratio_high` must be a finite number >= 0", log_ratio=LP, advantages=LP, clip_ratio_high=-0.1),
    C("losses.clipped_surrogate", V, "`clip_ratio_c` must be a finite number > 1", log_ratio=LP, advantages=LP, clip_ratio_c=1.0),
    C("losses.clipped_surrogate", T, "`log_ratio` must be a torch.Tensor", log_ratio=LP.tolist(), advantages=LP),
    C("losses.clipped_surrogate", T, "`advantages` must be a floating-point tensor", log_ratio=LP, advantages=LP.long()),
    C("losses.clipped_surrogate", V, "`clip_ratio_low` must be a finite number", log_ratio=LP, advantages=LP, clip_ratio_low=NAN),
    C("losses.policy_loss", T, "`log_prob` must be a floating-point tensor", **{**POLICY, "log_prob": LP.long()}),
    C("losses.policy_loss", V, "`old_log_prob` shape (4, 2) does not match", **{**POLICY, "old_log_prob": LP[:, :2]}),
    C("losses.policy_loss", T, "`old_log_prob` dtype torch.float64 differs", **{**POLICY, "old_log_prob": LP.double()}),
    C("losses.policy_loss", V, "`response_mask` must contain only 0 and 1", **{**POLICY, "response_mask": MASK * 2}),
    C("losses.policy_loss", V, "`advantages` shape (3,) does not match", **{**POLICY, "advantages": ADV[:3]}),
    C("losses.policy_loss", T, "`advantages` must be a torch.Tensor", **{**POLICY, "advantages": ADV.tolist()}),
    C("losses.policy_loss", V, "`batch_num_tokens` must be a finite number > 0", **POLICY, batch_num_tokens=0),
    C("losses.policy_loss", V, "`global_batch_size` must be a finite number > 0", **POLICY, loss_agg_mode="seq-mean-token-sum", global_batch_size=0),
    C("losses.policy_loss", V, "unknown `loss_agg_mode`", **POLICY, loss_agg_mode="sum"),
    C("losses.policy_loss", V, "`clip_ratio_c` must be a finite number > 1", **POLICY, clip_ratio_c=0.5),
    C("losses.kl_penalty", V, "unknown `kind` 'kl3'; valid: k1, kl, abs", log_prob=LP, ref_log_prob=LP, kind="kl3"),
    C("losses.kl_penalty", V, "unknown `kind` None", log_prob=LP, ref_log_prob=LP, kind=None),
    C("losses.kl_penalty", V, "`ref_log_prob` shape (4, 2) does not match", log_prob=LP, ref_log_prob=LP[:, :2]),
    C("losses.kl_penalty", T, "`log_prob` must be a floating-point tensor", log_prob=LP.long(), ref_log_prob=LP),
    C("losses.kl_penalty", T, "`ref_log_prob` must be a torch.Tensor", log_prob=LP, ref_log_prob=0.0),
    C("losses.entropy_from_logits", T, "`logits` must be a floating-point tensor", logits=torch.ones(2, 3, dtype=torch.long)),
    C("losses.entropy_from_logits", T, "`logits` must be a torch.Tensor", logits=[[0., 1.]]),
    C("losses.entropy_from_logits", V, "`logits` must have a vocabulary axis", logits=torch.tensor(1.)),
    C("losses.entropy_from_logits", T, "`logits` must be a floating-point tensor, got torch.bool", logits=torch.ones(2, dtype=torch.bool)),
    C("losses.entropy_from_logits", T, "`logits` must be a torch.Tensor, got ndarray", logits=np.zeros((2, 3))),
    C("losses.entropy_bonus", V, "`entropy_coeff` must be a finite number", entropy=LP, response_mask=MASK, entropy_coeff=NAN),
    C("losses.entropy_bonus", T, "`entropy_coeff` must be a finite number", entropy=LP, response_mask=MASK, entropy_coeff="0.01"),
    C("losses.entropy_bonus", V, "`loss_mask` shape (4, 2)", entropy=LP, response_mask=MASK[:, :2], entropy_coeff=0.01),
    C("losses.entropy_bonus", T, "`loss_mat` must be a floating-point tensor", entropy=LP.long(), response_mask=MASK, entropy_coeff=0.01),
    C("losses.entropy_bonus", V, "unknown `loss_agg_mode`", entropy=LP, response_mask=MASK, entropy_coeff=0.01, loss_agg_mode="avg"),
    C("losses.actor_loss", V, "`ref_log_prob` is required when `kl_loss_coef` != 0", **POLICY, kl_loss_coef=0.1),
    C("losses.actor_loss", V, "`entropy` is required when `entropy_coeff` != 0", **POLICY, entropy_coeff=0.1),
    C("losses.actor_loss", V, "`kl_loss_coef` must be a finite number", **POLICY, kl_loss_coef=NAN),
    C("losses.actor_loss", V, "`entropy` shape (4, 2) does not match", **POLICY, entropy=LP[:, :2], entropy_coeff=0.1),
    C("losses.actor_loss", V, "`ref_log_prob` shape (4, 2) does not match", **POLICY, ref_log_prob=LP[:, :2], kl_loss_coef=0.1),
    C("losses.actor_loss", V, "unknown `kind` 'k4'", **POLICY, ref_log_prob=LP, kl_loss_coef=0.1, kl_loss_type="k4"),
    C("losses.actor_loss", V, "`advantages` shape (3,)", **{**POLICY, "advantages": ADV[:3]}),
    # ---------------- dapo
    C("dapo.response_lengths", T, "`response_mask` must be a torch.Tensor", response_mask=[[1, 0]]),
    C("dapo.response_lengths", V, "`response_mask` must be 2-D", response_mask=torch.ones(3)),
    C("dapo.response_lengths", V, "`response_mask` must contain only 0 and 1", response_mask=torch.tensor([[2, 1]])),
    C("dapo.response_lengths", V, "`response_mask` must contain only 0 and 1", response_mask=torch.tensor([[0.5, 1.]])),
    C("dapo.response_lengths", V, "`response_mask` must contain only 0 and 1", response_mask=torch.tensor([[NAN, 1.]])),
    C("dapo.overlong_penalty", V, "`max_response_length` must be an int > 0", response_length=torch.tensor([1]), max_response_length=0, overlong_buffer_len=1),
    C("dapo.overlong_penalty", V, "`overlong_buffer_len` must be an int >= 1 and <= 10", response_length=torch.tensor([1]), max_response_length=10, overlong_buffer_len=11),
    C("dapo.overlong_penalty", V, "`penalty_factor` must be a finite number >= 0", response_length=torch.tensor([1]), max_response_length=10, overlong_buffer_len=5, penalty_factor=-1),
    C("dapo.overlong_penalty", V, "`response_length` must be >= 0", response_length=torch.tensor([-1]), max_response_length=10, overlong_buffer_len=5),
    C("dapo.overlong_penalty", V, "`response_length` must be 1-D", response_length=torch.ones(2, 2), max_response_length=10, overlong_buffer_len=5),
    C("dapo.overlong_penalty", V, "`response_length` contains NaN", response_length=torch.tensor([NAN]), max_response_length=10, overlong_buffer_len=5),
    C("dapo.overlong_penalty", T, "`response_length` must hold numbers", response_length=["3"], max_response_length=10, overlong_buffer_len=5),
    C("dapo.overlong_penalty", T, "`max_response_length` must be an int > 0", response_length=torch.tensor([1]), max_response_length=10.0, overlong_buffer_len=5),
    C("dapo.overlong_reward_shaping", V, "`rewards` has 3 entries, expected 2", rewards=torch.ones(3), response_mask=torch.ones(2, 4), max_response_length=4, overlong_buffer_len=2),
    C("dapo.overlong_reward_shaping", T, "`rewards` must hold numbers", rewards=["1", "0"], response_mask=torch.ones(2, 4), max_response_length=4, overlong_buffer_len=2),
    C("dapo.overlong_reward_shaping", V, "`rewards` contains NaN", rewards=[NAN, 0.], response_mask=torch.ones(2, 4), max_response_length=4, overlong_buffer_len=2),
    C("dapo.overlong_reward_shaping", V, "`response_mask` must contain only 0 and 1", rewards=[1., 0.], response_mask=torch.full((2, 4), 2), max_response_length=4, overlong_buffer_len=2),
    C("dapo.overlong_reward_shaping", V, "`overlong_buffer_len` must be an int >= 1", rewards=[1., 0.], response_mask=torch.ones(2, 4), max_response_length=4, overlong_buffer_len=0),
    C("dapo.groups_with_spread", V, "`metric` contains NaN", metric=torch.tensor([1., NAN]), group_size=2),
    C("dapo.groups_with_spread", V, "`metric` must be 1-D", metric=torch.ones(2, 2), group_size=2),
    C("dapo.groups_with_spread", T, "`metric` must hold numbers, got strings", metric=["False", "True"], group_size=2),
    C("dapo.groups_with_spread", V, "does not divide", metric=torch.ones(3), group_size=2),
    C("dapo.groups_with_spread", V, "exactly one of `index`", metric=torch.ones(2)),
    C("dapo.DynamicSampler", V, "`target_num_prompts` must be an int > 0", target_num_prompts=0),
    C("dapo.DynamicSampler", T, "`target_num_prompts` must be an int > 0", target_num_prompts=2.0),
    C("dapo.DynamicSampler", T, "`target_num_prompts` must be an int > 0", target_num_prompts="2"),
    C("dapo.DynamicSampler", T, "`max_num_gen_batches` must be an int", target_num_prompts=2, max_num_gen_batches=1.5),
    C("dapo.DynamicSampler", V, "`target_num_prompts` must be an int > 0", target_num_prompts=-3),
    C("dapo.dynamic_sampling", KeyError, "no column 'score'", batches=[{"acc": [1, 0], "uid": [0, 0]}], target_num_prompts=1, metric="score"),
    C("dapo.dynamic_sampling", RuntimeError, "ran out of batches", batches=[{"acc": [1, 1], "uid": [0, 0]}], target_num_prompts=1),
    C("dapo.dynamic_sampling", V, "`target_num_prompts` must be an int > 0", batches=[], target_num_prompts=0),
    C("dapo.dynamic_sampling", T, "`batch['acc']` must hold numbers, got strings", batches=[{"acc": ["1", "0"], "uid": [0, 0]}], target_num_prompts=1),
    C("dapo.dynamic_sampling", V, "`batch['acc']` contains NaN", batches=[{"acc": [NAN, 0.], "uid": [0, 0]}], target_num_prompts=1),
    C("dapo.run_preset", V, "unknown `name` 'ppo'; valid: grpo-1.5b", name="ppo"),
    C("dapo.run_preset", V, "unknown RunPreset field", name="grpo-7b", learning_rate=1.0),
    C("dapo.run_preset", V, "`lr` must be a finite number >= 0", name="grpo-7b", lr=NAN),
    C("dapo.run_preset", T, "`n_rollouts` must be an int >= 0", name="grpo-7b", n_rollouts=16.5),
    C("dapo.run_preset", T, "`use_kl_loss` must be a bool", name="grpo-7b", use_kl_loss="yes"),
    C("dapo.run_preset", V, "`grad_clip` must be a finite number >= 0", name="grpo-7b", grad_clip=-1.0),
    # ---------------- interop
    C("interop.compute_ktae_outcome_advantage", T, "`responses` (the [B, L] response token ids) is required", token_level_rewards=TLR, response_mask=MASK, index=UID),
    C("interop.compute_ktae_outcome_advantage", T, "`index` (per-row group ids", token_level_rewards=TLR, response_mask=MASK, responses=RESP),
    C("interop.compute_ktae_outcome_advantage", V, "`token_level_rewards` must be 2-D", token_level_rewards=REW, response_mask=MASK, index=UID, responses=RESP),
    C("interop.compute_ktae_outcome_advantage", T, "`token_level_rewards` must be a floating-point tensor", token_level_rewards=TLR.long(), response_mask=MASK, index=UID, responses=RESP),
    C("interop.compute_ktae_outcome_advantage", V, "`response_mask` shape (4, 2) does not match", token_level_rewards=TLR, response_mask=MASK[:, :2], index=UID, responses=RESP),
    C("interop.compute_ktae_outcome_advantage", V, "unknown KTAE override", token_level_rewards=TLR, response_mask=MASK, index=UID, responses=RESP, ktae={"betta": 1}),
    C("interop.compute_ktae_outcome_advantage", V, "`index` has 3 entries", token_level_rewards=TLR, response_mask=MASK, index=UID[:3], responses=RESP),
    C("interop.register_verl_estimator", V, "`name` must be a non-empty str", name="", core_algos="FAKE_CORE"),
    C("interop.register_verl_estimator", V, "`name` must be a non-empty str", name=None, core_algos="FAKE_CORE"),
    C("interop.register_verl_estimator", V, "unknown KTAE override", core_algos="FAKE_CORE", betta=1.0),
    C("interop.register_verl_estimator", V, "valid presets", core_algos="FAKE_CORE", preset="nope"),
    C("interop.register_verl_estimator", V, "unknown `estimator` 'gae'", core_algos="FAKE_CORE", estimator="gae"),
    C("interop.compute_ktae_advantage_for_batch", KeyError, "has no 'responses'", data=_proto(responses=None)),
    C("interop.compute_ktae_advantage_for_batch", KeyError, "has no 'token_level_rewards'", data=_proto(token_level_rewards=None)),
    C("interop.compute_ktae_advantage_for_batch", KeyError, "has no 'gid' group ids", data=_proto(), uid_key="gid"),
    C("interop.compute_ktae_advantage_for_batch", KeyError, "needs `response_mask` or `attention_mask`", data=_proto(response_mask=None)),
    C("interop.compute_ktae_advantage_for_batch", V, "`response_mask` must contain only 0 and 1", data=_proto(response_mask=MASK * 2)),
    C("interop.compute_ktae_advantage_for_batch", T, "`data` must have `batch` and `non_tensor_batch`", data={"responses": RESP}),
    C("interop.patch_verl_compute_advantage", V, "`name` must be a non-empty str", name="", module="FAKE_MODULE"),
    C("interop.patch_verl_compute_advantage", V, "unknown KTAE override", module="FAKE_MODULE", betta=1.0),
    C("interop.patch_verl_compute_advantage", V, "valid presets", module="FAKE_MODULE", preset="nope"),
    C("interop.patch_verl_compute_advantage", T, "`module` has no `compute_advantage`", module=SimpleNamespace()),
    C("interop.patch_verl_compute_advantage", V, "unknown `estimator` 'x'", module="FAKE_MODULE", estimator="x"),
    C("interop.verl_overrides", T, "`preset` must be a RunPreset", preset="grpo-7b"),
    C("interop.verl_overrides", T, "`preset` must be a RunPreset", preset=None),
    C("interop.verl_overrides", T, "`preset` must be a RunPreset", preset={"lr": 1e-6}),
    C("interop.verl_overrides", T, "`preset` must be a RunPreset", preset=3),
    C("interop.verl_overrides", T, "`preset` must be a RunPreset", preset=SimpleNamespace(lr=1e-6)),
    C("interop.trl_ktae_advantages", V, "unknown `scale_rewards` 'global'; valid: group, batch, none", completion_ids=RESP, completion_mask=MASK, rewards=REW, num_generations=2, scale_rewards="global"),
    C("interop.trl_ktae_advantages", V, "`advantages` shape (3,) does not match", completion_ids=RESP, completion_mask=MASK, rewards=REW, num_generations=2, advantages=torch.zeros(3)),
    C("interop.trl_ktae_advantages", V, "does not divide", completion_ids=RESP, completion_mask=MASK, rewards=REW, num_generations=3),
    C("interop.trl_ktae_advantages", T, "`rewards` must hold numbers, got strings", completion_ids=RESP, completion_mask=MASK, rewards=list("1010"), num_generations=2),
    C("interop.trl_ktae_advantages", V, "`rewards` contains NaN or infinite", completion_ids=RESP, completion_mask=MASK, rewards=torch.tensor([INF, 0., 1., 0.]), num_generations=2),
    C("interop.trl_ktae_advantages", T, "`responses` must hold integer token ids", completion_ids=RESP.float(), completion_mask=MASK, rewards=REW, num_generations=2),
    C("interop.trl_ktae_advantages", V, "`eps` must be a finite number >= 0", completion_ids=RESP, completion_mask=MASK, rewards=REW, num_generations=2, eps=-1.0),
    C("interop.make_ktae_grpo_trainer", T, "`base` must be a class", base="GRPOTrainer"),
    C("interop.make_ktae_grpo_trainer", V, "valid presets", base=object, preset="nope"),
    C("interop.make_ktae_grpo_trainer", V, "unknown KTAE override", base=object, betta=1.0),
    C("interop.make_ktae_grpo_trainer", V, "`k1` must be a finite number > 0", base=object, k1=0.0),
    C("interop.make_ktae_grpo_trainer", T, "`base` must be a class", base=3),
]


def _resolve(value):
    "Placeholders for objects the table cannot build at import time."
    if isinstance(value, str) and value == "CFG": return _cfg()
    if isinstance(value, str) and value == "STATS": return _stats()
    if isinstance(value, str) and value == "FAKE_CORE":
        return SimpleNamespace(ADV_ESTIMATOR_REGISTRY={}, register_adv_est=lambda name: (lambda fn: fn))
    if isinstance(value, str) and value == "FAKE_MODULE": return _mod()
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "KTAECFG":
        from ktae_lab.ktae import KTAEConfig
        return KTAEConfig(**value[1])
    return value


def call(fn, kwargs):
    "Call ktae_lab.<module>.<name> with the row's arguments (placeholders resolved)."
    mod, name = fn.split(".")
    f = getattr(importlib.import_module(f"ktae_lab.{mod}"), name)
    return f(**{k: _resolve(v) for k, v in kwargs.items()})


@pytest.mark.parametrize("fn, kwargs, exc, fragment", CASES)
def test_bad_input_gives_a_clear_error(fn, kwargs, exc, fragment):
    with pytest.raises(exc) as info: call(fn, kwargs)
    assert fragment in str(info.value), f"{fn}: message {str(info.value)!r} lacks {fragment!r}"


def test_every_public_function_has_five_bad_inputs():
    from collections import Counter
    n = Counter(p.values[0] for p in CASES)
    mods = ["core", "stats", "advantages", "ktae", "losses", "dapo", "interop"]
    public = [f"{m}.{name}" for m in mods for name in importlib.import_module(f"ktae_lab.{m}").__all__
              if callable(getattr(importlib.import_module(f"ktae_lab.{m}"), name))
              and not isinstance(getattr(importlib.import_module(f"ktae_lab.{m}"), name), type(torch.float32))]
    skip = {"dapo.run_presets_table", "dapo.RunPreset", "ktae.KTAEConfig", "core.accumulation_dtype"}   # no arguments to spoil / a dataclass
    short = {f: n[f] for f in public if f not in skip and n[f] < 5}
    assert not short, f"public functions with fewer than 5 bad-input rows: {short}"


# ---------------------------------------------------------------- right answers where dtypes or degenerate batches bit
from ktae_lab.core import group_mean_std, accumulation_dtype
from ktae_lab.advantages import grpo_advantages, batch_std_advantages, rloo_advantages, outcome_advantages
from ktae_lab.ktae import key_token_values, ktae_advantages, _ktae_batch, resolve_config
from ktae_lab.losses import agg_loss, policy_loss, kl_penalty, entropy_from_logits, actor_loss, AGG_MODES


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("estimator", ["grpo", "dr_grpo", "batch_std", "rloo"])
def test_half_precision_rewards_match_float32(dtype, estimator):
    r = torch.linspace(0, 100, 512)                                    # 2 groups of 256 rewards in [0, 100]
    r = r[torch.randperm(512, generator=torch.Generator().manual_seed(0))]
    lo = outcome_advantages(r.to(dtype), group_size=256, estimator=estimator)
    hi = outcome_advantages(r.to(dtype).float(), group_size=256, estimator=estimator)
    assert lo.dtype == dtype and torch.isfinite(lo).all() and lo.abs().max() > 0.1
    tol = 1e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(lo.float(), hi, rtol=tol, atol=tol * (1 if estimator in ("grpo", "batch_std") else 100))


@pytest.mark.parametrize("estimator", ["grpo", "batch_std", "rloo", "dr_grpo"])
def test_eps_zero_and_equal_rewards_give_zeros(estimator):
    r = torch.tensor([1., 1., 1., 0., 0., 0., 0.3, 0.3, 0.3])
    kw = {} if estimator == "rloo" else dict(eps=0.0)
    a = outcome_advantages(r, group_size=3, estimator=estimator, **kw)
    assert torch.isfinite(a).all()
    if estimator != "batch_std": assert (a == 0).all()
    A = ktae_advantages(RESP, MASK, torch.ones(4), group_size=2, eps=0.0, estimator=estimator)
    assert torch.equal(A, torch.zeros_like(A))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", AGG_MODES)
def test_half_precision_agg_loss_matches_float32(dtype, mode):
    g = torch.Generator().manual_seed(1)
    lm = torch.rand(4, 30000, generator=g); mk = (torch.rand(4, 30000, generator=g) < 0.9).long()
    lo = agg_loss(lm.to(dtype), mk, mode)
    hi = agg_loss(lm.to(dtype).float(), mk, mode)
    assert lo.dtype == dtype and torch.isfinite(lo)
    torch.testing.assert_close(lo.float(), hi, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_policy_loss_and_kl(dtype):
    g = torch.Generator().manual_seed(2)
    old = torch.randn(8, 64, generator=g) - 3; new = old + 0.1 * torch.randn(8, 64, generator=g)
    new[0, :4] = old[0, :4] + 12                                        # ratio e^12 overflows float16
    adv = torch.randn(8, generator=g); adv[0] = 0.
    mk = torch.ones(8, 64)
    lo, mlo = policy_loss(old.to(dtype), new.to(dtype), adv.to(dtype), mk)
    hi, mhi = policy_loss(old.to(dtype).float(), new.to(dtype).float(), adv.to(dtype).float(), mk)
    assert torch.isfinite(lo) and all(torch.isfinite(v) for v in mlo.values())
    torch.testing.assert_close(lo.float(), hi, rtol=2e-2, atol=2e-2)
    for k in mhi: torch.testing.assert_close(mlo[k].float(), mhi[k].float(), rtol=2e-2, atol=2e-2)
    for kind in ("k1", "k2", "k3"):
        torch.testing.assert_close(kl_penalty(new.to(dtype), old.to(dtype), kind).float(),
                                   kl_penalty(new.to(dtype).float(), old.to(dtype).float(), kind), rtol=2e-2, atol=2e-2)
    logits = torch.randn(4, 8, 1000, generator=g) * 20
    torch.testing.assert_close(entropy_from_logits(logits.to(dtype)).float(), entropy_from_logits(logits.to(dtype).float()), rtol=2e-2, atol=2e-2)


def test_nan_log_probs_in_padding_never_reach_loss_or_metrics():
    old = torch.zeros(2, 4); new = torch.zeros(2, 4).requires_grad_()
    mk = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    bad_old = old.clone(); bad_old[mk == 0] = NAN
    new_bad = new + torch.where(mk == 0, torch.full_like(old, NAN), torch.zeros_like(old))
    loss, m = actor_loss(bad_old, new_bad, torch.tensor([1., -1.]), mk, ref_log_prob=bad_old, kl_loss_coef=0.1,
                         entropy=torch.where(mk == 0, torch.full_like(old, NAN), torch.ones_like(old)), entropy_coeff=0.01)
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in m.values())
    loss.backward()
    assert torch.isfinite(new.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_ktae_values_with_narrow_or_wide_rewards_match_float32(dtype):
    r = REW.to(dtype)
    K = key_token_values(RESP, MASK, r, group_size=2); K32 = key_token_values(RESP, MASK, REW, group_size=2)
    torch.testing.assert_close(K.float(), K32, rtol=1e-6, atol=1e-6)
    A = ktae_advantages(RESP, MASK, r, group_size=2); A32 = ktae_advantages(RESP, MASK, REW, group_size=2)
    torch.testing.assert_close(A.float(), A32, rtol=1e-2, atol=1e-2)


def test_huge_token_ids_below_the_limit_still_score():
    big = RESP + 2**61
    torch.testing.assert_close(key_token_values(big, MASK, REW, group_size=2), key_token_values(RESP, MASK, REW, group_size=2))


@pytest.mark.parametrize("released", [False, True])
def test_results_do_not_depend_on_chunk_tokens(released):
    g = torch.Generator().manual_seed(3)
    ranks = torch.arange(1, 2001, dtype=torch.float64)
    resp = torch.multinomial(1 / ranks, 48 * 16 * 96, replacement=True, generator=g).view(48 * 16, 96)
    mask = (torch.arange(96)[None] < torch.randint(8, 97, (48 * 16, 1), generator=g)).long()
    rew = torch.randint(0, 2, (48 * 16,), generator=g).float()
    cfg = resolve_config(released_numerics=released)
    K = _ktae_batch(resp, mask, rew, None, 16, cfg)[0]
    for chunk in (5000, 777):
        assert torch.equal(_ktae_batch(resp, mask, rew, None, 16, cfg, chunk_tokens=chunk)[0], K)
