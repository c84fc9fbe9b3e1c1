"""Package hygiene: light imports, settings.ini as the single source, exported modules in sync with notebooks."""
import configparser, importlib, json, os, pkgutil, re, subprocess, sys
from pathlib import Path
import ktae_lab

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("transformers", "ipywidgets", "matplotlib", "scipy", "pandas")


def test_import_is_light():
    "The core modules and the CLI import none of the heavy libraries (speed itself is for benchmarks/, not tests)."
    code = ("import sys, ktae_lab, ktae_lab.ktae, ktae_lab.stats, ktae_lab.advantages, ktae_lab.cli; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]", f"heavy modules imported eagerly: {out}"


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


def test_every_command_function_lives_in_the_cli():
    "All `*_main` command functions are in 49_cli; library modules keep library functions only."
    for m in pkgutil.iter_modules(ktae_lab.__path__):
        if m.name.startswith("_") or m.name == "cli": continue
        src = (ROOT / "ktae_lab" / f"{m.name}.py").read_text()
        assert not re.search(r"^def \w+_main\(", src, re.M), f"ktae_lab/{m.name}.py defines a *_main command"
        assert "__main__" not in src, f"ktae_lab/{m.name}.py has a __main__ guard"


def test_benchmarks_run_from_a_clean_checkout_without_path_edits():
    bench = sorted((ROOT / "benchmarks").glob("*.py"))
    assert (ROOT / "benchmarks" / "_bench.py") in bench
    for f in bench: assert "sys.path" not in f.read_text().replace("`sys.path`", ""), f"{f.name} edits sys.path"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}   # nothing but the checkout itself
    r = subprocess.run([sys.executable, "-c", "import benchmarks._bench as b, ktae_lab; print(b.fmt_time(0.0123), ktae_lab.__file__)"],
                       capture_output=True, text=True, cwd=ROOT, env=env, check=True)
    assert r.stdout.split()[:2] == ["12.3", "ms"] and r.stdout.split()[2].startswith(str(ROOT))


def test_ci_runs_the_notebooks_once():
    run = (ROOT / ".ci" / "run").read_text()
    assert not re.search(r"^[^#]*nbdev_test", run, re.M), "CI runs nbdev_test and pytest's notebook runner"
    assert "test_nb" in (ROOT / "tests" / "test_notebooks.py").read_text()


def test_one_fast_test_switch():
    flags = configparser.ConfigParser(delimiters=["="]); flags.read(ROOT / "settings.ini")
    assert "slow" in flags["DEFAULT"]["tst_flags"].split()
    for nb in (ROOT / "nbs").rglob("*.ipynb"):
        assert "IN_TEST" not in nb.read_text(), f"{nb.name} uses IN_TEST; mark slow cells #| slow"
