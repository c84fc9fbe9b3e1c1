"""Count how the bad-input table of tests/test_bad_input_engine.py fares on a ktae_lab tree (PYTHONPATH picks the tree).

Usage: PYTHONPATH=<tree> python tests/bad_input_census.py tests/test_bad_input_engine.py [v]"""
import sys, re, importlib, collections, warnings
warnings.filterwarnings("ignore")
src = open(sys.argv[1]).read()
src = src[:src.index("# ---------------------------------------------------------------- right answers")]
ns = {"__name__": "table"}
import pytest
exec(compile(src, "table", "exec"), ns)
out = collections.Counter(); rows = []
for p in ns["CASES"]:
    fn, kw, exc, frag = p.values
    mod, name = fn.split(".")
    try: f = getattr(importlib.import_module(f"ktae_lab.{mod}"), name)
    except (AttributeError, ImportError): out["n/a (function did not exist)"] += 1; continue
    try:
        ns["call"](fn, kw); res = "silent (no error)"
    except BaseException as e:
        msg = str(e); m = re.search(r"`[^`]+`", frag); key = m.group(0) if m else frag
        if isinstance(e, exc) and (frag in msg): res = "clear (exact)"
        elif isinstance(e, exc) and key in msg: res = "clear (names the argument)"
        elif isinstance(e, (ValueError, TypeError, KeyError)): res = "unclear message"
        else: res = f"traceback ({type(e).__name__})"
    out[res.split(" (")[0] if res.startswith("traceback") else res] += 1; rows.append((fn, frag, res))
for k, v in sorted(out.items()): print(f"{v:4d}  {k}")
print(f"{sum(out.values()):4d}  total")
if len(sys.argv) > 2:
    for r in rows:
        if not r[2].startswith("clear"): print("   ", r)
