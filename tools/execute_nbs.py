"""Execute notebooks in place and keep their outputs, so they open (and render on the docs site) with tables and figures.

    python tools/execute_nbs.py                      # every notebook under nbs/ (slow cells keep their stored outputs)
    python tools/execute_nbs.py nbs/index.ipynb nbs/tutorials/reading_key_tokens.ipynb
    python tools/execute_nbs.py --slow nbs/tutorials/ablation_lab.ipynb   # also run `#| slow` cells

Cells run with execnb's `CaptureShell`, the engine `nbdev_test` uses (except that a cell ending with `;` keeps what it
printed, as in Jupyter): from the notebook's folder, with the repository
root first on `sys.path`, cells flagged with settings.ini `tst_flags` (`notest slow gpu`) skipped unless forced with
`--slow` / `--flags`. A skipped cell keeps whatever outputs it had. Figures are stored as PNG at 100 dpi with text of at
least 9 pt (see `MPL_STYLE`). The first failing cell stops everything with its traceback (exit status 1) and the
notebook is left untouched. Each saved notebook is passed through `nbdev_clean`, so CI's clean check sees no change.
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
                tb = shell.prettytb(fname=path)
                raise RuntimeError(f"{path.relative_to(ROOT)}: cell {i} failed\n{tb}")
    # `NBProcessor` added parsed attributes (directives_, ...); keep only the notebook format's own keys
    raw = json.loads(path.read_text())
    by_id = {c.get("id"): c for c in nb.cells}
    big = []
    for i, c in enumerate(raw["cells"]):
        if c["cell_type"] != "code": continue
        new = by_id.get(c.get("id"))
        if new is None or skip(new): continue
        c["outputs"] = [dict(o) for o in new.get("outputs", [])]
        size = sum(output_size(o) for o in c["outputs"])
        if size > MAX_OUTPUT_KB * 1024: big.append((i, size // 1024))
    path.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n")
    _clean(path)
    plt_close()
    return time.time() - start, big


def plt_close():
    "Free the figures of the last notebook."
    try:
        import matplotlib.pyplot as plt
        plt.close("all")
    except ImportError: pass


def _clean(path:Path):
    "nbdev_clean one notebook in place (what CI's clean check would do)."
    from nbdev.clean import nbdev_clean
    nbdev_clean(fname=str(path))


def main(argv=None):
    global MAX_OUTPUT_KB
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="*", help="notebooks (default: every notebook under nbs/)")
    ap.add_argument("--slow", action="store_true", help="also run cells flagged `#| slow`")
    ap.add_argument("--flags", default="", help="comma-separated extra flags to run (e.g. gpu)")
    ap.add_argument("--timeout", type=int, default=None, help="seconds per cell")
    ap.add_argument("--max-kb", type=int, default=None, help=f"warn about outputs larger than this (default {MAX_OUTPUT_KB})")
    a = ap.parse_args(argv)
    if a.max_kb: MAX_OUTPUT_KB = a.max_kb
    os.chdir(ROOT)
    from nbdev.config import get_config
    cfg = get_config()
    flags = set(cfg.tst_flags.split())
    if a.slow: flags.discard("slow")
    flags -= {f.strip() for f in a.flags.split(",") if f.strip()}
    paths = [Path(p) for p in a.paths] or all_notebooks(Path(cfg.nbs_path))
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing: sys.exit(f"execute_nbs: error: no such notebook: {', '.join(missing)}")
    os.environ.pop("IN_TEST", None)          # full outputs, as a reader sees them
    from tqdm.auto import tqdm
    warnings = []
    bar = tqdm(paths, unit="nb")
    for p in bar:
        bar.set_description(Path(p).name)
        try: secs, big = execute_notebook(p, flags, a.timeout)
        except RuntimeError as e:
            bar.close()
            print(str(e), file=sys.stderr)
            print(f"execute_nbs: error: {p} failed; it was left unchanged", file=sys.stderr)
            return 1
        bar.write(f"{p}: {secs:.1f} s")
        warnings += [f"{p}: cell {i} stores {kb} KB of outputs (> {MAX_OUTPUT_KB} KB)" for i, kb in big]
    for w in warnings: print("warning:", w, file=sys.stderr)
    return 0


if __name__ == "__main__": sys.exit(main())
