"""ktae_lab.lm: the one language-model layer (loading, tiny model, prompts, seeded KV-cached sampling, log-probs)."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from ktae_lab.lm import (derive_seed, encode_prompts, eos_token_ids, generate, load_model, render_prompt, tiny_random_lm,
                         tiny_tokenizer, token_log_probs, uses_chat_template)

torch.set_num_threads(1)
LM, TOK, NAME = tiny_random_lm(seed=0)
PROMPTS = ["how many apples ?", "what is 2 + 2 ?", "tom has 3 pens and buys 5 more . how many pens ?"]


def _batch(n=2):
    return encode_prompts(TOK, [render_prompt(TOK, q) for q in PROMPTS for _ in range(n)], add_special_tokens=False)


def _reference(model, ids, am, T, eos, temperature, gen):
    "Slow reference sampler: full forward pass per token, torch.multinomial, no KV cache (the lab's old loop)."
    B = ids.shape[0]
    out = torch.full((B, T), TOK.pad_token_id); mask = torch.zeros(B, T, dtype=torch.long)
    done = torch.zeros(B, dtype=torch.bool); x, m = ids, am
    for t in range(T):
        with torch.no_grad():
            z = model(input_ids=x, attention_mask=m, position_ids=(m.cumsum(1) - 1).clamp_min(0)).logits[:, -1].float()
        nxt = torch.multinomial(torch.softmax(z / temperature, -1), 1, generator=gen).squeeze(1)
        out[:, t] = torch.where(done, TOK.pad_token_id, nxt); mask[:, t] = (~done).long()
        done = done | (nxt == eos)
        if done.all(): break
        x, m = torch.cat([x, out[:, t:t + 1]], 1), torch.cat([m, torch.ones(B, 1, dtype=m.dtype)], 1)
    return out, mask


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([0.7, 1.0, 1.5]))
def test_generate_matches_a_slow_multinomial_reference(seed, temperature):
    ids, am = _batch()
    g = generate(LM, ids, am, 9, TOK.eos_token_id, TOK.pad_token_id, temperature, generator=torch.Generator().manual_seed(seed))
    r, m = _reference(LM, ids, am, 9, TOK.eos_token_id, temperature, torch.Generator().manual_seed(seed))
    assert torch.equal(g.response_mask, m) and torch.equal(g.responses, r)


def test_blocks_follow_their_own_generators_and_the_global_rng_is_untouched():
    ids, am = _batch(2)
    state = torch.random.get_rng_state()
    g = generate(LM, ids, am, 8, TOK.eos_token_id, TOK.pad_token_id, generator=[11, 12, 13])
    assert torch.equal(torch.random.get_rng_state(), state)
    for b, s in enumerate([11, 12, 13]):
        alone = generate(LM, ids[2 * b:2 * b + 2], am[2 * b:2 * b + 2], 8, TOK.eos_token_id, TOK.pad_token_id, generator=s)
        assert torch.equal(g.responses[2 * b:2 * b + 2], alone.responses)


def test_mask_layout_eos_list_and_log_probs():
    ids, am = _batch(3)
    eos = [TOK.eos_token_id, TOK.convert_tokens_to_ids(".")]
    g = generate(LM, ids, am, 12, eos, TOK.pad_token_id, generator=0)
    assert g.responses.shape == g.response_mask.shape == g.log_probs.shape == (9, 12)
    assert torch.equal(g.response_mask, g.response_mask.cummin(1).values)          # ones, then zeros
    n = g.response_mask.sum(1)
    ended = torch.isin(g.responses, torch.tensor(eos)) & (g.response_mask == 1)
    assert (ended.sum(1) <= 1).all()
    assert all(g.responses[i, n[i] - 1].item() in eos for i in range(9) if ended[i].any())   # an end id closes the mask
    assert (g.responses[g.response_mask == 0] == TOK.pad_token_id).all()
    lp = token_log_probs(LM, ids, am, g.responses, g.response_mask)
    assert torch.allclose(lp * g.response_mask, g.log_probs, atol=1e-5)


def test_top_p_tiny_is_greedy_and_temperature_zero_needs_no_generator():
    ids, am = _batch()
    greedy = generate(LM, ids, am, 8, TOK.eos_token_id, TOK.pad_token_id, temperature=0.0)
    nucleus = generate(LM, ids, am, 8, TOK.eos_token_id, TOK.pad_token_id, temperature=1.0, top_p=1e-6, generator=5)
    assert torch.equal(greedy.responses, nucleus.responses)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**9), st.text(min_size=0, max_size=8))
def test_derive_seed_is_stable_and_in_range(seed, key):
    s = derive_seed(seed, key)
    assert s == derive_seed(seed, key) and 0 <= s < 2**63
    assert s != derive_seed(seed, key + "x")


def test_tiny_model_weights_depend_only_on_seed():
    a, b, c = tiny_random_lm(seed=4)[0], tiny_random_lm(seed=4)[0], tiny_random_lm(seed=5)[0]
    assert torch.equal(a.lm_head.weight, b.lm_head.weight) and not torch.equal(a.lm_head.weight, c.lm_head.weight)
    assert tiny_random_lm(tokenizer=TOK, d_model=16, n_heads=2)[0].config.hidden_size == 16


def test_prompts():
    plain = tiny_tokenizer(chat_template=False)
    assert uses_chat_template(TOK) and not uses_chat_template(plain) and not uses_chat_template(TOK, False)
    assert render_prompt(plain, "Q?", "S.") == "S.\n\nQuestion: Q?\nAnswer:"
    assert render_prompt(TOK, "Q?", prefix="a") == "user: Q?\nassistant:a"
    ids, am = encode_prompts(plain, ["a", "a b c"])                     # left padding
    assert am.tolist() == [[0, 0, 1], [1, 1, 1]]
    assert eos_token_ids(LM, TOK) == [TOK.eos_token_id]


def test_load_model_from_a_local_directory(tmp_path):
    LM.save_pretrained(tmp_path / "m"); TOK.save_pretrained(tmp_path / "m")
    m, t, name = load_model(str(tmp_path / "m"), dtype="bfloat16")
    assert name == str(tmp_path / "m") and m.dtype == torch.bfloat16 and not m.training and len(t) == len(TOK)
    with pytest.raises(FileNotFoundError, match="model directory not found"): load_model(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="is a file"): load_model(str(tmp_path / "m" / "config.json"))
    with pytest.raises(FileNotFoundError, match="GGUF file"): load_model(str(tmp_path / "m"), gguf_file="x.gguf")
