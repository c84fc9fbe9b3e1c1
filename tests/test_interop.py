"""verl and TRL glue: estimator signature, registry, DataProto adapter, trainer patch, TRL advantages and subclass."""
import importlib
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ktae_lab.advantages import outcome_advantages
from ktae_lab.ktae import key_token_values, ktae_advantages
from ktae_lab import interop
from ktae_lab.interop import (compute_ktae_outcome_advantage, compute_ktae_advantage_for_batch, register_verl_estimator,
                              patch_verl_compute_advantage, verl_overrides, trl_ktae_advantages, make_ktae_grpo_trainer)
from ktae_lab.dapo import RUN_PRESETS


def _batch(token_batch, seed=0):
    "3 groups of 8, rows interleaved (conftest's builder) plus verl's token_level_rewards (the score on the last token) and uid."
    b = token_batch(seed, n_groups=3, G=8, L=10, vocab=30, shuffle=True)
    resp, mask, score = b["responses"], b["response_mask"], b["rewards"]
    tlr = torch.zeros(mask.shape); tlr[torch.arange(len(score)), mask.sum(1) - 1] = score
    return resp, mask, score, tlr, np.array(["uid-" + q[1:] for q in b["index"]], dtype=object)


# ---- verl estimator ----
def test_estimator_is_grpo_plus_K(token_batch):
    resp, mask, score, tlr, uid = _batch(token_batch, 1)
    adv, ret = compute_ktae_outcome_advantage(tlr, mask, uid, resp)
    torch.testing.assert_close(adv, ktae_advantages(resp, mask, score, index=uid))
    assert ret is adv and adv.dtype == tlr.dtype


def test_estimator_settings_from_config_and_kwargs(token_batch):
    resp, mask, score, tlr, uid = _batch(token_batch, 2)
    cfg = {"norm_adv_by_std_in_grpo": False, "ktae": {"preset": "clean", "beta": 2.0, "ignore_ids": [3]}}
    adv, _ = compute_ktae_outcome_advantage(tlr, mask, uid, resp, config=cfg, reward_baselines=torch.zeros(24))
    expect = ktae_advantages(resp, mask, score, index=uid, estimator="dr_grpo", preset="clean", beta=2.0, ignore_ids=(3,))
    torch.testing.assert_close(adv, expect)
    assert (adv[(resp == 3) & (mask == 1)] == outcome_advantages(score, index=uid, estimator="dr_grpo")[:, None].expand_as(adv)[(resp == 3) & (mask == 1)]).all()
    adv2, _ = compute_ktae_outcome_advantage(tlr, mask, uid, resp, config=cfg, ktae={"estimator": "rloo"})
    torch.testing.assert_close(adv2, ktae_advantages(resp, mask, score, index=uid, estimator="rloo"))
    adv3, _ = compute_ktae_outcome_advantage(tlr, mask, uid, resp, config=cfg, norm_adv_by_std_in_grpo=True, ktae={})
    torch.testing.assert_close(adv3, ktae_advantages(resp, mask, score, index=uid))


def test_estimator_without_K_equals_verl_grpo(token_batch):
    ca = pytest.importorskip("verl.trainer.ppo.core_algos", reason="verl not installed", exc_type=ImportError)
    resp, mask, score, tlr, uid = _batch(token_batch, 3)
    for norm in (True, False):
        ours, _ = compute_ktae_outcome_advantage(tlr, mask.float(), uid, resp, norm_adv_by_std_in_grpo=norm,
                                                 ktae={"alpha": 0.0, "beta": 0.0})
        ref, _ = ca.compute_grpo_outcome_advantage(tlr, mask.float(), uid, epsilon=1e-6, norm_adv_by_std_in_grpo=norm)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_verl_algo_config(token_batch):
    pytest.importorskip("verl.trainer.ppo.core_algos", reason="verl not installed", exc_type=ImportError)
    from verl.trainer.config import AlgoConfig
    resp, mask, score, tlr, uid = _batch(token_batch, 4)
    adv, _ = compute_ktae_outcome_advantage(tlr, mask, uid, resp, config=AlgoConfig(norm_adv_by_std_in_grpo=False))
    torch.testing.assert_close(adv, ktae_advantages(resp, mask, score, index=uid, estimator="dr_grpo"))


def test_registry(token_batch):
    ca = pytest.importorskip("verl.trainer.ppo.core_algos", reason="verl not installed", exc_type=ImportError)
    importlib.reload(interop)                                        # verl is loaded now: import registers "ktae"
    fn = ca.get_adv_estimator_fn("ktae")
    resp, mask, score, tlr, uid = _batch(token_batch, 5)
    # the way verl's trainer calls it (keywords only), plus responses
    adv, _ = fn(token_level_rewards=tlr, response_mask=mask, config=None, index=uid, responses=resp)
    torch.testing.assert_close(adv, ktae_advantages(resp, mask, score, index=uid))
    with pytest.raises(TypeError, match="stock verl does not pass it"):
        fn(token_level_rewards=tlr, response_mask=mask, config=None, index=uid)
    fn2 = register_verl_estimator(preset="clean", ignore_ids=(0,))      # re-registering replaces
    assert ca.get_adv_estimator_fn("ktae") is fn2
    adv2, _ = fn2(token_level_rewards=tlr, response_mask=mask, index=uid, responses=resp)
    torch.testing.assert_close(adv2, ktae_advantages(resp, mask, score, index=uid, preset="clean", ignore_ids=(0,)))
    register_verl_estimator()


def test_dataproto_adapter(token_batch):
    resp, mask, score, tlr, uid = _batch(token_batch, 6)
    expect = ktae_advantages(resp, mask, score, index=uid)
    d = SimpleNamespace(batch={"responses": resp, "response_mask": mask, "token_level_rewards": tlr}, non_tensor_batch={"uid": uid})
    assert compute_ktae_advantage_for_batch(d) is d
    torch.testing.assert_close(d.batch["advantages"], expect)
    verl = pytest.importorskip("verl", reason="verl not installed", exc_type=ImportError)
    prompt = torch.ones(24, 5, dtype=torch.long)
    dp = verl.DataProto.from_dict(tensors={"responses": resp, "attention_mask": torch.cat([prompt, mask], 1),
                                           "token_level_rewards": tlr}, non_tensors={"uid": uid})
    compute_ktae_advantage_for_batch(dp)
    torch.testing.assert_close(dp.batch["advantages"], expect)
    torch.testing.assert_close(dp.batch["returns"], expect)


def test_patch_compute_advantage(token_batch):
    resp, mask, score, tlr, uid = _batch(token_batch, 7)
    calls = []
    mod = SimpleNamespace(compute_advantage=lambda data, adv_estimator, gamma=1.0, norm_adv_by_std_in_grpo=True, config=None:
                          calls.append(adv_estimator) or data)
    wrapped = patch_verl_compute_advantage(module=mod, preset="clean")
    d = SimpleNamespace(batch={"responses": resp, "response_mask": mask, "token_level_rewards": tlr}, non_tensor_batch={"uid": uid})
    mod.compute_advantage(d, "grpo", 1.0); assert calls == ["grpo"] and "advantages" not in d.batch
    mod.compute_advantage(d, SimpleNamespace(value="ktae"), norm_adv_by_std_in_grpo=False, config=None)
    torch.testing.assert_close(d.batch["advantages"], ktae_advantages(resp, mask, score, index=uid, estimator="dr_grpo", preset="clean"))
    patch_verl_compute_advantage(module=mod)                          # patching twice wraps the original once
    assert mod.compute_advantage.__wrapped__ is wrapped.__wrapped__


def test_verl_overrides_cover_presets():
    for name, p in RUN_PRESETS.items():
        o = dict(s.split("=", 1) for s in verl_overrides(p))
        assert o["algorithm.adv_estimator"] == p.adv_estimator
        assert float(o["actor_rollout_ref.actor.clip_ratio_high"]) == p.clip_ratio_high
        assert float(o["actor_rollout_ref.actor.clip_ratio_c"]) == p.clip_ratio_c
        assert ("algorithm.filter_groups.enable" in o) == p.filter_groups_enable
        assert ("reward_model.overlong_buffer.len" in o) == p.overlong_buffer_enable


# ---- TRL ----
def _trl_batch(seed=0, n_prompts=4, G=4, T=9, V=25):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (n_prompts * G, T), generator=g)
    lens = torch.randint(1, T + 1, (n_prompts * G,), generator=g)
    mask = (torch.arange(T)[None] < lens[:, None]).long()
    ids = ids * mask                                                    # pad id 0
    r = torch.randint(0, 2, (n_prompts * G,), generator=g).float()
    return ids, mask, r


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_trl_advantages_formula(scale):
    ids, mask, r = _trl_batch(1)
    A = trl_ktae_advantages(ids, mask, r, 4, scale_rewards=scale)
    mean = r.view(-1, 4).mean(1).repeat_interleave(4)
    std = {"group": r.view(-1, 4).std(1).repeat_interleave(4), "batch": r.std().expand(16), "none": None}[scale]
    base = r - mean if std is None else (r - mean) / (std + 1e-4)            # TRL 1.16's formula
    K = key_token_values(ids, mask, r, group_size=4)
    torch.testing.assert_close(A, (base[:, None] + K) * mask)
    torch.testing.assert_close(trl_ktae_advantages(ids, mask, r, 4, advantages=base * 2), (2 * base[:, None] + K) * mask)


def test_trl_nan_rewards_and_bool_scale():
    ids, mask, r = _trl_batch(2)
    r2 = r.clone(); r2[0] = float("nan")
    r3 = r.clone(); r3[0] = 0.0
    torch.testing.assert_close(trl_ktae_advantages(ids, mask, r2, 4), trl_ktae_advantages(ids, mask, r3, 4))
    torch.testing.assert_close(trl_ktae_advantages(ids, mask, r, 4, scale_rewards=False), trl_ktae_advantages(ids, mask, r, 4, scale_rewards="none"))


class _SingleAcc:
    """Stand-in accelerator for a single process."""
    process_index, num_processes = 0, 1
    def pad_across_processes(self, x, dim=1, pad_index=0): return x
    def gather(self, x): return x


def _fake_trainer(ids, mask, adv_local, rewards_all, acc):
    class Base:
        num_generations, reward_weights, accelerator = 4, torch.tensor([0.5, 0.5]), acc
        model = SimpleNamespace(training=True)
        processing_class = SimpleNamespace(pad_token_id=0)
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            return torch.stack([rewards_all, rewards_all], 1)            # two reward functions, weights 0.5
        def _generate_and_score_completions(self, inputs):
            self._calculate_rewards(inputs, None, None, None)
            return {"completion_ids": ids, "completion_mask": mask, "advantages": adv_local, "other": 1}
    return Base


def test_trl_subclass_single_process():
    ids, mask, r = _trl_batch(3)
    base_adv = outcome_advantages(r, group_size=4, eps=1e-4)
    cls = make_ktae_grpo_trainer(_fake_trainer(ids, mask, base_adv, r, _SingleAcc()))
    out = cls()._generate_and_score_completions(None)
    torch.testing.assert_close(out["advantages"], trl_ktae_advantages(ids, mask, r, 4))
    assert out["other"] == 1 and cls.__name__ == "KTAEBase"


def test_trl_subclass_second_of_two_processes():
    """Process 1 of 2 with a group split across processes: K comes from the gathered batch, then this process's rows."""
    ids, mask, r = _trl_batch(4, n_prompts=3, G=4, T=9)             # 12 rows; group 1 = rows 4..7 spans both halves
    h = 6
    mask2 = mask.clone(); mask2[h:, 7:] = 0; ids2 = ids * mask2       # process 1 only padded to width 7
    p0_ids, p1_ids, p0_mask, p1_mask = ids2[:h], ids2[h:, :7], mask2[:h], mask2[h:, :7]
    full_adv = trl_ktae_advantages(ids2, mask2, r, 4)
    class Acc:
        process_index, num_processes = 1, 2
        def pad_across_processes(self, x, dim=1, pad_index=0): return torch.nn.functional.pad(x, (0, 9 - x.shape[1]), value=pad_index)
        def gather(self, x):
            if x.dim() == 1: return torch.cat([outcome_advantages(r, group_size=4, eps=1e-4)[:h], x])   # TRL's [B] advantages
            src = [p0_ids, p1_ids] if torch.equal(x[:, :7], p1_ids) else [p0_mask, p1_mask]
            return torch.cat([torch.nn.functional.pad(p, (0, 9 - p.shape[1])) for p in src])
    base_local = outcome_advantages(r, group_size=4, eps=1e-4)[h:]
    cls = make_ktae_grpo_trainer(_fake_trainer(p1_ids, p1_mask, base_local, r, Acc()))
    out = cls()._generate_and_score_completions(None)
    assert out["advantages"].shape == (6, 7)
    torch.testing.assert_close(out["advantages"], full_adv[h:, :7])


def test_trl_subclass_of_real_trainer():
    trl = pytest.importorskip("trl", reason="trl not installed", exc_type=ImportError)
    from trl import GRPOTrainer
    cls = make_ktae_grpo_trainer()
    assert issubclass(cls, GRPOTrainer)
    for hook in ("_calculate_rewards", "_generate_and_score_completions"):   # the hooks exist in this TRL version
        assert hook in vars(GRPOTrainer) and hook in vars(cls)
    import inspect
    assert list(inspect.signature(GRPOTrainer._calculate_rewards).parameters)[1:] == ["inputs", "prompts", "completions", "completion_ids_list"]


# ---- bad input ----
def test_bad_input(token_batch):
    resp, mask, score, tlr, uid = _batch(token_batch, 8)
    with pytest.raises(TypeError, match="`index`"): compute_ktae_outcome_advantage(tlr, mask, None, resp)
    with pytest.raises(ValueError, match="`token_level_rewards` must be 2-D"): compute_ktae_outcome_advantage(score, mask, uid, resp)
    with pytest.raises(TypeError, match="`token_level_rewards` must be a floating-point"): compute_ktae_outcome_advantage(tlr.long(), mask, uid, resp)
    with pytest.raises(ValueError, match="`response_mask` shape"): compute_ktae_outcome_advantage(tlr, mask[:, :3], uid, resp)
    with pytest.raises(ValueError, match="unknown KTAE override"): compute_ktae_outcome_advantage(tlr, mask, uid, resp, ktae={"betta": 1})
    with pytest.raises(KeyError, match="no 'uid'"):
        compute_ktae_advantage_for_batch(SimpleNamespace(batch={"responses": resp, "token_level_rewards": tlr}, non_tensor_batch={}))
    with pytest.raises(KeyError, match="no 'responses'"):
        compute_ktae_advantage_for_batch(SimpleNamespace(batch={"token_level_rewards": tlr}, non_tensor_batch={"uid": uid}))
    ids, m, r = _trl_batch(5)
    with pytest.raises(ValueError, match="valid: group, batch, none"): trl_ktae_advantages(ids, m, r, 4, scale_rewards="global")
    with pytest.raises(ValueError, match="`advantages` shape"): trl_ktae_advantages(ids, m, r, 4, advantages=torch.zeros(3))
    with pytest.raises(ValueError, match="does not divide"): trl_ktae_advantages(ids, m, r, 5)


def test_trl_one_training_step_with_ktae(tmp_path, tiny_grpo_parts):
    """One real GRPOTrainer step on a tiny random model: the subclass feeds [B, T] KTAE advantages to TRL's loss."""
    pytest.importorskip("trl", reason="trl not installed", exc_type=ImportError)
    pytest.importorskip("datasets", reason="datasets not installed", exc_type=ImportError)
    from trl import GRPOConfig, GRPOTrainer
    model, hf_tok, ds = tiny_grpo_parts()
    seen = {}
    class Spy(make_ktae_grpo_trainer(GRPOTrainer)):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            seen.update(out=out, rewards=self._ktae_rewards_per_func.sum(1))
            return out
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4, max_completion_length=8,
                      max_steps=1, report_to=[], use_cpu=True, logging_steps=1, save_strategy="no", disable_tqdm=True)
    tr = Spy(model=model, reward_funcs=lambda completions, **kw: [float("1" in c) for c in completions], args=args,
             train_dataset=ds, processing_class=hf_tok)
    result = tr.train()
    out = seen["out"]
    ids, mask = out["completion_ids"], out["completion_mask"]
    assert out["advantages"].shape == ids.shape
    torch.testing.assert_close(out["advantages"], trl_ktae_advantages(ids, mask, seen["rewards"], 4), atol=1e-5, rtol=0)
    assert np.isfinite(result.training_loss)
