"""Notebooks are committed with their outputs, so they open (and render on the docs site) with tables and figures.

Refresh them with `python tools/execute_nbs.py [notebooks...]`. What is checked, per notebook:
- it stores at least one output;
- a cell that certainly displays something has outputs: it prints at top level, or ends with a bare expression that
  is not a call (`df`, `gv`, `sat.T`, `K[0]`), or ends with a call known to return a table or text
  (`.head()`, `.round()`, `pd.DataFrame(...)`, `Markdown(...)`, ...), unless the line ends with `;`;
- a cell that prints stores the printed text, and a cell that makes a figure with `plt.subplots`/`plt.figure` at top level stores an image;
- no stored error, and no cell stores more than `MAX_CELL_KB` of outputs.
Cells skipped by the fast tests (settings.ini `tst_flags`: `#| slow`, `#| notest`, `#| gpu`) and `#| eval: false`
cells are not required to have outputs (they keep the ones they have).
"""
import ast, json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
NOTEBOOKS = sorted(p for p in NBS.rglob("*.ipynb") if not any(s.startswith(("_", ".")) for s in p.relative_to(NBS).parts))
MAX_CELL_KB = 1024
TABLE_METHODS = {"head", "tail", "round", "sort_values", "describe", "nlargest", "nsmallest", "to_frame", "reset_index",
                 "set_index", "value_counts", "pivot_table", "agg", "groupby_summary"}
TABLE_CALLS = {"DataFrame", "Series", "Markdown", "HTML", "display"}


def _flags():
    cfg = (ROOT / "settings.ini").read_text()
    m = re.search(r"^tst_flags\s*=\s*(.*)$", cfg, re.M)
    return set(m.group(1).split()) if m else {"slow"}


FLAGS = _flags()


def directives(src:str) -> dict:
    "The cell's `#| name args` directives (nbdev's syntax)."
    out = {}
    for line in src.splitlines():
        m = re.match(r"^\s*#\|\s*([\w-]+:?)\s*(.*)$", line)
        if m: out[m.group(1).rstrip(":")] = m.group(2).strip()
    return out


def runs_in_tests(src:str) -> bool:
    d = directives(src)
    if d.get("eval", "").lower() == "false": return False
    return not (FLAGS & set(d)) and "nbdev_export(" not in src


def _code(src:str) -> str:
    "The cell's Python, with IPython magics and shell lines blanked so `ast` can parse it."
    return "\n".join("" if l.lstrip().startswith(("%", "!")) else l for l in src.splitlines())


def _call_name(node) -> str|None:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def expects_output(src:str) -> tuple[bool, bool, bool]:
    "(must have some output, must have an image, must have printed text) for a cell's source."
    try: tree = ast.parse(_code(src))
    except SyntaxError: return False, False, False
    body = tree.body
    if not body: return False, False, False
    prints = any(isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) and _call_name(s.value) == "print" for s in body) or \
             any(isinstance(s, ast.For) and any(isinstance(t, ast.Expr) and isinstance(t.value, ast.Call) and _call_name(t.value) == "print"
                                                for t in s.body) for s in body)
    last, silenced = body[-1], src.rstrip().endswith(";")
    shows = False
    if isinstance(last, ast.Expr) and not silenced:
        v = last.value
        if not isinstance(v, (ast.Call, ast.Constant, ast.Await, ast.Yield, ast.YieldFrom)): shows = True
        elif isinstance(v, ast.Call):
            name = _call_name(v)
            shows = (isinstance(v.func, ast.Attribute) and name in TABLE_METHODS) or name in TABLE_CALLS
    figure = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("subplots", "figure")
                 and isinstance(n.func.value, ast.Name) and n.func.value.id == "plt" for s in body if not isinstance(s, (ast.FunctionDef, ast.ClassDef))
                 for n in ast.walk(s))
    return prints or shows or figure, figure, prints


def _cells(nb:Path):
    for i, c in enumerate(json.loads(nb.read_text())["cells"]):
        if c["cell_type"] == "code": yield i, "".join(c["source"]), c.get("outputs", [])


def test_rules_on_examples():
    assert expects_output("df = f()\ndf.head()") == (True, False, False)
    assert expects_output("x = 1\nx") == (True, False, False)
    assert expects_output("fig, ax = plt.subplots()\nax.plot([1])") == (True, True, False)
    assert expects_output("assert x == 1") == (False, False, False)
    assert expects_output("test_close(a, b)") == (False, False, False)
    assert expects_output("plot_contingency(t);") == (False, False, False)
    assert expects_output("print(t)\nplot_contingency(t);") == (True, False, True)
    assert expects_output("def f():\n    print(1)") == (False, False, False)
    assert expects_output("for m in ms: print(m)") == (True, False, True)
    assert not runs_in_tests("#| slow\nx") and runs_in_tests("#| export\ndef f(): pass")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(NBS)))
def test_notebook_has_its_outputs(nb):
    cells = list(_cells(nb))
    hint = f"run `python tools/execute_nbs.py {nb.relative_to(ROOT)}` and commit it"
    assert any(outs for _, _, outs in cells), f"{nb.name} stores no output at all: {hint}"
    problems = []
    for i, src, outs in cells:
        if any(o.get("output_type") == "error" for o in outs): problems.append(f"cell {i} stores an error")
        kb = sum(len(json.dumps(o)) for o in outs) / 1024
        if kb > MAX_CELL_KB: problems.append(f"cell {i} stores {kb:.0f} KB of outputs (> {MAX_CELL_KB} KB)")
        if not runs_in_tests(src): continue
        some, image, printed = expects_output(src)
        if some and not outs: problems.append(f"cell {i} displays something but stores no output: {src.strip().splitlines()[-1][:60]!r}")
        if image and outs and not any("image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {}) for o in outs):
            problems.append(f"cell {i} makes a figure but stores no image (a bare Figure repr?)")
        if printed and outs and not any(o.get("output_type") == "stream" for o in outs):
            problems.append(f"cell {i} prints but stores no printed text")
    assert not problems, f"{nb.name}: " + "; ".join(problems) + f" ({hint})"
