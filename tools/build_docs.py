"""Build the documentation site offline: every notebook as a page with its stored outputs, an API reference, search.

    python tools/build_docs.py                # -> _site/ (open _site/index.html, or serve the folder)
    python tools/build_docs.py --out /tmp/site

MkDocs with the Material theme renders the pages; mkdocs-jupyter turns each notebook into a page from its stored outputs
(never re-executed: run `python tools/execute_nbs.py` first); the API reference is written here from each module's
`__all__` with nbdev's `show_doc` (signature with the docments comments, and the docstring). Nothing is loaded from the
internet: the theme's web fonts are off, search is Material's built-in (lunr in a web worker, local), and MathJax is
copied from the `jupyter-server-mathjax` package. Serve the folder to use search (`python -m http.server -d _site`);
the pages themselves also open from the file system. The sources are staged in `_docs_src/` and `mkdocs.yml` is written there; both are
build outputs.
"""
from __future__ import annotations
import argparse, importlib, inspect, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "_docs_src"
MATHJAX = "assets/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe,local"

# Parts of the course, by the first digit of a chapter's number, and where each tutorial is read (after that chapter).
PARTS = {"0": "Foundations", "1": "KTAE and losses", "2": "EpicPRM", "3": "Views", "4": "Applications"}
TUTORIAL_AFTER = {"reading_key_tokens": "12_ktae", "losses_by_hand": "13_losses", "ktae_real_rollouts": "15_interop",
                  "epicprm_walkthrough": "23_simulator", "ablation_lab": "42_lab", "who_finds_the_mistake": "43_credit",
                  "from_annotations_to_a_reward_model": "44_prm_lab", "your_own_run": "49_cli"}


def read_nb(path:Path) -> dict:
    "A notebook's JSON, or UsageError naming the file (a torn or non-notebook file)."
    try: nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e: raise UsageError(f"{path} is not a readable notebook ({e})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list): raise UsageError(f"{path} is not a notebook (no 'cells' list)")
    return nb


def title_of(nb_path:Path) -> str:
    "The notebook's `# Title` (first markdown heading), else its file name."
    for c in read_nb(nb_path)["cells"]:
        if c["cell_type"] != "markdown": continue
        m = re.search(r"^#\s+(.+)$", "".join(c["source"]), re.M)
        if m: return m.group(1).strip()
    return nb_path.stem


def page_name(nb:Path, nbs:Path) -> str:
    "Staged file name: every notebook page at the top level, so one relative MathJax path serves them all."
    rel = nb.relative_to(nbs)
    return rel.name if len(rel.parts) == 1 else "tutorial_" + rel.stem + ".ipynb" if rel.parts[0] == "tutorials" else "_".join(rel.parts)


def reading_order(nbs:Path) -> list[tuple[str, list[tuple[str, str]]]]:
    "Navigation: [(section, [(title, staged page)])] with index first, chapters by number, tutorials after their chapter."
    from execute_nbs import all_notebooks
    books = all_notebooks(nbs)
    chapters = sorted(p for p in books if p.parent == nbs and re.match(r"\d\d_", p.name))
    tutorials = {p.stem: p for p in books if p.parent.name == "tutorials"}
    placed, nav = set(), [("Start here", [("Learning path", "index.ipynb")])]
    for digit, part in PARTS.items():
        items = []
        for ch in (c for c in chapters if c.name[0] == digit):
            items.append((f"{ch.stem}: {title_of(ch)}", page_name(ch, nbs)))
            for t, after in TUTORIAL_AFTER.items():
                if after == ch.stem and t in tutorials:
                    items.append((f"Tutorial: {title_of(tutorials[t])}", page_name(tutorials[t], nbs))); placed.add(t)
        if items: nav.append((part, items))
    for t, after in TUTORIAL_AFTER.items():          # a tutorial whose chapter is missing goes last in its part's place
        if t in tutorials and t not in placed: nav[-1][1].append((f"Tutorial: {title_of(tutorials[t])}", page_name(tutorials[t], nbs))); placed.add(t)
    rest = [p for s, p in sorted(tutorials.items()) if s not in placed]
    if rest: nav.append(("More tutorials", [(f"Tutorial: {title_of(p)}", page_name(p, nbs)) for p in rest]))
    other = [p for p in books if p not in chapters and p.parent == nbs and p.name != "index.ipynb"]
    if other: nav.append(("Other notebooks", [(title_of(p), page_name(p, nbs)) for p in other]))
    return nav


def api_page(mod_name:str) -> str:
    "Markdown reference of one module: its docstring, then every public function and class (with its methods)."
    from nbdev.showdoc import show_doc
    mod = importlib.import_module(mod_name)
    out = [f"# `{mod_name}`", "", (mod.__doc__ or "").strip(), ""]
    for name in getattr(mod, "__all__", []):
        obj = getattr(mod, name, None)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)): continue
        out.append(_doc_md(show_doc(obj, name=name)))
        if inspect.isclass(obj):
            for m, f in vars(obj).items():
                if m.startswith("_") or not inspect.isfunction(f) or not (f.__doc__ or "").strip(): continue
                out.append(_doc_md(show_doc(f, name=f"{name}.{m}"), level=4))
    consts = [n for n in getattr(mod, "__all__", []) if not callable(getattr(mod, n, None))]
    if consts: out += ["### Constants", "", ", ".join(f"`{n}`" for n in consts), ""]
    return "\n".join(out)


def _doc_md(renderer, level:int=3) -> str:
    "nbdev's show_doc markdown without the source link (a link to the internet) and with our heading level."
    md = renderer._repr_markdown_()
    md = "\n".join(l for l in md.splitlines() if not l.startswith("[source]") and l.strip() != "---")
    return re.sub(r"^###\s", "#" * level + " ", md.strip(), count=1, flags=re.M) + "\n"


WIDGET = "application/vnd.jupyter.widget-view+json"
PROGRESS = re.compile(r"\d+%\|.*\|\s*\d+/\d+")          # a tqdm bar: "42%|####      | 5/12 [00:03<...]"


def for_reader(nb:dict, path:Path|None=None, nbs:Path|None=None) -> dict:
    """The notebook as nbdev's own docs show it: without `#| hide` cells and the `#| default_exp` line; and as a page
    reads it: progress bars (stderr) dropped, HTML outputs (tables) kept away from MathJax (a `$` in a cell is a
    dollar), and a live widget (stored as its `VBox(...)` repr) replaced by a line saying where it runs."""
    def hidden(c):
        src = "".join(c["source"])
        return c["cell_type"] == "code" and (re.search(r"^\s*#\|\s*hide\b", src, re.M) or
                                             re.fullmatch(r"\s*#\|\s*default_exp\s+\S+\s*", src))
    def output(o):
        if o.get("output_type") == "stream" and o.get("name") == "stderr" and PROGRESS.search("".join(o.get("text", ""))):
            return None
        d = o.get("data")
        if not d: return o
        if WIDGET in d:
            return dict(o, data={"text/html": '<p class="ktae-widget-note">An interactive explorer (ipywidgets) is shown here '
                                              'when the notebook runs in Jupyter; a static page cannot run it.</p>'})
        if "text/html" in d:
            return dict(o, data=dict(d, **{"text/html": '<div class="tex2jax_ignore">' + "".join(d["text/html"]) + "</div>"}))
        return o
    def page_link(m):      # a link to another notebook, written for Jupyter (`../12_ktae.ipynb#x`), to its page on the site
        target = (path.parent / (m.group(1) + ".ipynb")).resolve()
        if nbs is None or not target.is_file() or nbs.resolve() not in target.parents: return m.group(0)
        return f"]({Path(page_name(target, nbs.resolve())).with_suffix('.html').name}{m.group(2) or ''})"
    cells = []
    for c in nb["cells"]:
        if hidden(c): continue
        if c["cell_type"] == "code": c = dict(c, outputs=[o for o in map(output, c.get("outputs", [])) if o is not None])
        if c["cell_type"] == "markdown" and path is not None:
            c = dict(c, source=re.sub(r"\]\(([^)#\s:]+)\.ipynb(#[^)\s]*)?\)", page_link, "".join(c["source"])))
        cells.append(c)
    return dict(nb, cells=cells)


def stage(nbs:Path, lib:str) -> list:
    "Copy the notebooks, write the API pages and the MathJax copy into `_docs_src/docs`; returns the nav."
    docs = SRC / "docs"
    if SRC.exists(): shutil.rmtree(SRC)
    docs.mkdir(parents=True)
    from execute_nbs import all_notebooks
    for nb in all_notebooks(nbs): (docs / page_name(nb, nbs)).write_text(json.dumps(for_reader(read_nb(nb), nb, nbs)))
    nav = reading_order(nbs)
    mods = sorted(p.stem for p in (ROOT / lib).glob("*.py") if not p.stem.startswith("_"))
    (docs / "api").mkdir()
    api = []
    for m in mods:
        (docs / "api" / f"{m}.md").write_text(api_page(f"{lib}.{m}"))
        api.append((f"{lib}.{m}", f"api/{m}.md"))
    nav.append(("API reference", api))
    import jupyter_server_mathjax
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", docs / "assets" / "mathjax",
                    ignore=shutil.ignore_patterns("*.md", "LICENSE"))
    # the package ships MathJax's STIX-Web fonts only: tell MathJax (config/local.js, loaded by `config=...,local`); the
    # hidden MathML that the AssistiveMML extension adds for screen readers gets NativeMML's @font-face rules for the TeX
    # fonts, which are not shipped (fonts/HTML-CSS/TeX/otf: a 404 for every double-struck or script letter): drop them
    (docs / "assets" / "mathjax" / "config" / "local.js").write_text(
        'MathJax.Hub.Config({"HTML-CSS": {availableFonts: ["STIX-Web"], preferredFont: "STIX-Web", webFont: "STIX-Web", '
        'imageFont: null}, SVG: {font: "STIX-Web"}});\n'
        'MathJax.Hub.Register.StartupHook("NativeMML Jax Config", function () {\n'
        '  var st = MathJax.OutputJax.NativeMML.config.styles || {};\n'
        '  for (var k in st) if (k.indexOf("@font-face") === 0) delete st[k];\n'
        '});\n'
        'MathJax.Ajax.loadComplete("[MathJax]/config/local.js");\n')
    (docs / "assets" / "extra.css").write_text(EXTRA_CSS)
    return nav


# Figures at the size they were stored (text >= 9 pt, see tools/execute_nbs.py), scrolled sideways when wider than
# the page rather than shrunk (the page itself is as wide as the window); code wraps instead of running off the page; a wide display equation scrolls instead of
# being clipped; warnings on stderr read as notes, not alarms.
EXTRA_CSS = """.md-grid { max-width: initial; }
.jupyter-wrapper .jp-OutputArea-output { overflow-x: auto; }
.jupyter-wrapper .jp-RenderedImage img, .jp-OutputArea-output img { max-width: none !important; height: auto; }
.jp-InputArea pre, .highlight pre, .md-typeset pre > code { white-space: pre-wrap; word-break: break-word; }
.MathJax_Display, .MJXc-display, mjx-container[display="true"] { overflow-x: auto; overflow-y: hidden; padding: 2px 0; }
.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"], .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"] {
  background: #f6f6f6 !important; border-left: 3px solid #bbb; }
.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"] pre { background: none !important; color: #555 !important; }
.ktae-widget-note { font-style: italic; color: #555; }
"""


def write_config(nav, site:Path, title:str) -> Path:
    "mkdocs.yml (JSON is valid YAML) for the staged sources."
    cfg = {"site_name": title, "docs_dir": "docs", "site_dir": str(site), "use_directory_urls": False,
           "theme": {"name": "material", "font": False, "features": ["navigation.sections", "navigation.footer", "search.highlight"]},
           "plugins": ["search", {"mkdocs-jupyter": {"execute": False, "include_source": False,
                                                                "custom_mathjax_url": MATHJAX, "include_requirejs": False, "no_prompt": True,
                                                                "ignore_h1_titles": True}}],
           "extra_css": ["assets/extra.css"], "extra": {"generator": False},
           "hooks": [str(Path(__file__).resolve().parent / "docs_hooks.py")],
           "markdown_extensions": ["tables", "admonition", "toc", "pymdownx.superfences"],
           "nav": [{"Learning path": "index.ipynb"}] + [{sec: [{t: p} for t, p in items]} for sec, items in nav[1:]]}
    path = SRC / "mkdocs.yml"
    path.write_text(json.dumps(cfg, indent=1))
    return path


def link_targets(nbs:Path, lib:str, site:Path) -> dict[str, str]:
    "What a backticked name links to (as nbdev's doc links do): public functions and classes, modules, chapters, tutorials."
    from execute_nbs import all_notebooks
    t = {}
    for nb in all_notebooks(nbs):
        page = Path(page_name(nb, nbs)).with_suffix(".html").name
        rel = nb.relative_to(nbs)
        if nb.stem == "index": continue
        for k in (nb.stem, str(rel), str(rel.with_suffix("")), f"nbs/{rel}", f"nbs/{rel.with_suffix('')}"): t.setdefault(k, page)
    chapters = {}                                   # module -> its chapters' stems (`12_ktae.key_token_values` links too)
    for nb in nbs.glob("[0-9][0-9]_*.ipynb"): chapters.setdefault(nb.stem[3:], []).append(nb.stem)
    for api in sorted((site / "api").glob("*.html")):
        m = api.stem
        ids = set(re.findall(r'<h[34] id="([^"]+)"', api.read_text(errors="replace")))
        t[f"{lib}.{m}"] = f"api/{m}.html"
        mod = importlib.import_module(f"{lib}.{m}")
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)): continue
            url = f"api/{m}.html" + (f"#{name.lower()}" if name.lower() in ids else "")
            for k in (name, f"{m}.{name}", f"{lib}.{m}.{name}", *(f"{c}.{name}" for c in chapters.get(m, ()))): t.setdefault(k, url)
    for cmd in ("score", "report", "sample", "ablate", "prm"): t[f"ktae-lab {cmd}"] = f"49_cli.html#ktae-lab-{cmd}"
    return t


_KEEP = re.compile(r"(<pre\b.*?</pre>|<a\b.*?</a>|<h[1-6]\b.*?</h[1-6]>|<script\b.*?</script>|<nav\b.*?</nav>)", re.S)
_CODE = re.compile(r"<code>([^<]{1,120}?)</code>")


def add_doc_links(site:Path, targets:dict[str, str]) -> int:
    "Turn every backticked chapter, tutorial or public name in the pages' prose into a link (and keep MathJax out of code); returns how many."
    n = 0
    def link(m, prefix, here):
        nonlocal n
        name = re.sub(r"\(.*\)$", "", m.group(1).strip())         # `annotate(...)` links to annotate
        url = targets.get(name)
        if url is None or url.split("#")[0] == here and "#" not in url: return m.group(0)
        n += 1
        return f'<a class="ktae-doc-link" href="{prefix}{url}">{m.group(0)}</a>'
    for page in site.rglob("*.html"):
        rel = page.relative_to(site)
        if rel.name == "404.html": continue
        prefix = "../" * (len(rel.parts) - 1)
        s = page.read_text(errors="replace")
        # the hidden copy-to-clipboard text of each code cell is no maths either (MathJax typeset `$` in code there)
        s = s.replace('class="clipboard-copy-txt"', 'class="clipboard-copy-txt tex2jax_ignore"')
        a, b = s.find("<article"), s.rfind("</article>")
        if a < 0 or b < 0: continue
        body = _KEEP.split(s[a:b])
        body = [part if k % 2 else _CODE.sub(lambda m: link(m, prefix, rel.as_posix()), part) for k, part in enumerate(body)]
        page.write_text(s[:a] + "".join(body) + s[b:])
    return n


_GREEK = {g: chr(c) for g, c in zip("alpha beta gamma delta epsilon lambda mu pi rho sigma tau theta ell".split(),
                                    (945, 946, 947, 948, 949, 955, 956, 960, 961, 963, 964, 952, 8467))}


def plain_math(text:str) -> str:
    "LaTeX in a search snippet as plain text: `$\\hat A_i = \\frac{r_i}{\\sigma}$` -> `A_i = r_i / σ`."
    def one(m):
        x = m.group(1)
        x = re.sub(r"\\(?:text|mathrm|operatorname|mathbf|mathit|textbf)\s*\{([^{}]*)\}", r"\1", x)
        for _ in range(3): x = re.sub(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"(\1)/(\2)", x)
        x = re.sub(r"\\([A-Za-z]+)", lambda g: _GREEK.get(g.group(1), " " if g.group(1) in ("quad", "qquad") else ""), x)
        x = x.replace("\\_", "_").replace("\\,", " ").replace("\\;", " ").replace("\\!", "").replace("\\", " ")
        return re.sub(r"\s+", " ", x.replace("{", "").replace("}", "")).strip()
    text = re.sub(r"(?<!\\)\$\$([^$\"']+?)\$\$", one, text, flags=re.S)
    # pandoc's rule (`$5 and $6` is money), no escaped `\$`, and no quotes inside (a `$` in code is not maths)
    return re.sub(r"(?<![\w$\\])\$([^\s$\"'](?:[^$\n\"']*?[^\s$\"'\\])?)\$(?!\d)", one, text)


def clean_search_index(site:Path) -> None:
    "The search index's text without raw LaTeX (what the search box shows as snippets)."
    path = site / "search" / "search_index.json"
    if not path.is_file(): return
    idx = json.loads(path.read_text())
    for d in idx.get("docs", []): d["text"], d["title"] = plain_math(d.get("text", "")), plain_math(d.get("title", ""))
    path.write_text(json.dumps(idx))


MARKER = ".ktae-lab-site"   # written into every site this tool builds: only such a folder (or an empty one) is replaced


class UsageError(Exception): "A bad argument or environment: reported as one line, exit status 2."


def check_out(site:Path) -> None:
    "Refuse an output that is a file, or an existing non-empty folder that is not a site built here (mkdocs --clean empties it)."
    if site.exists() and not site.is_dir(): raise UsageError(f"--out {site} is an existing file; give a folder")
    if site in (ROOT, *ROOT.parents) or ROOT in site.parents and site.relative_to(ROOT).parts[0] in ("nbs", "ktae_lab", "tests", "tools", "data", ".git"):
        raise UsageError(f"--out {site} is the repository or one of its source folders; give a new folder")
    if site.is_dir() and any(site.iterdir()) and not (site / MARKER).is_file() and site != (ROOT / "_site").resolve():
        raise UsageError(f"--out {site} is a folder with other content (no {MARKER} marker of a site built by this tool); "
                         "building would delete everything in it: give a new or empty folder")


def build(out:Path|None=None) -> Path:
    "Stage, configure and run `mkdocs build`; returns the site folder."
    sys.path.insert(0, str(Path(__file__).parent)); sys.path.insert(0, str(ROOT))
    from nbdev.config import get_config
    c = get_config(path=ROOT)     # the repository of this script, wherever it is run from
    site = (out or ROOT / "_site").resolve()
    check_out(site)
    nav = stage(Path(c.config_path) / c.nbs_path, c.lib_name)
    cfg = write_config(nav, site, c.lib_name)
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--clean", "-q", "-f", str(cfg)], cwd=SRC, env=env)
    if r.returncode: raise UsageError(f"mkdocs build failed (exit {r.returncode})")
    add_doc_links(site, link_targets(Path(c.config_path) / c.nbs_path, c.lib_name, site))
    clean_search_index(site)
    (site / MARKER).write_text("built by tools/build_docs.py; this folder is replaced by the next build\n")
    return site


class OneLineParser(argparse.ArgumentParser):
    "argparse whose errors are one line on stderr, exit status 2 (as `ktae-lab` does)."
    def error(self, message): print(f"{self.prog}: error: {message}", file=sys.stderr); sys.exit(2)


def main(argv=None):
    ap = OneLineParser(prog="build_docs", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="site folder (default _site/)")
    a = ap.parse_args(argv)
    t = time.time()
    try: site = build(a.out)
    except (UsageError, OSError, ValueError, KeyError) as e:     # one line, exit 2, as `ktae-lab` does (KTAE_LAB_DEBUG=1: traceback)
        if os.environ.get("KTAE_LAB_DEBUG"): raise
        msg = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename and e.strerror else str(e)
        print(f"build_docs: error: {type(e).__name__ + ': ' if not isinstance(e, UsageError) else ''}{msg}", file=sys.stderr)
        return 2
    print(f"site written to {site} in {time.time() - t:.0f} s: open {site / 'index.html'}")
    return 0


if __name__ == "__main__": sys.exit(main())
