"""Execute notebooks in place and keep their outputs, so they open (and render on the docs site) with tables and figures.

    python tools/execute_nbs.py                      # every notebook under nbs/ (slow cells keep their stored outputs)
    python tools/execute_nbs.py nbs/index.ipynb nbs/tutorials/reading_key_tokens.ipynb
    python tools/execute_nbs.py --slow nbs/tutorials/ablation_lab.ipynb   # also run `#| slow` cells

Cells run with execnb's `CaptureShell`, the engine `nbdev_test` uses (except that a cell ending with `;` keeps what it
printed, as in Jupyter): from the notebook's folder, with the repository
root first on `sys.path`, cells flagged with settings.ini `tst_flags` (`notest slow gpu`) skipped unless forced with
`--slow` / `--flags`. A skipped cell keeps whatever outputs it had. Figures are stored as PNG at 100 dpi with text of at
least 9 pt (see `MPL_STYLE`). The first failing cell stops everything with one line naming the notebook, the cell and
the error (exit status 2; `KTAE_LAB_DEBUG=1` prints its traceback too) and the notebook is left untouched. Each saved
notebook is cleaned as `nbdev_clean` does, so CI's clean check sees no change, and replaced atomically (a full disk or
a kill leaves the old file). Bad arguments (a missing, torn or non-notebook file) are one line, exit status 2.
Outputs larger than `--max-kb` (default 200 KB) are listed at the end as a warning.
"""
from __future__ import annotations
import argparse, base64, json, os, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_OUTPUT_KB = 200

# One style for every stored figure: readable at the size it is stored (labels >= 9 pt), PNG at 100 dpi.
MPL_STYLE = {"figure.dpi": 100, "savefig.dpi": 100, "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
             "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9, "legend.title_fontsize": 9,
             "figure.titlesize": 11}
SETUP = f"""import matplotlib as _mpl
_mpl.rcParams.update({MPL_STYLE!r})
from matplotlib_inline.backend_inline import set_matplotlib_formats as _smf
_smf('png')
del _mpl, _smf"""


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
    _write_clean(path, raw)
    plt_close()
    return time.time() - start, big


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
    warnings = []
    bar = tqdm(paths, unit="nb")
    for p in bar:
        bar.set_description(Path(p).name)
        try: secs, big = execute_notebook(p, flags, a.timeout)
        except (NotebookError, RuntimeError, OSError) as e:
            bar.close()
            if isinstance(e, OSError) and e.strerror: e = f"{_shown(p)}: cannot write it ({e.strerror}); it was left unchanged"
            print(f"execute_nbs: error: {e}", file=sys.stderr)
            return 2
        bar.write(f"{_shown(p)}: {secs:.1f} s")
        warnings += [f"{_shown(p)}: cell {i} stores {kb} KB of outputs (> {MAX_OUTPUT_KB} KB)" for i, kb in big]
    for w in warnings: print("warning:", w, file=sys.stderr)
    return 0


if __name__ == "__main__": sys.exit(main())
