"""Stored outputs reproduce: notebooks re-executed (as `python tools/execute_nbs.py --check` does) print what they
store, within the tolerance of `execute_nbs.output_drift`: numbers within rtol 1e-4 or atol 1e-6, all other text equal,
the same number of figures (pixels are not compared), stderr ignored.

Cheap by design: a fixed set of fast, deterministic notebooks (about 6 s on 2 cores). The whole course is checked with
`python tools/execute_nbs.py --check` (exit status 1 on drift), which the lead runs before a release."""
import copy, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import execute_nbs as ex   # noqa: E402

CHEAP = ["index.ipynb", "12_ktae.ipynb", "21_epicprm.ipynb", "tutorials/losses_by_hand.ipynb"]


def _nb(*outputs):
    return {"cells": [{"cell_type": "code", "id": "c1", "source": "", "metadata": {}, "outputs": list(outputs)}]}


def _stdout(text): return {"output_type": "stream", "name": "stdout", "text": text}


def test_output_drift_tolerance():
    stored = _nb(_stdout("p = 0.333333, K = +1.000\n"), {"output_type": "display_data", "data": {"image/png": "x"}})
    assert ex.output_drift(stored, copy.deepcopy(stored)) == []
    assert ex.output_drift(stored, _nb(_stdout("p = 0.3333331, K = +1.000\n"), stored["cells"][0]["outputs"][1])) == []
    moved = ex.output_drift(stored, _nb(_stdout("p = 0.334, K = +1.000\n"), stored["cells"][0]["outputs"][1]))
    assert len(moved) == 1 and "numbers moved" in moved[0] and "0.333333" in moved[0]
    assert "text differs" in ex.output_drift(stored, _nb(_stdout("q = 0.333333, K = +1.000\n"), stored["cells"][0]["outputs"][1]))[0]
    assert "figures" in ex.output_drift(stored, _nb(_stdout("p = 0.333333, K = +1.000\n")))[0]
    noisy = _nb(_stdout("p = 0.333333, K = +1.000\n"), {"output_type": "stream", "name": "stderr", "text": "50%|###| 1/2 [00:01<00:01]"},
                stored["cells"][0]["outputs"][1])
    assert ex.output_drift(stored, noisy) == []            # progress bars and warnings are not outputs a reader checks


@pytest.mark.parametrize("name", CHEAP)
def test_notebook_reproduces_its_stored_outputs(name, monkeypatch):
    monkeypatch.delenv("IN_TEST", raising=False)          # the stored outputs are full runs, as execute_nbs.py makes them
    monkeypatch.chdir(ROOT)
    from nbdev.config import get_config
    path = ROOT / "nbs" / name
    new, _, _ = ex.run_notebook(path, set(get_config(path=ROOT).tst_flags.split()))
    drift = ex.output_drift(ex.read_notebook(path), new)
    assert not drift, f"{name}: stored outputs drifted (refresh with `python tools/execute_nbs.py nbs/{name}` if intended): " + "; ".join(drift[:5])
