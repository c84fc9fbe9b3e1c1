"""The test suite's own machinery: README's command (`pytest -n 2 --dist loadgroup`) keeps each `xdist_group` on one worker."""
import os, subprocess, sys
from pathlib import Path
import pytest

HERE = Path(__file__).resolve().parent


def test_loadgroup_keeps_a_group_on_one_worker(tmp_path):
    pytest.importorskip("xdist")
    (tmp_path / "conftest.py").write_text(
        f"import sys; sys.path.insert(0, {str(HERE)!r})\nfrom xdist_groups import group_node_ids\n"
        "def pytest_collection_modifyitems(config, items):\n"
        "    if getattr(config.option, 'loadgroup', False): group_node_ids(items)\n")
    (tmp_path / "test_g.py").write_text(
        "import os, pytest\npytestmark = pytest.mark.xdist_group('site')\n"
        "@pytest.mark.parametrize('i', range(4))\ndef test_in_group(i): print(os.environ['PYTEST_XDIST_WORKER'])\n")
    (tmp_path / "test_free.py").write_text("import pytest\n@pytest.mark.parametrize('i', range(4))\ndef test_free(i): pass\n")
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")   # only xdist: a second of CPU, not five
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "xdist.plugin", "-n", "2", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    ran = [l.split() for l in r.stdout.splitlines() if "PASSED" in l and "test_in_group" in l]
    assert len(ran) == 4 and all(w[-1].endswith("@site") for w in ran), r.stdout   # the group's suffix is on every node id
    assert len({w[0] for w in ran}) == 1, r.stdout                                   # ... and one worker ran them all
