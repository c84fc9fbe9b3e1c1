"""Run every notebook the way `nbdev_test` does (nbdev's own `test_nb`, settings.ini's skip flags), one pytest test per
notebook. This is the only place CI runs the notebooks (.ci/run has no separate `nbdev_test` call)."""
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_nb  # renamed so pytest does not collect nbdev's own function

cfg = get_config()
NBS = sorted(p for p in Path(cfg.nbs_path).rglob('*.ipynb')
             if not any(s.startswith(('_', '.')) for s in p.relative_to(cfg.nbs_path).parts))


@pytest.mark.parametrize('nb', NBS, ids=lambda p: str(p.relative_to(cfg.nbs_path)))
def test_notebook(nb):
    ok, _ = run_nb(nb, skip_flags=cfg.tst_flags.split(), basepath=cfg.config_path)
    assert ok, f"{nb.name} failed (run `nbdev_test --path {nb}` to see the failing cell)"


def test_notebooks_have_no_saved_widget_state():
    import json
    for nb in NBS:
        assert 'widgets' not in json.loads(nb.read_text()).get('metadata', {}), f"{nb.name} stores widget state"
