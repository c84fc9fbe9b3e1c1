"""The HTML report: content, the `ktae-lab report` entry point, bad input, and the page opened in headless Chromium
(screenshot not blank, no network request)."""
import html, json, os, re, shutil, subprocess, tempfile
from pathlib import Path

import numpy as np
import pytest

from ktae_lab.report import report_html, write_report
from ktae_lab.viz import KTAE_GREEN, KTAE_RED, explain_group
from test_viz import ROWS, NAMES, write_worked_example, cells


@pytest.fixture
def worked(tmp_path):
    one_class = [dict(group_id="all-right", rollout_id=i, token_ids=[11, 13, 151645], tokens=["Let", "Ġratio", "<|im_end|>"],
                      reward=1.0, prompt="an easy one") for i in range(2)]
    return write_worked_example(tmp_path / "worked.jsonl", one_class)


# ---------------------------------------------------------------- content
def test_page_is_self_contained(worked):
    page = report_html(worked)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page.lower() and "@import" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//|ftp:)""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", page, re.I)
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(srcs) == 2 * 4 and all(s.startswith("data:image/png;base64,") for s in srcs)      # four plots per group
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_page_values_match_the_engine(worked):
    page = report_html(worked, plots=False)
    gv = explain_group(worked, "g8")
    cs = cells(page)
    assert len(cs) == sum(map(len, ROWS)) + 2 * 3
    got = [float(c["data-score"]) for c in cs[:sum(map(len, ROWS))]]
    want = np.concatenate([gv.K[j][gv.response_mask[j]].numpy() for j in range(4)])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert "id 12" in cs[1]["title"] and "K = +0.272122" in cs[1]["title"]
    assert 'id="group-0"' in page and 'href="#group-1"' in page
    assert "worked example" in page and "an easy one" in page                     # prompts shown
    assert "KTAE gives K = 0 everywhere" in page                                  # one-class group explained


def test_groups_and_limits(worked):
    assert report_html(worked, plots=False, groups=["all-right"]).count("<section") == 1
    assert report_html(worked, plots=False, max_groups=1).count("<section") == 1
    with pytest.raises(ValueError, match="not in the rollouts"): report_html(worked, groups=["zzz"])
    with pytest.raises(ValueError, match="max_groups"): report_html(worked, max_groups=0)


def test_overrides_reach_the_page(worked):
    page = report_html(worked, plots=False, use_tf=False)
    got = [float(c["data-score"]) for c in cells(page)]
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
