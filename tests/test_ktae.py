"""KTAE engine: parity with a slow reference and with scipy, properties, degenerate cases and bad input."""
import itertools, math, os, random
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck
from scipy.stats import fisher_exact

from ktae_lab.stats import fisher_exact_pvalue, information_gain, fisher_exact_pvalue_released
from ktae_lab.ktae import key_token_values, ktae_advantages, token_table, resolve_config, _ktae_batch
from ktae_lab.advantages import outcome_advantages
from reference_ktae import reference_key_token_values, reference_grpo, reference_token_stats


# ---------------------------------------------------------------- Fisher vs scipy, exhaustively
def all_tables(max_n):
    return [(a, b, c, d) for n in range(max_n + 1) for a in range(n + 1) for b in range(n + 1 - a)
            for c in range(n + 1 - a - b) for d in [n - a - b - c]]


FULL = os.environ.get("KTAE_LAB_FULL_TESTS") == "1"   # the exhaustive grids (a minute of CPU more), off in README's command


def fisher_grid(max_n=32, exhaustive_to=16, n_random=1500, seed=0):
    """2x2 tables for the scipy parity: every table with n <= `exhaustive_to`, every table with n == `max_n` (the largest
    factorials), and a seeded sample of `n_random` tables in between; KTAE_LAB_FULL_TESTS=1: every table up to `max_n`."""
    if FULL: return all_tables(max_n)
    mid = [t for t in all_tables(max_n - 1) if sum(t) > exhaustive_to]
    return (all_tables(exhaustive_to) + random.Random(seed).sample(mid, n_random) +
            [(a, b, c, max_n - a - b - c) for a in range(max_n + 1) for b in range(max_n + 1 - a) for c in range(max_n + 1 - a - b)])


def test_fisher_matches_scipy_on_tables_up_to_32():
    "Every table up to n = 16 and at n = 32, 1,500 sampled between (every table up to 32 with KTAE_LAB_FULL_TESTS=1)."
    tabs = fisher_grid(32)
    assert len(tabs) == (math.comb(36, 4) if FULL else math.comb(20, 4) + 1500 + math.comb(35, 3))
    t = torch.tensor(tabs)
    ours = fisher_exact_pvalue(*t.T).numpy()
    ref = np.array([fisher_exact([[a, b], [c, d]], alternative="two-sided").pvalue for a, b, c, d in tabs])
    assert np.abs(ours - ref).max() <= 1e-12
    assert np.array_equal(ours == 1.0, ref == 1.0)          # the p = 1 rule fires on exactly the same tables


def test_released_fisher_float32_defect_counts():
    # exhaustive G = 16 -> 920 tables, 20 wrong (max 0.458), about 246 of 268 exact-1 miss 1.0. The exact count depends
    # on the CPU's float32 lgamma/exp kernels (246 with AVX2, 245 with AVX-512 for G = 16): the release's defect is
    # float32 rounding, so its count is only defined up to a few ulp-sized ties; the exact statistics are not affected.
    for G, n_tables, n_one, n_miss in [(16, 920, 268, 246), (8, 140, 64, 57)]:
        rows = [(a, b, nT - a, G - nT - b) for nT in range(1, G) for a in range(nT + 1) for b in range(G - nT + 1) if a + b]
        t = torch.tensor(rows); exact = fisher_exact_pvalue(*t.T); p32 = fisher_exact_pvalue_released(*t.T).double()
        assert len(rows) == n_tables and int((exact == 1).sum()) == n_one
        assert abs(int((p32[exact == 1] != 1.0).sum()) - n_miss) <= 3
    assert abs(fisher_exact_pvalue_released(5, 0, 9, 2).item() - 0.5417) < 1e-3 and fisher_exact_pvalue(5, 0, 9, 2).item() == 1.0


def test_information_gain_matches_direct_formula():
    for a, b, c, d in all_tables(8):
        N = a + b + c + d
        def h2(q): return sum(-x * math.log2(x) for x in (q, 1 - q) if x > 0)
        ref = 0.0 if N == 0 else h2((a + c) / N) - (a + b) / N * (h2(a / (a + b)) if a + b else 0) - (c + d) / N * (h2(c / (c + d)) if c + d else 0)
        assert abs(information_gain(a, b, c, d).item() - max(ref, 0)) < 1e-12


# ---------------------------------------------------------------- parity with the slow reference
def random_batch(rng, sizes, L, vocab, p_empty=0.1, reward_kind="binary"):
    labels = [f"q{g}" for g, n in enumerate(sizes) for _ in range(n)]
    rng.shuffle(labels)                                     # interleaved, unsorted group ids
    B = len(labels)
    resp = [[rng.randrange(vocab) for _ in range(L)] for _ in range(B)]
    mask = []
    for _ in range(B):
        n = 0 if rng.random() < p_empty else rng.randint(0, L)
        mask.append([1] * n + [0] * (L - n))
    if reward_kind == "binary": rew = [float(rng.random() < 0.5) for _ in range(B)]
    else: rew = [rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0]) for _ in range(B)]
    return resp, mask, rew, labels


CFGS = [dict(), dict(use_tf=False), dict(preset="clean"), dict(preset="clean", alpha=0.5, beta=2.0, gamma=0.3, top=0.7),
        dict(use_fisher=False), dict(use_ig=False, use_h=False), dict(ignore_ids=(0, 3))]


def ref_kwargs(cfg):
    cfg = dict(cfg); preset = cfg.pop("preset", "official")
    base = dict(p_transform="linear", tf_kind="bounded", half_h=False) if preset == "clean" else {}
    return {**base, **cfg}


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "official")
def test_matches_reference_on_random_batches(cfg):
    rng = random.Random(0)
    for trial in range(6):
        sizes = [rng.randint(1, 16) for _ in range(rng.randint(1, 5))]
        resp, mask, rew, labels = random_batch(rng, sizes, L=rng.randint(1, 14), vocab=rng.choice([3, 8, 40]),
                                               reward_kind="binary" if trial % 2 else "graded")
        ref = reference_key_token_values(resp, mask, rew, labels, **ref_kwargs(cfg))
        got = key_token_values(torch.tensor(resp), torch.tensor(mask), torch.tensor(rew), index=labels, **cfg)
        assert torch.allclose(got.double(), torch.tensor(ref, dtype=torch.float64), atol=1e-6), (trial, cfg)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_property_matches_reference(data):
    sizes = data.draw(st.lists(st.integers(1, 32), min_size=1, max_size=4))
    L = data.draw(st.integers(1, 10)); vocab = data.draw(st.integers(1, 12))
    B = sum(sizes)
    labels = data.draw(st.permutations([g for g, n in enumerate(sizes) for _ in range(n)]))
    resp = data.draw(st.lists(st.lists(st.integers(0, vocab - 1), min_size=L, max_size=L), min_size=B, max_size=B))
    lens = data.draw(st.lists(st.integers(0, L), min_size=B, max_size=B))
    mask = [[1] * n + [0] * (L - n) for n in lens]
    kind = data.draw(st.sampled_from(["mixed", "all_correct", "all_wrong"]))
    if kind == "mixed": rew = data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=B, max_size=B))
    else: rew = [1.0 if kind == "all_correct" else 0.0] * B
    got = key_token_values(torch.tensor(resp), torch.tensor(mask), torch.tensor(rew), index=torch.tensor(labels) * 7 + 3)
    ref = torch.tensor(reference_key_token_values(resp, mask, rew, labels), dtype=torch.float64)
    assert torch.isfinite(got).all()
    assert torch.allclose(got.double(), ref, atol=1e-6)
    if kind != "mixed": assert (got == 0).all()
    A = ktae_advantages(torch.tensor(resp), torch.tensor(mask), torch.tensor(rew), index=labels)
    Ahat = torch.tensor(reference_grpo(rew, labels), dtype=torch.float64)
    assert torch.allclose(A.double(), (Ahat[:, None] + ref) * torch.tensor(mask), atol=1e-6)


def test_token_table_matches_reference_stats():
    rng = random.Random(3)
    resp, mask, rew, labels = random_batch(rng, [8, 8, 5], L=12, vocab=10)
    df = token_table(torch.tensor(resp), torch.tensor(mask), torch.tensor(rew), index=labels)
    for g in sorted(set(labels)):
        rows = [i for i in range(len(labels)) if labels[i] == g]
        seqs = [[resp[i][t] for t in range(12) if mask[i][t]] for i in rows]
        ref = reference_token_stats(seqs, [rew[i] > 0 for i in rows])
        sub = df[df.group == g].set_index("token_id")
        assert sorted(sub.index) == sorted(ref)
        for v, s in ref.items():
            assert abs(sub.loc[v, "K"] - s["K"]) < 1e-6
            if "a" in s:
                assert (sub.loc[v, ["a", "b", "c", "d"]].tolist()) == [s["a"], s["b"], s["c"], s["d"]]
                for k in ("p", "F", "IG", "h", "tf_c", "tf_w", "x"): assert abs(sub.loc[v, k] - s[k]) < 1e-6 * max(1, abs(s[k])), k


def test_token_table_token_text_and_labels():
    resp = torch.tensor([[1, 2, 0], [1, 3, 0]]); mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    df = token_table(resp, mask, torch.tensor([1., 0.]), index=["p", "p"], tokens=[["x", "y", ""], ["x", "z", ""]])
    assert dict(zip(df.token_id, df.token)) == {1: "x", 2: "y", 3: "z"} and set(df.group) == {"p"}


# ---------------------------------------------------------------- chunking and layout invariances
def test_chunking_does_not_change_values():
    rng = random.Random(1)
    resp, mask, rew, labels = random_batch(rng, [16] * 6 + [3, 1], L=20, vocab=30)
    args = (torch.tensor(resp), torch.tensor(mask), torch.tensor(rew), labels, None, resolve_config())
    big = _ktae_batch(*args)[0]
    for chunk in (1, 7, 50, 300):
        assert torch.equal(_ktae_batch(*args, chunk_tokens=chunk)[0], big)


def test_group_size_equals_index_and_row_permutation():
    rng = random.Random(2)
    resp, mask, rew, _ = random_batch(rng, [8, 8, 8], L=10, vocab=12)
    labels = [i // 8 for i in range(24)]
    R, M, W = torch.tensor(resp), torch.tensor(mask), torch.tensor(rew)
    K1 = key_token_values(R, M, W, group_size=8)
    assert torch.equal(K1, key_token_values(R, M, W, index=labels))
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    K2 = key_token_values(R[perm], M[perm], W[perm], index=torch.tensor(labels)[perm])
    assert torch.allclose(K2, K1[perm], atol=1e-7)


# ---------------------------------------------------------------- degenerate cases: zeros, never NaN
def test_degenerate_groups_give_zero():
    R = torch.tensor([[5, 6, 7], [5, 6, 0], [8, 9, 9], [8, 1, 2], [4, 4, 4]])
    M = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 1], [0, 0, 0]])
    W = torch.tensor([1., 1., 0., 0., 1.])
    # group a: all correct; b: all wrong; c: one rollout with an empty mask
    K = key_token_values(R, M, W, index=["a", "a", "b", "b", "c"])
    assert (K == 0).all()
    A = ktae_advantages(R, M, W, index=["a", "a", "b", "b", "c"])
    assert torch.isfinite(A).all() and (A[:4] == 0).all() and (A[4] == 0).all()
    # a group of one: K = 0, GRPO uses mean 0, std 1 (verl's convention)
    A1 = ktae_advantages(torch.tensor([[3, 4]]), torch.tensor([[1, 1]]), torch.tensor([0.7]), group_size=1)
    assert torch.allclose(A1, torch.full((1, 2), 0.7 / (1 + 1e-6)))


def test_empty_batch_and_all_masked():
    K = key_token_values(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 4), torch.zeros(0), index=[])
    assert K.shape == (0, 4)
    K = key_token_values(torch.ones(4, 3, dtype=torch.long), torch.zeros(4, 3), torch.tensor([1., 0., 1., 0.]), group_size=4)
    assert (K == 0).all()


def test_dtype_and_device_follow_inputs():
    R = torch.tensor([[1, 2], [1, 3]]); M = torch.ones(2, 2, dtype=torch.long)
    assert key_token_values(R, M, torch.tensor([1., 0.], dtype=torch.float64), group_size=2).dtype == torch.float64
    assert key_token_values(R, M, torch.tensor([1, 0]), group_size=2).dtype == torch.float32
    assert key_token_values(R, M.bool(), torch.tensor([1., 0.]), group_size=2).device == R.device


# ---------------------------------------------------------------- bad input
R = torch.tensor([[1, 2], [3, 4]]); M = torch.tensor([[1, 1], [1, 0]]); W = torch.tensor([1., 0.])

@pytest.mark.parametrize("kwargs,msg", [
    (dict(responses=R.float()), "`responses` must hold integer"),
    (dict(responses=torch.tensor([[1, -2], [3, 4]])), "negative token ids"),
    (dict(responses=R[0]), "`responses` must be 2-D"),
    (dict(response_mask=torch.tensor([[1, 2], [1, 0]])), "only 0 and 1"),
    (dict(response_mask=M[:, :1]), "does not match"),
    (dict(rewards=torch.tensor([1., float("nan")])), "NaN or infinite"),
    (dict(rewards=torch.tensor([1., float("inf")])), "NaN or infinite"),
    (dict(rewards=torch.tensor([1., 0., 1.])), "expected 2"),
    (dict(index=None, group_size=None), "exactly one"),
    (dict(index=[0, 0], group_size=2), "exactly one"),
    (dict(index=[0, 0, 1]), "3 entries"),
    (dict(preset="nope"), "valid presets"),
    (dict(betta=1.0), "valid names"),
    (dict(p_transform="cubic"), "`p_transform`"),
    (dict(alpha=-1.0), "`alpha`"),
])
def test_bad_input_names_the_argument(kwargs, msg):
    args = dict(responses=R, response_mask=M, rewards=W, group_size=2)
    if "index" in kwargs: args.pop("group_size")
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=msg.replace("(", r"\(").replace("`", "`")):
        key_token_values(**args)


# ---------------------------------------------------------------- ktae_advantages on top of every estimator
def _rand_batch(token_batch, seed):
    "4 groups of 6, 12 tokens, 20 ids, random ids under the padding: the shared builder of conftest."
    b = token_batch(seed, n_groups=4, G=6, L=12, vocab=20)
    return b["responses"], b["response_mask"], b["rewards"]


@pytest.mark.parametrize("estimator", ["grpo", "dr_grpo", "batch_std", "rloo"])
def test_ktae_advantages_is_estimator_plus_K(token_batch, estimator):
    resp, mask, rew = _rand_batch(token_batch, 1)
    idx = token_batch(1, n_groups=4, G=6, L=12, vocab=20)["index"]
    A = ktae_advantages(resp, mask, rew, index=idx, estimator=estimator, preset="clean", beta=2.0)
    K = key_token_values(resp, mask, rew, index=idx, preset="clean", beta=2.0)
    expect = (outcome_advantages(rew, index=idx, estimator=estimator)[:, None] + K) * mask
    torch.testing.assert_close(A, expect)
    assert (A[mask == 0] == 0).all() and torch.isfinite(A).all()
    # a precomputed rollout advantage replaces the estimator
    pre = outcome_advantages(rew, index=idx, estimator=estimator)
    torch.testing.assert_close(ktae_advantages(resp, mask, rew, index=idx, preset="clean", beta=2.0, outcome_advantage=pre), A)


def test_ktae_advantages_constant_groups_are_zero(token_batch):
    resp, mask, _ = _rand_batch(token_batch, 2)
    assert (ktae_advantages(resp, mask, torch.ones(24), group_size=6) == 0).all()


def test_ktae_advantages_bad_input(token_batch):
    resp, mask, rew = _rand_batch(token_batch, 3)
    with pytest.raises(ValueError, match="valid: grpo, dr_grpo"): ktae_advantages(resp, mask, rew, group_size=6, estimator="gae")
    with pytest.raises(ValueError, match="unknown KTAE override"): ktae_advantages(resp, mask, rew, group_size=6, betta=2)
    with pytest.raises(ValueError, match="`outcome_advantage` shape"): ktae_advantages(resp, mask, rew, group_size=6, outcome_advantage=torch.zeros(3))
    with pytest.raises(TypeError, match="`outcome_advantage` must be a floating-point"): ktae_advantages(resp, mask, rew, group_size=6, outcome_advantage=torch.zeros(24, dtype=torch.long))


# ---------------------------------------------------------------- released_numerics: bit for bit
def test_released_minimal_case_is_the_release_value():
    r = torch.tensor([[7, 5], [7, 6], [7, 6], [202, 6], [203, 6], [204, 6]]); m = torch.ones(6, 2, dtype=torch.long)
    w = torch.tensor([1., 0., 0., 0., 0., 0.])
    K = key_token_values(r, m, w, group_size=6, preset="released")
    assert K[0, 0].item() == torch.tensor(0.21327794, dtype=torch.float32).item()   # xiaolizh1/KTAE on this batch
    from reference_ktae import released_float32_advantages
    ref = released_float32_advantages(r.tolist(), m.tolist(), w.tolist(), [0] * 6)
    assert torch.equal(ktae_advantages(r, m, w, group_size=6, preset="released"), ref)


def test_released_numerics_bit_exact_on_the_shipped_rollouts():
    from reference_ktae import released_float32_advantages
    from ktae_lab.data import to_batch, smollm2_rollouts_path
    b = to_batch(smollm2_rollouts_path())
    A = ktae_advantages(b.responses, b.response_mask, b.rewards, index=b.index, preset="released", ignore_ids=(151643,))
    ref = released_float32_advantages(b.responses.tolist(), b.response_mask.tolist(), b.rewards.tolist(), b.index,
                                      ignore_ids=(151643,))
    m = b.response_mask.bool()
    assert int(m.sum()) > 80000
    assert torch.equal(A[m], ref[m]) and (A[~m] == 0).all()
    K = key_token_values(b.responses, b.response_mask, b.rewards, index=b.index, preset="released")
    assert torch.equal(_ktae_batch(b.responses, b.response_mask, b.rewards, b.index, None, resolve_config("released"),
                                   chunk_tokens=5000)[0], K)                      # chunk size changes nothing
