"""A real serving engine (vLLM's CPU build, installed by tools/setup_engine.sh) behind `OpenAICompleter`: sampling,
annotation (concurrent = sequential), `ktae-lab sample --server`, bad input from a real server, and a server killed
mid-annotation and restarted. One server for the whole session (the `engine` fixture), all tests in one xdist group.
Tests that need no engine (a closed port, a misbehaving HTTP server) run without it."""
import http.server, json, socket, threading, time
from pathlib import Path

import pytest

from ktae_lab.completers import OpenAICompleter, EngineError, VLLMServer, engine_install

pytestmark = pytest.mark.xdist_group("engine")
Q, REF = "Tom has 3 apples and buys 4 more. How many apples does he have?", "7"
STEPS = ["Step 1: Tom starts with 3 apples.", "Step 2: He buys 4 more, so 3 + 4 = 8.", "Step 3: The answer is 8."]
SMALL = dict(max_tokens=8, retries=1, backoff=0.2, timeout=60)


@pytest.fixture(scope="session")
def engine():
    "vLLM serving SmolLM2-135M-Instruct on 127.0.0.1 (a free port) for the session; stopped at the end."
    inst = engine_install()
    if inst is None: pytest.skip("vLLM is not installed: run `bash tools/setup_engine.sh` (README's set-up does)")
    srv = VLLMServer(*inst, served_name="smollm2", threads="0").start(timeout=600)   # one core: the other xdist worker keeps the other
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def tok():
    inst = engine_install()
    if inst is None: pytest.skip("vLLM is not installed: run `bash tools/setup_engine.sh`")
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(inst[1])


def _completer(engine, tok, **kw): return OpenAICompleter(engine.url, "smollm2", tokenizer=tok, **{**SMALL, **kw})


def test_same_seed_same_completions_with_logprobs(engine, tok):
    a, b = _completer(engine, tok, seed=3, temperature=1.0), _completer(engine, tok, seed=3, temperature=1.0)
    x, y = a(Q, [], 3), b(Q, [], 3)
    assert [c.text for c in x] == [c.text for c in y]
    assert len({c.text for c in x}) > 1                      # n samples, not one sample n times
    assert all(1 <= c.num_tokens <= 8 and -30 < c.mean_logprob < 0 for c in x)
    assert [c.text for c in _completer(engine, tok, seed=4, temperature=1.0)(Q, [], 3)] != [c.text for c in x]


def test_logprobs_match_transformers(engine, tok):
    "The engine's per-token log-probs are the model's: recomputed by transformers on the same tokens (float32)."
    import torch
    from transformers import AutoModelForCausalLM
    oc = _completer(engine, tok)
    ids = oc._prompt_ids(Q, STEPS[:1])
    o = oc.request(ids, 1, seed=0, temperature=1.0)[0]
    assert o["token_ids"] is not None and len(o["token_ids"]) == len(o["logprobs"])
    lm = AutoModelForCausalLM.from_pretrained(engine.model, dtype=torch.float32).eval()
    full = torch.tensor([ids + o["token_ids"]])
    with torch.no_grad(): lp = torch.log_softmax(lm(full).logits[0, len(ids) - 1:-1].float(), -1)
    ref = lp.gather(1, torch.tensor(o["token_ids"])[:, None])[:, 0]
    assert torch.allclose(ref, torch.tensor(o["logprobs"]), atol=1e-3), (ref, o["logprobs"])


def test_annotate_many_concurrent_equals_sequential(engine, tok):
    "Several solutions' probes in flight at once give the annotations that one solution at a time gives."
    from ktae_lab.epicprm import annotate
    from ktae_lab.credit import annotate_many
    sols = [STEPS, ["Step 1: 3 + 4 = 7.", "Step 2: The answer is 9."], ["Step 1: 3 * 4 = 12.", "Step 2: The answer is 12."]]
    qs = [Q, Q + " ", "Tom has 3 apples and buys 4 more. How many now?"]
    kw = dict(method="omega_binary", n=2, is_correct=[False] * 3)
    oc = _completer(engine, tok, seed=1, max_in_flight=3)
    many = annotate_many(qs, sols, [REF] * 3, oc, progress=False, **kw)
    oc2 = _completer(engine, tok, seed=1)
    one = [annotate(q, s, REF, oc2, "omega_binary", n=2, is_correct=False) for q, s in zip(qs, sols)]
    assert [a.to_dict() for a in many] == [a.to_dict() for a in one]
    assert oc.requests == oc2.requests >= 3
    assert oc.peak_in_flight > 1 and oc2.peak_in_flight == 1       # several solutions' probes were in flight at once


def test_sample_cli_server(engine, tmp_path, run_cli):
    probs = tmp_path / "p.jsonl"
    probs.write_text(json.dumps({"problem_id": "a", "question": Q, "answer": REF}) + "\n"
                     + json.dumps({"problem_id": "b", "question": "What is 2 + 5?", "answer": "7"}) + "\n")
    out = tmp_path / "o.jsonl"
    args = ["sample", "--server", engine.url, "--model", "smollm2", "--tokenizer", engine.model, "--problems", probs,
            "-o", out, "-G", "2", "--max-new-tokens", "8", "--seed", "0", "--no-progress"]
    rc, so, se = run_cli(args)
    assert rc == 0, se
    recs = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(recs) == 4 and {r["group_id"] for r in recs} == {"a", "b"}
    assert all(r["meta"]["token_ids_from"] == "server" and 1 <= len(r["token_ids"]) <= 8 for r in recs)
    assert recs[0]["meta"]["engine"]["server"] == engine.url and recs[0]["model"] == "smollm2"
    first = out.read_bytes()
    out.unlink(); assert run_cli(args)[0] == 0
    assert out.read_bytes() == first                       # same seed, same file
    assert run_cli(args)[0] == 0 and out.read_bytes() == first   # a rerun resumes: nothing to do


# ------------------------------------------------------------------ bad input: one clear line each
def test_bad_engine_input_real_server(engine, tok):
    with pytest.raises(EngineError, match=r"rejects model 'nope'.*it serves \['smollm2'\]"):
        OpenAICompleter(engine.url, "nope", tokenizer=tok, **SMALL)(Q, [], 2)
    with pytest.raises(EngineError, match=r"/v1/completions not found \(HTTP 404\): not an OpenAI-compatible server"):
        OpenAICompleter(engine.url + "/wrong", "smollm2", tokenizer=tok, **SMALL)(Q, [], 2)
    with pytest.raises(EngineError, match=r"no answer within timeout=0.001 s, after 1 attempt"):
        OpenAICompleter(engine.url, "smollm2", tokenizer=tok, **{**SMALL, "timeout": 0.001, "retries": 0})(Q, [], 2)


def _closed_port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


class _Misbehaving(http.server.BaseHTTPRequestHandler):
    "A real HTTP server whose /v1/completions answers with a fixed body (a broken or partial OpenAI-compatible server)."
    body = b""
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(type(self).body)
    def log_message(self, *a): pass


@pytest.mark.parametrize("body, msg", [
    (b"<html>oops</html>", "malformed reply (not JSON)"),
    (b'{"id": 1}', "reply has no `choices` list"),
    (b'{"choices": [{"index": 0, "text": "x", "logprobs": null}, {"index": 1, "text": "y", "logprobs": null}]}',
     "returned no per-token log-probs"),
    (b'{"choices": [{"index": 0, "text": "x", "logprobs": {"token_logprobs": [-1.0]}}]}', "returned 1 completions for n=2"),
    (b'{"choices": [{"index": 0, "text": "x", "logprobs": {"token_logprobs": ["a"]}}, {"index": 1, "text": "y", "logprobs": {"token_logprobs": [-1]}}]}',
     "malformed `token_logprobs`"),
])
def test_misbehaving_server(body, msg, tmp_path):
    from ktae_lab.lm import tiny_tokenizer
    h = type("H", (_Misbehaving,), {"body": body})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
    threading.Thread(target=srv.serve_forever, kwargs=dict(poll_interval=0.02), daemon=True).start()
    try:
        with pytest.raises(EngineError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("`", "`")):
            OpenAICompleter(f"http://127.0.0.1:{srv.server_port}", "m", tokenizer=tiny_tokenizer(), retries=0)("What is 2 + 2?", [], 2)
    finally: srv.shutdown(); srv.server_close()


def test_server_down_is_one_line_after_retries():
    from ktae_lab.lm import tiny_tokenizer
    oc = OpenAICompleter(f"http://127.0.0.1:{_closed_port()}", "m", tokenizer=tiny_tokenizer(), retries=2, backoff=0.01)
    with pytest.raises(EngineError) as e: oc("What is 2 + 2?", [], 2)
    assert "cannot connect (is the engine running" in str(e.value) and "after 3 attempt(s)" in str(e.value)
    assert "\n" not in str(e.value)


def test_sample_cli_server_down_is_one_line(tmp_path, run_cli):
    from ktae_lab.lm import tiny_tokenizer
    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    rc, _, err = run_cli(["sample", "--server", f"http://127.0.0.1:{_closed_port()}", "--model", "m", "--tokenizer",
                          tmp_path / "tok", "-o", tmp_path / "o.jsonl", "--no-progress", "--retries", "0"])
    assert rc == 2 and err.startswith("ktae-lab sample: error: engine http://127.0.0.1:") and err.count("\n") == 1, err
    assert not (tmp_path / "o.jsonl").exists() or (tmp_path / "o.jsonl").read_text() == ""


# ------------------------------------------------------------------ fault: the engine dies mid-run (keep this test last: it restarts the server)
def test_engine_killed_mid_annotation_then_resumed(engine, tok, tmp_path):
    "kill -9 the engine after the first record: the run stops with one line, nothing half-written; restarted, the rerun finishes."
    import pandas as pd
    from ktae_lab.epicprm import annotate_dataset
    qs = [f"Tom has {a} apples and buys 4 more. How many apples does he have?" for a in range(1, 7)]
    df = pd.DataFrame(dict(id=range(6), question=qs, steps=[["Step 1: He buys 4 more.", "Step 2: The answer is 99."]] * 6,
                           reference_answer=[str(a + 4) for a in range(1, 7)], correct=[False] * 6))
    path = tmp_path / "ann.jsonl"
    def killer():
        while not (path.exists() and path.read_bytes().count(b"\n") >= 1): time.sleep(0.02)
        engine.kill()
    threading.Thread(target=killer, daemon=True).start()
    with pytest.raises(EngineError) as e:
        annotate_dataset(df, _completer(engine, tok, seed=2, retries=0), path, "omega_binary", n=2, progress=False)
    assert "\n" not in str(e.value) and engine.url in str(e.value)
    lines = path.read_text().splitlines()
    assert 1 <= len(lines) < 6 and all(json.loads(l)["status"] == "ok" for l in lines)   # no 'failed' records, no torn line
    engine.start(timeout=600)                                                          # same port: the same URL
    res = annotate_dataset(df, _completer(engine, tok, seed=2), path, "omega_binary", n=2, progress=False)
    assert len(path.read_text().splitlines()) == 6 and list(res["status"]) == ["ok"] * 6
    assert [json.loads(l)["id"] for l in path.read_text().splitlines()] == list(range(6))
