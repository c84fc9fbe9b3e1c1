"""Package hygiene: light imports, settings.ini as the single source, exported modules in sync with notebooks."""
import configparser, importlib, json, pkgutil, subprocess, sys, time
from pathlib import Path
import ktae_lab

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("transformers", "ipywidgets", "matplotlib", "scipy", "pandas")


def test_import_is_light_and_fast():
    code = ("import time, torch, sys; t = time.perf_counter(); import ktae_lab, ktae_lab.ktae, ktae_lab.stats, "
            "ktae_lab.advantages; dt = time.perf_counter() - t; "
            f"print(dt, [m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout.split(" ", 1)
    assert float(out[0]) < 2.0, out
    assert out[1].strip() == "[]", f"heavy modules imported eagerly: {out[1]}"


def test_no_module_imports_transformers_or_ipywidgets_eagerly():
    mods = [m.name for m in pkgutil.iter_modules(ktae_lab.__path__) if not m.name.startswith("_")]
    code = ("import sys, importlib\n"
            f"for m in {mods!r}: importlib.import_module('ktae_lab.' + m)\n"
            "print([m for m in ('transformers', 'ipywidgets') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]", out


def test_settings_is_the_single_source_of_version_and_requirements():
    c = configparser.ConfigParser(delimiters=["="]); c.read(ROOT / "settings.ini")
    d = c["DEFAULT"]
    assert ktae_lab.__version__ == d["version"]
    reqs = d["requirements"].split()
    for pkg in ("torch", "transformers", "pandas", "matplotlib", "ipywidgets"): assert any(r.startswith(pkg) for r in reqs)
    dev = d["dev_requirements"].split()
    for pin in ("nbdev==2.4.14", "fastcore<2", "execnb<0.2", "ghapi<2"): assert pin in dev
    assert "ktae-lab=ktae_lab.cli:main" in d["console_scripts"]
    assert "import pkg_resources" not in (ROOT / "setup.py").read_text() and "from pkg_resources" not in (ROOT / "setup.py").read_text()


def test_every_exported_module_has_a_notebook():
    nbs = {json.loads(p.read_text())["cells"][0]["source"][0].split()[-1] if json.loads(p.read_text())["cells"] else ""
           for p in (ROOT / "nbs").glob("*.ipynb")}
    for m in pkgutil.iter_modules(ktae_lab.__path__):
        if not m.name.startswith("_"): assert m.name in nbs, f"ktae_lab/{m.name}.py has no notebook (stale export?)"


def test_readme_commands_are_the_ci_commands():
    text = (ROOT / "README.md").read_text()
    for tag in ("ci:setup", "ci:test", "ci:main"): assert f"<!-- {tag} -->" in text
    assert 'pip install "torch==2.13.0"' in text
