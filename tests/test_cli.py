"""The `ktae-lab` command line: what each command does on good input (error messages: test_bad_input_cli.py)."""
import json, re, shutil, subprocess, sys

import pandas as pd
import pytest

from ktae_lab.cli import COMMANDS, main, score_main


def test_score_writes_table_and_prints_groups(tmp_path, sample_path, run_cli):
    out = tmp_path / "k.csv"
    rc, text, err = run_cli(["score", sample_path, "-o", out, "--top", "2"])
    assert rc == 0, err
    df = pd.read_csv(out)
    assert {"group", "token_id", "token", "a", "b", "c", "d", "p", "F", "IG", "h", "tf_c", "tf_w", "K"} <= set(df.columns)
    for g in df.group.unique(): assert f"== group {g}" in text
    assert "top positive" in text and "top negative" in text and "no key tokens" in text   # sample-4 is all correct
    assert df.K.between(-1, 1).all() and df.notna().all().all()
    assert f"wrote {len(df)} rows to {out}" in text


def test_score_long_and_short_out_are_the_same(tmp_path, sample_path, run_cli):
    assert run_cli(["score", sample_path, "--out", tmp_path / "a.csv"])[0] == 0
    assert run_cli(["score", sample_path, "-o", tmp_path / "b.csv"])[0] == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_score_overrides_change_values(tmp_path, sample_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert score_main([str(sample_path), "-o", str(a)]) == 0
    assert score_main([str(sample_path), "-o", str(b), "--preset", "clean", "--set", "use_tf=false"]) == 0
    ka, kb = pd.read_csv(a).K.abs().mean(), pd.read_csv(b).K.abs().mean()
    assert kb < ka          # without the unbounded frequency term fewer values saturate


def test_score_on_worked_example_ignores_eos_when_asked(tmp_path, worked_rollouts, run_cli):
    out = tmp_path / "w.csv"
    assert run_cli(["score", worked_rollouts, "-o", out, "--set", "ignore_ids=151645"])[0] == 0
    df = pd.read_csv(out)
    assert (df[df.token_id == 151645].K == 0).all() and (df[df.token_id != 151645].K != 0).any()


def test_report_through_the_dispatcher(tmp_path, sample_path, run_cli):
    out = tmp_path / "new" / "r.html"
    rc, text, err = run_cli(["report", sample_path, "-o", out, "--no-plots"])
    assert rc == 0, err
    html = out.read_text()
    assert "sample-0" in html and "<html" in html.lower() and f"wrote {out}" in text


def test_help_of_every_command_exits_0(run_cli):
    for cmd in COMMANDS:
        rc, text, _ = run_cli([cmd, "--help"])
        assert rc == 0 and f"usage: ktae-lab {cmd}" in text
    rc, text, _ = run_cli(["--help"])
    assert rc == 0 and all(c in text for c in COMMANDS)
    rc, text, _ = run_cli(["--version"])
    assert rc == 0 and text.startswith("ktae-lab ")


def test_shared_conventions_in_every_command(run_cli):
    "-o/--out everywhere; --preset and --set (KTAE) in every command that scores with KTAE."
    for cmd in COMMANDS:
        text = run_cli([cmd, "--help"])[1]
        assert "-o " in text and "--out" in text, cmd
        if cmd in ("score", "report", "ablate"):
            assert "--preset NAME" in text and "--set NAME=VALUE" in text and "KTAEConfig" in text, cmd
    assert "--ktae" not in run_cli(["ablate", "--help"])[1]


def test_ablate_passes_ktae_and_lab_options(tmp_path, run_cli, monkeypatch):
    import ktae_lab.lab as lab
    seen = {}
    def fake(algos, seeds, cfg, out, workers=1, progress=True, prm=None, seed_batch=None):
        seen.update(algos=algos, seeds=seeds, cfg=cfg, out=out, seed_batch=seed_batch)
        (out / "summary.md").write_text("| algo |\n")
        return pd.DataFrame()
    monkeypatch.setattr(lab, "run_ablation", fake)
    rc, text, err = run_cli(["ablate", "--algos", "grpo,grpo+ktae", "--seeds", "0,4", "-o", tmp_path / "runs",
                             "--set", "beta=2", "--preset", "clean", "--lab", "max_new_tokens=16", "--group-size", "4",
                             "--workers", "1", "--seed-batch", "2", "--no-progress"])
    assert rc == 0, err
    cfg = seen["cfg"]
    assert seen["seed_batch"] == 2
    assert seen["algos"] == ["grpo", "grpo+ktae"] and seen["seeds"] == [0, 4] and seen["out"] == tmp_path / "runs"
    assert cfg.ktae == {"beta": 2.0} and cfg.ktae_preset == "clean" and cfg.max_new_tokens == 16 and cfg.group_size == 4
    assert not (tmp_path / "runs" / "metrics.csv.lock").exists()     # the lock is released


def test_report_overrides_reach_the_page(tmp_path, worked_rollouts, run_cli):
    out = tmp_path / "sub" / "r.html"
    rc, text, err = run_cli(["report", worked_rollouts, "-o", out, "--no-plots", "--set", "beta=2", "--set", "ignore_ids=12;18"])
    assert rc == 0 and "wrote" in text, err
    page = out.read_text()
    from test_report import page_cells                                   # the report's cell parser
    scores = [(c["K"], re.search(r"\bid (\d+)", c["tooltip"]).group(1)) for c in page_cells(page)]
    assert {i for _, i in scores} >= {"11", "12", "13", "18"}
    assert all(k == 0 for k, i in scores if i in ("12", "18")) and any(k != 0 for k, i in scores if i == "13")
    assert "beta</td><td>2" in page and "ignore_ids</td><td>(12, 18)" in page
    assert "KTAE <b>official + beta=2.0, ignore_ids=(12, 18)</b>" in page            # the header names the overrides


def test_report_header_names_a_clashing_override(tmp_path, worked_rollouts, run_cli):
    # `top` is both a KTAEConfig field and a report option: --set top= goes to KTAE, --top to the tables
    out = tmp_path / "r.html"
    rc, _, err = run_cli(["report", worked_rollouts, "-o", out, "--no-plots", "--set", "top=0.5", "--top", "3"])
    assert rc == 0, err
    page = out.read_text()
    assert "KTAE <b>official + top=0.5</b>" in page and "KTAEConfig(" not in page


def _ablate_fakes(monkeypatch):
    "A deterministic verifier and a random warm start: the ablation runs in seconds and its groups are mixed."
    import torch
    import ktae_lab.lab as lab
    tok = lab.lab_tokenizer()
    def verifier(tokenizer, responses, response_mask, answers, marker="#"):
        ones = torch.ones(responses.shape[0], dtype=torch.bool, device=responses.device)
        return dict(reward=((responses * response_mask).sum(1) % 2).float(), finished=ones, uses_steps=ones)
    monkeypatch.setattr(lab, "score_responses", verifier)
    monkeypatch.setattr(lab, "prepare_warm_start", lambda seed, cfg, progress=False: {"state": lab._new_policy(tok, cfg, seed).state_dict()})


TINY_LAB = dict(n_train=300, n_heldout=16, min_ops=2, max_ops=2, max_operand=3, prompts_per_step=4, max_new_tokens=12,
                overlong_buffer=4, warm_batch=16)


def test_ablate_tiny_run_and_config_guard(tmp_path, run_cli, monkeypatch):
    _ablate_fakes(monkeypatch)
    args = ["ablate", "--algos", "grpo,grpo+ktae", "--seeds", "1", "--steps", "2", "--eval-every", "1", "--warm-steps", "0",
            "--group-size", "4", "-o", tmp_path, "--set", "beta=2", "--set", "gamma=0", "--workers", "1", "--no-progress"]
    args += [x for k, v in TINY_LAB.items() for x in ("--lab", f"{k}={v}")]
    rc, out, err = run_cli(args)
    assert rc == 0, err
    assert "| grpo+ktae |" in out and "metrics.csv" in out
    assert json.loads((tmp_path / "config.json").read_text())["ktae"] == {"beta": 2.0, "gamma": 0.0}
    rc, _, err = run_cli([a if a != "gamma=0" else "gamma=1" for a in args])   # another KTAE setting, same folder
    assert rc == 2 and "holds runs of another configuration" in err and err.count("\n") == 1


@pytest.mark.skipif(shutil.which("ktae-lab") is None, reason="console script not installed (pip install -e .)")
def test_console_script(tmp_path, sample_path):
    r = subprocess.run(["ktae-lab", "score", str(sample_path), "-o", str(tmp_path / "t.csv")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "group sample-0" in r.stdout


def test_report_and_score_work_on_the_minimal_schema(tmp_path, run_cli):
    "README's minimal rollout file {group_id, token_ids, reward}, without the optional rollout_id."
    import json
    p = tmp_path / "min.jsonl"
    p.write_text("".join(json.dumps({"group_id": g, "token_ids": t, "reward": r}) + "\n"
                         for g, t, r in [("a", [5, 6, 7], 1), ("a", [5, 8], 0), ("a", [], 0), ("b", [9], 1), ("b", [9, 10], 1)]))
    rc, _, err = run_cli(["report", p, "-o", tmp_path / "r.html", "--no-plots"])
    assert rc == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "Group a" in page and "Group b" in page and "rollout 2: empty" in page
    rc, out, err = run_cli(["score", p, "-o", tmp_path / "k.csv"])
    assert rc == 0, err
