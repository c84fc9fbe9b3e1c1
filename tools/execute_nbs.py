"""Execute notebooks in place and keep their outputs, so they open (and render on the docs site) with tables and figures.

    python tools/execute_nbs.py                      # every notebook under nbs/ (slow cells keep their stored outputs)
    python tools/execute_nbs.py nbs/index.ipynb nbs/tutorials/reading_key_tokens.ipynb
    python tools/execute_nbs.py --slow nbs/tutorials/ablation_lab.ipynb   # also run `#| slow` cells
    python tools/execute_nbs.py --check nbs/index.ipynb       # re-execute, compare with the stored outputs, write nothing

Cells run with execnb's `CaptureShell`, the engine `nbdev_test` uses (except that a cell ending with `;` keeps what it
printed, as in Jupyter): from the notebook's folder, with the repository
root first on `sys.path`, cells flagged with settings.ini `tst_flags` (`notest slow gpu`) skipped unless forced with
`--slow` / `--flags`. A skipped cell keeps whatever outputs it had. Figures are stored as PNG at 100 dpi with text of at
least 9 pt (see `MPL_STYLE`). The first failing cell stops everything with one line naming the notebook, the cell and
the error (exit status 2; `KTAE_LAB_DEBUG=1` prints its traceback too) and the notebook is left untouched. Each saved
notebook is cleaned as `nbdev_clean` does, so CI's clean check sees no change, and replaced atomically (a full disk or
a kill leaves the old file). Bad arguments (a missing, torn or non-notebook file) are one line, exit status 2.
Outputs larger than `--max-kb` (default 200 KB) are listed at the end as a warning. Every notebook starts from the
default display options of pandas, numpy and torch. `--check` re-executes without writing and lists every cell whose
outputs drifted beyond the tolerance of `output_drift` (exit status 1).
"""
from __future__ import annotations
import argparse, base64, json, os, re, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_OUTPUT_KB = 200

# One style for every stored figure: readable at the size it is stored (labels >= 9 pt), PNG at 100 dpi.
MPL_STYLE = {"figure.dpi": 100, "savefig.dpi": 100, "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
             "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9, "legend.title_fontsize": 9,
             "figure.titlesize": 11}
NP_DEFAULTS = dict(edgeitems=3, infstr="inf", linewidth=75, nanstr="nan", precision=8, suppress=False, threshold=1000,
                   formatter=None, sign="-", floatmode="maxprec", legacy=False)
SETUP = f"""import matplotlib as _mpl
_mpl.rcParams.update({MPL_STYLE!r})
from matplotlib_inline.backend_inline import set_matplotlib_formats as _smf
_smf('png')
import matplotlib.pyplot as _plt
_plt.close("all")   # a figure left open by earlier work in this process would be shown by the notebook's first plot cell
del _mpl, _smf, _plt
# display options are process-wide: start every notebook from the defaults, so that its outputs do not depend on
# which notebook ran before it in the same process (a pandas precision set by one tutorial leaked into the next)
import warnings as _w, numpy as _np, pandas as _pd, torch as _torch
with _w.catch_warnings():
    _w.simplefilter('ignore'); _pd.reset_option('all')
_np.set_printoptions(**{NP_DEFAULTS!r}); _torch.set_printoptions(profile='default', sci_mode=None)
del _w, _np, _pd, _torch"""


def all_notebooks(nbs_path:Path) -> list[Path]:
    "Every notebook under `nbs_path`, skipping folders and files whose name starts with `_` or `.`."
    return sorted(p for p in nbs_path.rglob("*.ipynb")
                  if not any(s.startswith(("_", ".")) for s in p.relative_to(nbs_path).parts))


def output_size(out:dict) -> int:
    "Bytes one output takes in the notebook file."
    return len(json.dumps(out))


def _skip_fn(flags:set):
    "The preprocessor: True for cells that must not run (markdown, export helpers, flagged cells)."
    def skip(cell):
        if cell.cell_type != "code": return True
        if "nbdev_export" + "(" in cell.source: return True
        direc = getattr(cell, "directives_", {}) or {}
        if direc.get("eval:", [""])[0].lower() == "false": return True
        return bool(flags & set(direc.keys()))
    return skip


def _shell_class():
    "execnb's CaptureShell, except that a cell ending with `;` keeps its printed output (as in Jupyter)."
    from execnb.shell import CaptureShell
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from fastcore.basics import AttrDict

    class Shell(CaptureShell):
        def _run(self, raw_cell, store_history=False, silent=False, shell_futures=True, cell_id=None,
                 stdout=True, stderr=True, display=True, verbose=False):
            with capture_output(display=display, stdout=stdout and not verbose, stderr=stderr and not verbose) as c:
                result = InteractiveShell.run_cell(self, raw_cell, store_history, silent, shell_futures=shell_futures, cell_id=cell_id)
            return AttrDict(result=result, stdout=c.stdout, stderr=c.stderr, display_objects=c.outputs,
                            exception=result.error_in_exec or result.error_before_exec, quiet=raw_cell.rstrip().endswith(";"))
    return Shell


class NotebookError(Exception): "A notebook that cannot be read or run: reported as one line, exit status 2."


def _shown(path:Path) -> str:
    "The path relative to the repository when it is inside it."
    try: return str(Path(path).resolve().relative_to(ROOT))
    except ValueError: return str(path)


def read_notebook(path:Path) -> dict:
    "A notebook's JSON, or NotebookError naming the file (missing, torn, not a notebook)."
    if not path.is_file(): raise NotebookError(f"no such notebook: {path}")
    if path.suffix != ".ipynb": raise NotebookError(f"{path} is not a notebook (.ipynb)")
    try: nb = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e: raise NotebookError(f"{path} is not a readable notebook ({e})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list): raise NotebookError(f"{path} is not a notebook (no 'cells' list)")
    return nb


def execute_notebook(path:Path, flags:set, timeout:int|None=None) -> tuple[float, list[tuple[int, int]]]:
    "Run `path` in place; returns (seconds, [(cell index, KB)] of outputs over the size limit). Raises on a failing cell."
    raw, secs, big = run_notebook(path, flags, timeout)
    _write_clean(Path(path).resolve(), raw)
    return secs, big


def run_notebook(path:Path, flags:set, timeout:int|None=None) -> tuple[dict, float, list[tuple[int, int]]]:
    "Run `path` without writing it: (the notebook with its new outputs, seconds, [(cell index, KB)] over the size limit)."
    from fastcore.xtras import working_directory
    from nbdev.process import NBProcessor
    from nbdev.frontmatter import FrontmatterProc
    path = Path(path).resolve()
    nb = NBProcessor(path, procs=FrontmatterProc, process=True).nb   # parses `#|` directives into cell.directives_
    skip = _skip_fn(flags)
    start = time.time()
    if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
    shell = _shell_class()(path, mpl_format="png", timeout=timeout)
    shell.run_cell(SETUP)
    if shell.exc: raise RuntimeError(f"setup failed: {shell.exc!r}")
    with working_directory(path.parent):
        for i, cell in enumerate(nb.cells):
            if skip(cell): continue
            shell.cell(cell)
            if shell.exc:
                if os.environ.get("KTAE_LAB_DEBUG"): print(shell.prettytb(fname=path), file=sys.stderr)
                first = (str(shell.exc).strip().splitlines() or [""])[0][:300]
                raise NotebookError(f"{_shown(path)}: cell {i} failed ({type(shell.exc).__name__}: {first}); "
                                    "it was left unchanged (KTAE_LAB_DEBUG=1 shows the traceback)")
    # `NBProcessor` added parsed attributes (directives_, ...); keep only the notebook format's own keys
    raw = read_notebook(path)
    by_id = {c.get("id"): c for c in nb.cells}
    big = []
    for i, c in enumerate(raw["cells"]):
        if c["cell_type"] != "code": continue
        new = by_id.get(c.get("id"))
        if new is None or skip(new): continue
        c["outputs"] = [dict(o) for o in new.get("outputs", [])]
        size = sum(output_size(o) for o in c["outputs"])
        if size > MAX_OUTPUT_KB * 1024: big.append((i, size // 1024))
    plt_close()
    return raw, time.time() - start, big


# Drift: what a re-execution may change in a stored output. Numbers (in printed text and in text/plain reprs) may move
# by RTOL relative or ATOL absolute, whichever is larger; all other text must be equal, except what is never stable
# (memory addresses, widget model ids, timings). Images are compared by count, not by pixels (matplotlib and font
# versions change pixels); stderr (warnings, progress bars) is ignored.
RTOL, ATOL = 1e-4, 1e-6
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_UNSTABLE = [(re.compile(r"0x[0-9a-f]{6,}"), "0x?"), (re.compile(r"\b\d+(?:\.\d+)?\s*(?:s|ms|it/s|s/it)\b"), "<time>"),
             (re.compile(r"[0-9a-f]{32}"), "<id>")]


def _shown_text(out:dict) -> str|None:
    "What a reader sees of one output as text (None: not compared)."
    if out.get("output_type") == "stream": return None if out.get("name") == "stderr" else "".join(out.get("text", ""))
    if out.get("output_type") == "error": return f"{out.get('ename')}: {out.get('evalue')}"
    d = out.get("data", {})
    if "application/vnd.jupyter.widget-view+json" in d or "image/png" in d: return None
    if "text/plain" in d: return "".join(d["text/plain"])
    if "text/html" in d: return re.sub(r"<[^>]+>", " ", "".join(d["text/html"]))
    return None


def _split(text:str) -> tuple[str, list[float]]:
    for pat, rep in _UNSTABLE: text = pat.sub(rep, text)
    nums = [float(m) for m in _NUM.findall(text)]
    return " ".join(_NUM.sub("#", text).split()), nums


def output_drift(stored:dict, new:dict, rtol:float=RTOL, atol:float=ATOL) -> list[str]:
    "Where `new` (a re-executed notebook) differs from `stored` beyond the tolerance: one line per code cell."
    import math
    old_cells = {c.get("id"): c for c in stored["cells"] if c["cell_type"] == "code"}
    out = []
    for i, c in enumerate(new["cells"]):
        if c["cell_type"] != "code" or c.get("id") not in old_cells: continue
        a, b = old_cells[c["id"]].get("outputs", []), c.get("outputs", [])
        n_img = lambda os_: sum("image/png" in o.get("data", {}) for o in os_)
        if n_img(a) != n_img(b): out.append(f"cell {i}: {n_img(a)} stored figures, {n_img(b)} now"); continue
        ta = "\n".join(t for t in map(_shown_text, a) if t is not None); tb = "\n".join(t for t in map(_shown_text, b) if t is not None)
        (sa, na), (sb, nb_) = _split(ta), _split(tb)
        if sa != sb or len(na) != len(nb_):
            out.append(f"cell {i}: text differs: stored {ta.strip()[:120]!r}, now {tb.strip()[:120]!r}"); continue
        bad = [(x, y) for x, y in zip(na, nb_) if not math.isclose(x, y, rel_tol=rtol, abs_tol=atol)]
        if bad: out.append(f"cell {i}: {len(bad)} numbers moved beyond rtol {rtol:g}/atol {atol:g}, first {bad[0][0]!r} -> {bad[0][1]!r}")
    return out


def plt_close():
    "Free the figures of the last notebook."
    try:
        import matplotlib.pyplot as plt
        plt.close("all")
    except ImportError: pass


def _write_clean(path:Path, raw:dict):
    "Clean the notebook as `nbdev_clean` does (what CI's clean check would do) and replace the file atomically."
    from nbdev.clean import _nbdev_clean, loads
    from execnb.nbio import nb2str
    from ktae_lab.data import atomic_write          # the package's one atomic writer (temporary file, fsync, os.replace)
    nb = loads(json.dumps(raw, indent=1, ensure_ascii=False))
    _nbdev_clean(nb)
    atomic_write(path, nb2str(nb))


class OneLineParser(argparse.ArgumentParser):
    "argparse whose errors are one line on stderr, exit status 2 (as `ktae-lab` does)."
    def error(self, message): print(f"{self.prog}: error: {message}", file=sys.stderr); sys.exit(2)


def main(argv=None):
    global MAX_OUTPUT_KB
    ap = OneLineParser(prog="execute_nbs", description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="*", help="notebooks (default: every notebook under nbs/)")
    ap.add_argument("--slow", action="store_true", help="also run cells flagged `#| slow`")
    ap.add_argument("--flags", default="", help="comma-separated extra flags to run (e.g. gpu)")
    ap.add_argument("--timeout", type=int, default=None, help="seconds per cell")
    ap.add_argument("--max-kb", type=int, default=None, help=f"warn about outputs larger than this (default {MAX_OUTPUT_KB})")
    ap.add_argument("--check", action="store_true", help="compare the new outputs with the stored ones and write nothing: "
                    f"exit status 1 on drift beyond rtol {RTOL:g} / atol {ATOL:g} (see `output_drift`)")
    a = ap.parse_args(argv)
    if a.max_kb is not None and a.max_kb < 1: ap.error(f"--max-kb must be >= 1, got {a.max_kb}")
    if a.timeout is not None and a.timeout < 1: ap.error(f"--timeout must be >= 1, got {a.timeout}")
    if a.max_kb: MAX_OUTPUT_KB = a.max_kb
    paths = [Path(p).resolve() for p in a.paths]      # named from where the command runs, before moving to the repository
    os.chdir(ROOT)
    from nbdev.config import get_config
    cfg = get_config(path=ROOT)
    flags = set(cfg.tst_flags.split())
    if a.slow: flags.discard("slow")
    flags -= {f.strip() for f in a.flags.split(",") if f.strip()}
    paths = paths or all_notebooks(ROOT / cfg.nbs_path)
    try:
        for p in paths: read_notebook(p)              # every argument checked before any notebook runs
    except NotebookError as e:
        print(f"execute_nbs: error: {e}", file=sys.stderr); return 2
    os.environ.pop("IN_TEST", None)          # full outputs, as a reader sees them
    from tqdm.auto import tqdm
    warnings, drifts, failed = [], [], 0
    bar = tqdm(paths, unit="nb")
    for p in bar:
        bar.set_description(Path(p).name)
        try:
            if a.check:
                new, secs, big = run_notebook(p, flags, a.timeout)
                drift = output_drift(read_notebook(Path(p)), new)
                drifts += [f"{_shown(p)}: {d}" for d in drift]; failed += bool(drift)
            else: secs, big = execute_notebook(p, flags, a.timeout)
        except (NotebookError, RuntimeError, OSError) as e:
            bar.close()
            if isinstance(e, OSError) and e.strerror: e = f"{_shown(p)}: cannot write it ({e.strerror}); it was left unchanged"
            print(f"execute_nbs: error: {e}", file=sys.stderr)
            return 2
        bar.write(f"{_shown(p)}: {secs:.1f} s")
        warnings += [f"{_shown(p)}: cell {i} stores {kb} KB of outputs (> {MAX_OUTPUT_KB} KB)" for i, kb in big]
    for w in warnings: print("warning:", w, file=sys.stderr)
    for d in drifts: print("drift:", d, file=sys.stderr)
    if a.check: print(f"{failed} of {len(paths)} notebooks drifted from their stored outputs", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__": sys.exit(main())
