"""The HTML report: content, the `ktae-lab report` entry point, bad input, and the page opened in headless Chromium
(screenshot not blank, no network request, a hovered token shows its table)."""
import html, json, os, re, shutil, subprocess, tempfile
from pathlib import Path

import numpy as np
import pytest

from ktae_lab.report import report_html, write_report, draw_group_figures
from ktae_lab.viz import KTAE_GREEN, KTAE_RED, TOOLTIP_SCRIPT, explain_group, explain_groups, tooltip_text, token_tooltip, tooltip_script_hash
from test_viz import ROWS, NAMES, write_worked_example, cells


def page_cells(page):
    "Every token cell of a report in page order: group uid, row in the group's table, shown text, K and tooltip text."
    out = []
    for uid, body in re.findall(r'<div class="ktae-group" id=ktae-g(\w+) data-tab=\1>(.*?)</section>', page, re.S):
        rows = json.loads(re.search(rf'<script type="application/json" id="ktae-tab-{uid}">(.*?)</script>', body, re.S).group(1))
        for r, text in re.findall(r'<span data-t="(\d+)">(.*?)</span>', body, re.S):
            row = rows[int(r)]
            out.append(dict(uid=uid, row=int(r), text=html.unescape(text.replace("<br>", "\n")),
                            K=float(row[1].split("=")[1]), tooltip=tooltip_text(row)))
    return out


@pytest.fixture
def worked(tmp_path):
    one_class = [dict(group_id="all-right", rollout_id=i, token_ids=[11, 13, 151645], tokens=["Let", "Ġratio", "<|im_end|>"],
                      reward=1.0, prompt="an easy one") for i in range(2)]
    return write_worked_example(tmp_path / "worked.jsonl", one_class)


# ---------------------------------------------------------------- content
def test_page_is_self_contained(worked):
    page = report_html(worked)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    code = [body for attrs, body in scripts if "application/json" not in attrs]
    assert code == [TOOLTIP_SCRIPT] and "@import" not in page                     # one script: the hover script
    assert all('type="application/json"' in attrs for attrs, body in scripts if body != TOOLTIP_SCRIPT)   # the rest is data
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//|ftp:)""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", page, re.I)
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(srcs) == 1 and all(s.startswith("data:image/png;base64,") for s in srcs)   # one figure: g8; all-right has no contrast
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    assert "default-src 'none'" in csp and f"script-src {tooltip_script_hash()}" in csp and "unsafe-inline'" not in csp.split("script-src")[1]


def test_page_values_match_the_engine(worked):
    page = report_html(worked, plots=False)
    gv = explain_group(worked, "g8")
    cs = page_cells(page)
    assert len(cs) == sum(map(len, ROWS)) + 2 * 3
    got = [c["K"] for c in cs[:sum(map(len, ROWS))]]
    want = np.concatenate([gv.K[j][gv.response_mask[j]].numpy() for j in range(4)])
    np.testing.assert_allclose(got, want, atol=1e-6)
    titles = [c["title"] for j in range(4) for c in cells(gv.views[j].to_html())]   # the notebook view's tooltips
    assert [c["tooltip"] for c in cs[:len(titles)]] == titles
    assert "id 12" in cs[1]["tooltip"] and "K = +0.272122" in cs[1]["tooltip"]
    assert 'id="group-0"' in page and 'href="#group-1"' in page
    assert "worked example" in page and "an easy one" in page                     # prompts shown
    assert "no contrast, so KTAE gives K = 0 to every token" in page              # one-class group explained


def test_mixed_groups_are_marked(worked):
    page = report_html(worked, plots=False)
    nav = re.search(r"<nav>(.*?)</nav>", page, re.S).group(1)
    assert re.search(r'class="mixed"[^>]*>g8 ●</a>', nav) and re.search(r'class="flat" title="no contrast, K = 0 \(all correct\)">all-right</a>', nav)
    assert "<td>no contrast, K = 0 (all correct)</td>" in page and "1 with both correct and wrong rollouts" in page


def test_page_is_small(worked):
    "Each distinct token's statistics are written once per group, not once per occurrence."
    page = report_html(worked, plots=False)
    n = len(page_cells(page))
    per_cell = len("".join(re.findall(r'<span data-t="\d+">.*?</span>', page))) / n
    assert per_cell < 40                                                          # a cell is its row number and its text
    assert page.count("present  absent") == 1                                     # the table layout lives in the script only


def test_figures_drawn_in_workers_equal_serial():
    from ktae_lab.data import sample_rollouts_path
    vs = explain_groups(sample_rollouts_path())
    assert draw_group_figures(vs, workers=2) == draw_group_figures(vs, workers=1)
    with pytest.raises(ValueError, match="workers"): draw_group_figures(vs, workers=0)


def test_groups_and_limits(worked):
    assert report_html(worked, plots=False, groups=["all-right"]).count("<section") == 1
    assert report_html(worked, plots=False, max_groups=1).count("<section") == 1
    with pytest.raises(ValueError, match="not in the rollouts"): report_html(worked, groups=["zzz"])
    with pytest.raises(ValueError, match="max_groups"): report_html(worked, max_groups=0)


def test_overrides_reach_the_page(worked):
    page = report_html(worked, plots=False, use_tf=False)
    got = [c["K"] for c in page_cells(page)]
    assert max(map(abs, got)) <= np.tanh(np.pi / 4) + 1e-6
    assert "use_tf</td><td>False" in page


# ---------------------------------------------------------------- headless Chromium
def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name): return shutil.which(name)
    return None


needs_chromium = pytest.mark.skipif(chromium() is None, reason="headless Chromium not installed: `apt-get install -y chromium` "
                                    "(Debian's package; .ci/run installs it) to run the browser checks")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions", "--no-pings",
         "--disable-domain-reliability", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND"]      # nothing resolves: even a request the page made could not leave


def open_in_chromium(page: Path, tmp: Path, size="1280,1600"):
    "Screenshot `page` in a fresh headless Chromium; return (png path, page-initiated request URLs from the net log)."
    shot, netlog, profile = tmp / "shot.png", tmp / "net.json", Path(tempfile.mkdtemp(dir=tmp, prefix="profile-"))
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}", f"--screenshot={shot}",
           f"--log-net-log={netlog}", page.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=dict(os.environ, HOME=str(tmp)))
    assert shot.exists(), f"chromium wrote no screenshot (exit {r.returncode}): {r.stderr[-2000:]}"
    return shot, page_requests(netlog)


def page_requests(netlog: Path) -> list[str]:
    "URLs of network requests the page itself started (the browser's own background requests are ignored)."
    text = netlog.read_text()
    if not text.rstrip().endswith("}"): text = text.rstrip().rstrip(",") + "]}"     # log cut short at exit
    log = json.loads(text)
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    urls = []
    for e in log["events"]:
        p = e.get("params") or {}
        if types.get(e["type"]) != "URL_REQUEST_START_JOB" or "url" not in p: continue
        if p["url"].split(":", 1)[0] in ("file", "data", "blob", "about", "chrome"): continue
        if p.get("initiator") == "not an origin" and "file://" not in p.get("network_isolation_key", ""): continue
        urls.append(p["url"])
    return urls


def colour_fractions(png: Path):
    "Fractions of pixels that are not white, and that are near the report's full green / full red."
    import matplotlib.image as mpimg
    img = mpimg.imread(str(png))[..., :3]
    img = (img * 255).round() if img.max() <= 1.0 else img
    near = lambda c: float((np.abs(img - np.array(c)).max(-1) <= 12).mean())
    return float((img.min(-1) < 250).mean()), near(KTAE_GREEN), near(KTAE_RED), float(img.std())


@needs_chromium
def test_report_in_headless_chromium(worked, tmp_path):
    page = write_report(worked, tmp_path / "report.html")
    shot, requests = open_in_chromium(page, tmp_path)
    ink, green, red, std = colour_fractions(shot)
    assert std > 10 and ink > 0.02, f"screenshot looks blank (non-white {ink:.3%}, std {std:.1f})"
    assert green > 1e-4 and red > 1e-4, f"no green/red token cells in the screenshot ({green:.4%}, {red:.4%})"
    assert requests == [], f"the report made network requests: {requests}"


@needs_chromium
def test_request_detector_catches_a_leaky_page(tmp_path):
    "Control: a page that loads remote images is flagged, so the empty list above means something."
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<html><body><h1>leak</h1><img src="http://ktae-lab.invalid/a.png">'
                     '<link rel="stylesheet" href="https://ktae-lab.invalid/s.css"></body></html>')
    _, requests = open_in_chromium(leaky, tmp_path, size="400,300")
    assert any("ktae-lab.invalid/a.png" in u for u in requests) and any("s.css" in u for u in requests)


@needs_chromium
def test_blank_page_is_detected_as_blank(tmp_path):
    "Control: the blankness check fails on an empty page."
    blank = tmp_path / "blank.html"; blank.write_text("<html><body></body></html>")
    shot, _ = open_in_chromium(blank, tmp_path, size="400,300")
    ink, green, red, std = colour_fractions(shot)
    assert ink < 0.001 and std < 1


def test_estimator_reaches_the_page(worked):
    page = report_html(worked, plots=False, estimator="rloo")
    assert "Â: rloo" in page and "Â (rloo) = " in page
    with pytest.raises(ValueError, match="estimator"): report_html(worked, estimator="nope")


# ---------------------------------------------------------------- a real browser: hover a token, read its tooltip
def chromedriver():
    return shutil.which("chromedriver")


def selenium_driver(width=1280, height=900):
    "A headless Chromium driven by selenium, that can reach no host; None when selenium or the driver is missing."
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    if chromium() is None or chromedriver() is None: return None
    o = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}",
              "--host-resolver-rules=MAP * ~NOTFOUND"]: o.add_argument(a)
    o.binary_location = chromium()
    return webdriver.Chrome(service=Service(chromedriver()), options=o)


needs_selenium = pytest.mark.skipif(
    chromium() is None or chromedriver() is None or __import__("importlib").util.find_spec("selenium") is None,
    reason="needs Chromium, its driver and selenium: `apt-get install -y chromium chromium-driver`, `pip install selenium`")


def hover(driver, element):
    from selenium.webdriver.common.action_chains import ActionChains
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    ActionChains(driver).move_to_element(element).perform()


@needs_selenium
def test_hovering_a_token_shows_its_table(worked, tmp_path):
    from selenium.webdriver.common.by import By
    page = write_report(worked, tmp_path / "report.html")
    want = page_cells(page.read_text())
    d = selenium_driver()
    try:
        d.get(page.resolve().as_uri())
        tip = d.find_element(By.CSS_SELECTOR, ".ktae-tip")
        assert not tip.is_displayed()
        spans = d.find_elements(By.CSS_SELECTOR, "[data-t]")
        assert len(spans) == len(want)
        for k in (1, 4, 7, len(want) - 1):                                  # id 12, the newline token, ..., the other group
            hover(d, spans[k])
            assert tip.is_displayed() and tip.text == want[k]["tooltip"]
        hover(d, d.find_element(By.TAG_NAME, "h1"))                          # leaving the tokens hides it
        assert not tip.is_displayed()
        assert "K = +0.272122" in want[1]["tooltip"] and "correct          2       0" in want[1]["tooltip"]
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors                                          # the CSP let the hover script run, nothing failed
    finally:
        d.quit()


@needs_selenium
def test_csp_blocks_any_other_script(worked, tmp_path):
    "Control: the CSP allows only the hover script; an injected inline script does not run."
    from selenium.webdriver.common.by import By
    text = write_report(worked, tmp_path / "r.html", plots=False).read_text()
    bad = tmp_path / "bad.html"
    bad.write_text(text.replace("</body>", "<script>document.title='pwned'</script></body>"))
    d = selenium_driver()
    try:
        d.get(bad.resolve().as_uri())
        assert d.title != "pwned"
        hover(d, d.find_elements(By.CSS_SELECTOR, "[data-t]")[1])
        assert d.find_element(By.CSS_SELECTOR, ".ktae-tip").is_displayed()    # the hashed hover script still runs
    finally:
        d.quit()


def _run_folder(root: Path, steps=(1, 2, 3), hostile=False) -> Path:
    "A run folder of ktae-format step files made from the shipped sample (optionally with a token text that is markup)."
    from ktae_lab.data import sample_rollouts_path
    run = root / "run"; run.mkdir()
    recs = [json.loads(l) for l in sample_rollouts_path().read_text().splitlines()]
    for s in steps:
        out = []
        for r in recs:
            r = dict(r)
            if hostile: r["tokens"] = ["<script>alert(1)</script>" if t.strip() == "times" else t for t in r["tokens"]]
            out.append(json.dumps(r))
        (run / f"{s}.jsonl").write_text("\n".join(out) + "\n")
    return run


def test_run_report_streams_steps_and_links_step_pages(tmp_path):
    "`ktae-lab report RUN_DIR`: one run page (three figures, a row per step linking its page), one page per step."
    from ktae_lab.cli import main
    run = _run_folder(tmp_path, hostile=True)
    assert main(["report", str(run), "-o", str(tmp_path / "site" / "run.html"), "--step-groups", "1"]) == 0
    doc = (tmp_path / "site" / "run.html").read_text()
    assert doc.count("data:image/png") == 3 and doc.count('href="run_steps/step_') == 3
    assert "<script" not in doc and "&lt;script&gt;" in doc          # a token's text is data, never markup
    for s in (1, 2, 3):
        page = (tmp_path / "site" / "run_steps" / f"step_{s}.html").read_text()
        assert page.count("<section") == 1 and "<script>alert" not in page


def test_run_summary_matches_scoring_each_step_alone(tmp_path):
    "The streamed per-step summary equals what `score_rollouts` gives for that step's file on its own."
    from ktae_lab.report import summarize_run
    from ktae_lab.ktae import score_rollouts
    run = _run_folder(tmp_path, steps=(4, 7))
    rs = summarize_run(run, progress=False)
    t, s = score_rollouts(run / "7.jsonl")
    mixed = t[t.group.isin(set(s.group[s.mixed]))]
    got = rs.tokens[rs.tokens.step == 7].set_index("token_id").sort_index()
    assert rs.steps.step.tolist() == [4, 7] and rs.steps.contrast_share.iloc[1] == pytest.approx(s.mixed.mean())
    assert (got.rewarded == (mixed.K > 0).groupby(mixed.token_id).sum().sort_index()).all()
    assert np.allclose(got.mean_K, mixed.groupby("token_id").K.mean().sort_index())
