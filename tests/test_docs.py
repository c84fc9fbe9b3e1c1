"""The documentation site: built by the README's command, every navigation page loads, nothing is fetched from the internet.

Skips when the docs tools (mkdocs, mkdocs-material, mkdocs-jupyter, jupyter-server-mathjax) are not installed; the
browser tests skip without Chromium.
"""
import functools, http.server, importlib.util, json, re, shutil, subprocess, sys, threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlparse
from urllib.request import urlopen
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_PKGS = ("mkdocs", "material", "mkdocs_jupyter", "jupyter_server_mathjax")
missing = [p for p in DOC_PKGS if importlib.util.find_spec(p) is None]
pytestmark = [pytest.mark.skipif(bool(missing), reason=f"docs tools not installed: {', '.join(missing)} (pip install -e '.[dev]')"),
              pytest.mark.xdist_group("docs")]   # under `-n N --dist loadgroup` one worker builds the site once (build_docs.py stages in one folder)
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
LOCAL = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The site, built with the same command as README's ci:docs block (into a temporary folder, run from outside the
    repository), once per run: under pytest-xdist the workers share one build (a file lock; build_docs.py stages in one
    folder of the checkout)."""
    from filelock import FileLock
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in __import__("os").environ: root = root.parent   # the run's folder, shared by its workers
    out = root / "docs_site"
    with FileLock(str(root / "docs_site.lock")):
        if not (out / "index.html").is_file():
            out.mkdir(exist_ok=True)
            r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "--out", out.name], cwd=out.parent,
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "index.html").is_file() and (out / ".ktae-lab-site").is_file()   # the marker: a later build may replace this folder
    return out


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args): pass
    def log_request(self, code="-", size="-"):
        self.server.requests.append((urlparse(self.path).path, int(code) if str(code).isdigit() else code))


@pytest.fixture(scope="session")
def server(site):
    "The site served on the loopback interface; `.requests` records (path, status) of every request."
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(site)))
    srv.requests = []
    th = threading.Thread(target=srv.serve_forever, daemon=True); th.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/"
    yield srv
    srv.shutdown(); srv.server_close()


class _Links(HTMLParser):
    "Navigation links and every resource a page would load."
    def __init__(self):
        super().__init__(); self.nav, self.resources = [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and "md-nav__link" in (a.get("class") or "") and a.get("href"): self.nav.append(a["href"])
        for k in ("src", "data-src", "poster"):
            if a.get(k): self.resources.append((tag, a[k]))
        if tag == "link" and a.get("href") and (a.get("rel") or "") not in ("canonical", "prev", "next", "alternate"):
            self.resources.append((tag, a["href"]))      # stylesheets, icons, preloads: fetched by the browser
        if a.get("srcset"): self.resources += [(tag, s.strip().split(" ")[0]) for s in a["srcset"].split(",")]
        if a.get("style"): self.resources += [(tag, u) for u in re.findall(r"url\(['\"]?([^)'\"]+)", a["style"])]


def parse(path:Path) -> _Links:
    p = _Links(); p.feed(path.read_text(errors="replace")); return p


def nav_pages(site:Path) -> list[str]:
    "Pages linked from the index's navigation, relative to the site root, in order."
    seen = []
    for h in parse(site / "index.html").nav:
        h = h.split("#")[0]
        if h and not urlparse(h).scheme and h not in seen: seen.append(h)
    return seen


def external(url:str) -> bool:
    u = urlparse(url)
    return u.scheme in ("http", "https") and u.hostname not in LOCAL or url.startswith("//")


def test_every_notebook_and_module_is_a_navigation_page(site):
    pages = nav_pages(site)
    nbs = [p for p in (ROOT / "nbs").rglob("*.ipynb") if not any(s.startswith(("_", ".")) for s in p.relative_to(ROOT / "nbs").parts)]
    mods = [p for p in (ROOT / "ktae_lab").glob("*.py") if not p.stem.startswith("_")]
    assert len([p for p in pages if not p.startswith("api/")]) == len(nbs), pages
    assert len([p for p in pages if p.startswith("api/")]) == len(mods), pages
    assert pages[0] == "index.html" and "tutorial_reading_key_tokens.html" in pages


def test_pages_show_stored_outputs_and_api_has_docments(site):
    index = (site / "index.html").read_text()
    assert "data:image/png;base64" in index and "jp-OutputArea-output" in index   # a figure and outputs, not re-run code
    assert "Why: GRPO gives every token the same credit" in index
    api = (site / "api" / "ktae.html").read_text()
    assert "token_table" in api and "# [B, L] token ids" in api                     # signature with its docments


def test_no_resource_is_loaded_from_the_internet(site):
    bad = []
    for page in site.rglob("*.html"):
        bad += [(str(page.relative_to(site)), tag, u) for tag, u in parse(page).resources if external(u)]
    for css in site.rglob("*.css"):
        bad += [(str(css.relative_to(site)), "css", u) for u in re.findall(r"url\(['\"]?([^)'\"]+)", css.read_text(errors="replace")) if external(u)]
        bad += [(str(css.relative_to(site)), "@import", u) for u in re.findall(r"@import\s+['\"]([^'\"]+)", css.read_text(errors="replace")) if external(u)]
    assert not bad, bad[:20]


def test_every_navigation_page_is_served(site, server):
    for p in nav_pages(site):
        with urlopen(urljoin(server.url, p), timeout=30) as r:
            body = r.read().decode(errors="replace")
            assert r.status == 200 and "<article" in body, p


def _driver(netlog:Path):
    "A headless Chromium driven by selenium that logs every network request to `netlog` (written when it quits)."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--window-size=1000,700",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
              "--disable-domain-reliability", "--no-pings", f"--log-net-log={netlog}",
              "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication"]: o.add_argument(a)
    o.binary_location = CHROMIUM
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
    d.set_page_load_timeout(90); d.set_script_timeout(30)
    return d


def _visit(driver, url:str, wait_for:str|None=None, tries:int=2):
    "Load `url` (a page-load timeout is retried once: a 2-core machine under load can stall one page) and wait until it has settled."
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    for k in range(tries):
        try:
            driver.get(url)
            WebDriverWait(driver, 90).until(lambda d: d.execute_script("return document.readyState") == "complete")
            if wait_for: WebDriverWait(driver, 90).until(lambda d: d.execute_script(wait_for))
            return driver.page_source
        except TimeoutException:
            if k == tries - 1: raise


def _page_requests(netlog:Path) -> list[str]:
    "URLs that pages of the site asked for (initiated by the site's origin; browser housekeeping is not)."
    d = json.loads(netlog.read_text())
    return [e["params"]["url"] for e in d["events"] if "url" in e.get("params", {}) and "method" in e["params"]
            and urlparse(e["params"].get("initiator", "")).hostname in LOCAL]


CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None or importlib.util.find_spec("selenium") is None,
                                   reason="needs Chromium, its driver and selenium (see README's ci:system block)")
# MathJax 2 (what mkdocs-jupyter loads) has finished typesetting when its queue is empty
TYPESET = "return !window.MathJax || !MathJax.Hub || !MathJax.Hub.queue || (MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running)"


@functools.lru_cache
def tour_pages(site:Path) -> tuple[str, ...]:
    """The pages the browser visits: the index, then for each page template (the set of scripts a page loads: notebook
    pages load MathJax, API pages do not) its page with the most formulas, and every page whose content carries a script
    of its own. Every page is checked without a browser above (served with 200, no external resource in its HTML or CSS);
    KTAE_LAB_FULL_TESTS=1 visits every navigation page instead (about 60 s of CPU more)."""
    pages = nav_pages(site)
    if __import__("os").environ.get("KTAE_LAB_FULL_TESTS") == "1": return tuple(pages)
    best, own = {}, []
    for p in pages[1:]:
        text = (site / p).read_text(errors="replace")
        tpl = tuple(sorted({u.split("?")[0].rsplit("/", 1)[-1] for tag, u in parse(site / p).resources if tag == "script"}))
        prose = re.sub(r"(?s)<(code|pre|script|style)\b.*?</\1>", "", text)   # TeX delimiters in the text MathJax reads
        n_math = prose.count("$") + len(re.findall(r"\\\(|\\\[", prose))
        if tpl not in best or n_math > best[tpl][0]: best[tpl] = (n_math, p)
        if re.search(r'class="[^"]*(jp-OutputArea-output|jp-RenderedHTML)[^"]*"[^>]*>\s*<script', text): own.append(p)
    return tuple([pages[0]] + sorted({p for _, p in best.values()} | set(own), key=pages.index))


def test_tour_covers_every_page_template(site):
    pages, tour = nav_pages(site), list(tour_pages(site))
    assert tour[0] == "index.html" and any(p.startswith("api/") for p in tour) and any(not p.startswith("api/") for p in tour[1:]), tour
    assert len(tour) <= len(pages) and set(tour) <= set(pages)


@needs_browser
def test_pages_load_in_chromium_without_external_requests(site, server, tmp_path):
    """One browser session: the index renders (formulas typeset by the local MathJax, navigation, tables), then the tour's
    pages load and typeset; every request the pages made was served (< 400) and none left the machine."""
    pages = tour_pages(site)
    log = tmp_path / "net.json"
    del server.requests[:]
    d = _driver(log)
    try:
        dom = _visit(d, urljoin(server.url, pages[0]), wait_for="return document.querySelector('[class^=MathJax]') !== null && (" + TYPESET[len("return "):] + ")")
        assert "Why: GRPO gives every token the same credit" in dom
        assert re.search(r'class="MathJax[^"]*"', dom), "formulas were not typeset (MathJax did not run)"
        assert "md-nav__link" in dom and "<table" in dom
        for p in pages[1:]:   # the same browser visits the other pages in turn, each with its own timeout
            dom = _visit(d, urljoin(server.url, p), wait_for=TYPESET)
            assert "<article" in dom, p
    finally: d.quit()
    loaded = {path.lstrip("/"): code for path, code in server.requests}
    assert all(loaded.get(p) == 200 for p in pages), [p for p in pages if loaded.get(p) != 200]
    requested = _page_requests(log)
    assert any("assets/mathjax/MathJax.js?config=" in u for u in requested)
    external_requests = [u for u in requested if external(u)]
    assert not external_requests, external_requests
    failed = [(p, c) for p, c in server.requests if not (isinstance(c, int) and c < 400) and not p.endswith((".map", "favicon.ico"))]
    assert not failed, failed


class _Anchors(HTMLParser):
    "Every id (and name) a page defines, and every link it holds."
    def __init__(self):
        super().__init__(); self.ids, self.hrefs = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.ids.update(v for k, v in a.items() if k in ("id", "name") and v)
        if tag == "a" and a.get("href"): self.hrefs.append(a["href"])


def dead_links(site:Path) -> list[tuple[str, str]]:
    "(page, href) of every link inside the site whose page is missing or whose #anchor is not defined on its page."
    pages = {}
    for p in site.rglob("*.html"):
        if p.name == "404.html": continue        # MkDocs' 404 page links from the server root, wherever it is served
        a = _Anchors(); a.feed(p.read_text(errors="replace")); pages[p.resolve()] = a
    dead = []
    for p, a in pages.items():
        for h in a.hrefs:
            u = urlparse(h)
            if u.scheme or u.netloc or h.startswith("//"): continue
            target = (p.parent / u.path).resolve() if u.path else p
            if u.path and not target.exists(): dead.append((p.name, h)); continue
            if u.fragment and target in pages and u.fragment not in pages[target].ids: dead.append((p.name, h))
    return sorted(set(dead))


def test_no_dead_links_or_anchors(site):
    "Table-of-contents entries, doc links (backticked names) and in-page links all reach a page and an anchor on it."
    assert not dead_links(site), dead_links(site)[:30]
    index = (site / "index.html").read_text()
    assert 'class="ktae-doc-link" href="api/ktae.html#token_table"' in index   # a backticked public name is a link


def test_reading_map_lists_every_chapter_and_tutorial():
    "The index's reading map names every chapter and tutorial, each tutorial right after the chapter the site places it after."
    sys.path.insert(0, str(ROOT / "tools"))
    from build_docs import TUTORIAL_AFTER
    nb = json.loads((ROOT / "nbs" / "index.ipynb").read_text())
    cell = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown" and "## The map" in "".join(c["source"]))
    listed = re.findall(r"^\| \d+ \| (?:tutorial )?`([^`]+)`", cell, re.M)
    chapters = sorted(p.stem for p in (ROOT / "nbs").glob("[0-9][0-9]_*.ipynb"))
    tutorials = sorted("tutorials/" + p.stem for p in (ROOT / "nbs" / "tutorials").glob("*.ipynb") if not p.name.startswith(("_", ".")))
    assert not set(chapters + tutorials) - set(listed), set(chapters + tutorials) - set(listed)
    assert [c for c in listed if c in chapters] == chapters                 # chapters in reading order
    for t in tutorials:
        after = TUTORIAL_AFTER.get(t.split("/")[1])
        if after in listed: assert listed.index(t) > listed.index(after), (t, after)
