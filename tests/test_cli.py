"""The `ktae-lab` command line: score on the shipped sample, bad input, dispatch."""
import shutil, subprocess, sys
import pandas as pd
import pytest
from ktae_lab.cli import main, score_main
from ktae_lab.data import sample_rollouts_path


def test_score_writes_table_and_prints_groups(tmp_path, capsys):
    out = tmp_path / "k.csv"
    assert main(["score", str(sample_rollouts_path()), "--out", str(out), "--top", "2"]) == 0
    text = capsys.readouterr().out
    df = pd.read_csv(out)
    assert {"group", "token_id", "token", "a", "b", "c", "d", "p", "F", "IG", "h", "tf_c", "tf_w", "K"} <= set(df.columns)
    for g in df.group.unique(): assert f"== group {g}" in text
    assert "top positive" in text and "top negative" in text and "no key tokens" in text   # sample-4 is all correct
    assert df.K.between(-1, 1).all() and df.notna().all().all()


def test_score_overrides_change_values(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert score_main([str(sample_rollouts_path()), "--out", str(a)]) == 0
    assert score_main([str(sample_rollouts_path()), "--out", str(b), "--preset", "clean", "--set", "use_tf=false"]) == 0
    ka, kb = pd.read_csv(a).K.abs().mean(), pd.read_csv(b).K.abs().mean()
    assert kb < ka          # without the unbounded frequency term fewer values saturate


@pytest.mark.parametrize("args,msg", [
    (["--set", "betta=2"], "valid names"),
    (["--set", "use_tf=perhaps"], "expected a bool"),
])
def test_score_bad_overrides(args, msg, capsys):
    assert score_main([str(sample_rollouts_path())] + args) == 2
    assert msg in capsys.readouterr().err


def test_score_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"group_id": "g", "token_ids": [1, 2], "reward": 1.0}\n{"group_id": "g", "token_ids": [1, -2], "reward": 0}\n')
    assert score_main([str(bad)]) == 2
    assert "line 2" in capsys.readouterr().err
    assert score_main([str(tmp_path / "missing.jsonl")]) == 2


def test_unknown_command(capsys):
    assert main(["scroe"]) == 2 and "valid commands" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("ktae-lab") is None, reason="console script not installed (pip install -e .)")
def test_console_script(tmp_path):
    r = subprocess.run(["ktae-lab", "score", str(sample_rollouts_path()), "--out", str(tmp_path / "t.csv")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "group sample-0" in r.stdout


def test_report_through_the_dispatcher(tmp_path):
    out = tmp_path / "r.html"
    assert main(["report", str(sample_rollouts_path()), "-o", str(out), "--no-plots"]) == 0
    html = out.read_text()
    assert "sample-0" in html and "<html" in html.lower()


def test_ablate_is_wired(capsys, tmp_path):
    assert main(["ablate", "--algos", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "valid algorithms" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ablate", "--help"])
    assert "--algos" in capsys.readouterr().out
