"""Renderer, colour scale, result objects and plots of `ktae_lab.viz`: values carried into colours and tooltips,
escaping, bad input, and the KTAE worked example (the one of the `12_ktae` chapter) flowing from the engine into the view."""
import html, json, math, re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from ktae_lab.viz import (KTAE_GREEN, KTAE_RED, score_colors, clean_token, display_token, token_tooltip, token_html,
                          legend_html, TokenView, GroupView, explain_group, stats_per_position, top_tokens_html,
                          plot_top_tokens, plot_k_distribution, plot_rollout_advantage, plot_contingency,
                          figure_html, agg_figure, group_figures_html, _BYTE_DECODER)


class Spans(HTMLParser):
    "Collect the token cells of a rendered view: attributes and displayed text."
    def __init__(self):
        super().__init__(); self.cells, self._cur = [], None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and a.get("class") == "ktae-tok": self._cur = dict(a, text=""); self.cells.append(self._cur)
        elif tag == "br" and self._cur is not None: self._cur["text"] += "\n"
    def handle_endtag(self, tag):
        if tag == "span": self._cur = None
    def handle_data(self, data):
        if self._cur is not None: self._cur["text"] += data


def cells(h):
    p = Spans(); p.feed(h); return p.cells


def bg(cell):
    return re.search(r"background:(#[0-9a-f]{6})", cell["style"]).group(1)


# ---------------------------------------------------------------- colour scale
def test_scale_ends_and_centre():
    assert score_colors([0.0]) == ["#ffffff"]
    assert score_colors([1.0, -1.0]) == ["#%02x%02x%02x" % KTAE_GREEN, "#%02x%02x%02x" % KTAE_RED]
    assert score_colors([5.0, -5.0], vmax=2) == score_colors([1.0, -1.0])        # clipped beyond vmax


@settings(max_examples=60, deadline=None)
@given(st.floats(-3, 3, allow_nan=False), st.floats(0.1, 3))
def test_scale_symmetric_and_hued_by_sign(s, vmax):
    pos, neg = (np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)]) for c in score_colors([abs(s), -abs(s)], vmax))
    t = min(abs(s) / vmax, 1.0)
    # same distance from white on both sides: intensity t of each end colour
    np.testing.assert_allclose(255 - pos, t * (255 - np.array(KTAE_GREEN)), atol=0.51)
    np.testing.assert_allclose(255 - neg, t * (255 - np.array(KTAE_RED)), atol=0.51)
    if t > 0.05: assert pos[1] > pos[0] and neg[0] > neg[1]                        # green side greenish, red side reddish


def test_scale_monotone():
    c = score_colors(np.linspace(0, 1, 11))
    g = [int(x[1:3], 16) for x in c]                                              # red channel falls as K grows
    assert g == sorted(g, reverse=True) and len(set(g)) == 11


@pytest.mark.parametrize("bad", [[float("nan")], [0.1, float("inf")], torch.tensor([0.0, float("nan")])])
def test_scale_rejects_nan(bad):
    with pytest.raises(ValueError, match="NaN or infinite"): score_colors(bad)


@pytest.mark.parametrize("vmax", [0, -1, float("nan"), float("inf")])
def test_scale_rejects_bad_vmax(vmax):
    with pytest.raises(ValueError, match="vmax"): score_colors([0.1], vmax)


# ---------------------------------------------------------------- tokens
def _bytelevel(text):
    "Encode text as GPT-2 byte-level BPE characters (the inverse of the decoder)."
    enc = {b: c for c, b in _BYTE_DECODER.items()}
    return "".join(enc[b] for b in text.encode("utf-8"))


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=12))
def test_clean_token_roundtrips_bytelevel(text):
    assert clean_token(_bytelevel(text)) == text


def test_clean_token_markers_and_errors():
    assert clean_token("ĠĠ") == "  " and clean_token("ĊĊ") == "\n\n" and clean_token("▁a▁b") == " a b"
    with pytest.raises(TypeError, match="strings"): clean_token(12)


@pytest.mark.parametrize("tok,shown", [("Ġ", "␣"), ("ĠĠĠ", "␣␣␣"), ("Ċ", "↵\n"), ("ĉ", "⇥"), ("", "∅"),
                                       ("Ġ<script>", " <script>"), ("\"&'", "\"&'")])
def test_display_token_visible_and_escaped(tok, shown):
    h = token_html([tok], [0.3])
    assert cells(h)[0]["text"] == shown
    assert "<script>" not in h


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=6), min_size=1, max_size=8), st.data())
def test_renderer_one_cell_per_token_whatever_the_text(tokens, data):
    scores = data.draw(st.lists(st.floats(-2, 2, allow_nan=False), min_size=len(tokens), max_size=len(tokens)))
    cs = cells(token_html(tokens, scores, vmax=2.0))
    assert len(cs) == len(tokens)                                                 # no token can open or close a tag
    assert [float(c["data-score"]) for c in cs] == [float(s) for s in scores]      # exact values round-trip
    assert [bg(c) for c in cs] == score_colors(scores, 2.0)


# ---------------------------------------------------------------- renderer values, tooltips, errors
STATS = [dict(token_id=12, a=2, b=1, c=0, d=1, count_correct=3, count_wrong=1, p=1.0, F=0.0, IG=0.311278,
              h=0.785398, tf_term=2.80178, x=3.58718, raw=0.558309, K=0.272122),
         dict(token_id=18, a=1, b=2, c=1, d=0, count_correct=1, count_wrong=2, p=1.0, F=0.0, IG=0.311278,
              h=-0.785398, tf_term=-1.11, x=-1.89485, raw=-0.294912, K=-0.146397)]


def test_tooltip_carries_value_table_and_stats():
    cs = cells(token_html(["Ġx", "Ċ"], [0.272122, -0.146397], STATS))
    t0, t1 = cs[0]["title"], cs[1]["title"]
    assert "K = +0.272122" in t0 and "id 12" in t0 and "K = -0.146397" in t1 and "id 18" in t1
    rows0 = t0.splitlines()
    assert rows0[3].split() == ["correct", "2", "0"] and rows0[4].split() == ["wrong", "1", "1"]   # a c / b d
    assert t1.splitlines()[3].split() == ["correct", "1", "1"] and t1.splitlines()[4].split() == ["wrong", "2", "0"]
    assert "occurrences: correct 3, wrong 1" in t0
    assert "IG = 0.3113" in t0 and "h = 0.7854" in t0 and "raw = 0.5583" in t0 and "p = 1" in t0


def test_tooltip_from_dataframe_rows():
    import pandas as pd
    cs = cells(token_html(["a", "b"], [0.2, -0.1], pd.DataFrame(STATS)))
    assert "id 12" in cs[0]["title"] and "id 18" in cs[1]["title"]


def test_colours_follow_vmax_and_ink_contrast():
    cs = cells(token_html(["a", "b", "c"], [0.5, -1.0, 0.0], vmax=1.0))
    assert [bg(c) for c in cs] == score_colors([0.5, -1.0, 0.0], 1.0)
    assert "color:#ffffff" in cs[1]["style"] and "color:#000000" in cs[2]["style"]
    auto = cells(token_html(["a", "b"], [0.25, -0.5]))                           # vmax=None: largest |score|
    assert bg(auto[1]) == "#%02x%02x%02x" % KTAE_RED
    zero = cells(token_html(["a"], [0.0]))
    assert bg(zero[0]) == "#ffffff"


def test_legend_and_title():
    h = token_html(["a"], [0.1], title="rollout <3>", vmax=0.5, label="A")
    assert "rollout &lt;3&gt;" in h and "+0.5 rewarded" in h and "-0.5 punished" in h
    assert "ktae-legend" not in token_html(["a"], [0.1], legend=False)
    assert legend_html(2.0).count("display:inline-block") == 11


@pytest.mark.parametrize("tokens,scores,stats,msg", [
    (["a", "b"], [0.1], None, "one score per token"),
    (["a"], [0.1, 0.2], None, "one score per token"),
    (["a", "b"], [0.1, float("nan")], None, "NaN or infinite values at positions \\[1\\]"),
    ([], [], None, "empty"),
    (["a"], [[0.1]], None, "1-D"),
    (["a", "b"], [0.1, 0.2], [STATS[0]], "`stats` has 1 rows"),
])
def test_renderer_bad_input(tokens, scores, stats, msg):
    with pytest.raises(ValueError, match=msg): token_html(tokens, scores, stats)


def test_renderer_bad_types():
    with pytest.raises(TypeError, match="list of token strings"): token_html("abc", [0.1, 0.2, 0.3])
    with pytest.raises(TypeError, match="strings"): token_html([1, 2], [0.1, 0.2])
    with pytest.raises(TypeError, match="numbers"): token_html(["a"], ["x"])


def test_tokenview_repr_html_and_validation():
    v = TokenView(["Ġa", "Ġb"], torch.tensor([0.5, -0.5]), title="t")
    assert len(cells(v._repr_html_())) == 2 and "t" in repr(v)
    with pytest.raises(ValueError, match="NaN"): TokenView(["a"], [float("nan")])
    with pytest.raises(ValueError, match="`scores` has 2"): TokenView(["a"], [0.1, 0.2])


def test_stats_per_position():
    import pandas as pd
    t = pd.DataFrame(STATS)
    assert [r["token_id"] for r in stats_per_position(torch.tensor([18, 12, 18]), t)] == [18, 12, 18]
    with pytest.raises(ValueError, match="not in `table`"): stats_per_position([99], t)


# ---------------------------------------------------------------- the worked example (as in `12_ktae`) through the view
NAMES = {11: "Let", 12: "Ġx", 13: "Ġratio", 14: "Ġthus", 15: "First", 16: "Ġdenote", 17: "Ġwhere", 18: "Ċ",
         151645: "<|im_end|>", 151643: "<|endoftext|>"}
ROWS = [[11, 12, 13, 12, 18, 151645], [11, 13, 14, 12, 151645], [11, 15, 12, 16, 16, 18, 151645], [11, 15, 17, 18, 151645]]
K_REF = {11: 0.0, 12: 0.272122, 13: 1.0, 14: 1.0, 15: -1.0, 16: -1.0, 17: -1.0, 18: -0.146397, 151645: 0.0}


def write_worked_example(path, extra=()):
    "The worked example's group (padded with masked 151643 to length 8) as rollout JSONL, plus optional extra records."
    with open(path, "w") as f:
        for i, (ids, r) in enumerate(zip(ROWS, [1.0, 1.0, 0.0, 0.0])):
            pad = 8 - len(ids)
            ids_p = ids + [151643] * pad
            f.write(json.dumps(dict(group_id="g8", rollout_id=i, token_ids=ids_p, tokens=[NAMES[t] for t in ids_p],
                                    response_mask=[1] * len(ids) + [0] * pad, reward=r, prompt="worked example")) + "\n")
        for rec in extra: f.write(json.dumps(rec) + "\n")
    return path


@pytest.fixture
def worked(tmp_path):
    return write_worked_example(tmp_path / "worked.jsonl")


def test_worked_example_values_reach_colours_and_tooltips(worked):
    gv = explain_group(worked, "g8")
    assert isinstance(gv, GroupView) and gv.vmax == 1.0
    for j, ids in enumerate(ROWS):
        cs = cells(gv.views[j].to_html())
        assert len(cs) == len(ids)                                                # masked padding is not shown
        got = [float(c["data-score"]) for c in cs]
        np.testing.assert_allclose(got, [K_REF[t] for t in ids], atol=1e-5)
        assert [bg(c) for c in cs] == score_colors(got, 1.0)
        assert [c["text"] for c in cs] == [html.unescape(display_token(NAMES[t]).replace("<br>", "\n")) for t in ids]
        for c, t in zip(cs, ids): assert f"id {t}" in c["title"]
    t12 = cells(gv.views[0].to_html())[1]["title"].splitlines()                   # id 12: (a,b,c,d) = (2,1,0,1)
    assert t12[3].split() == ["correct", "2", "0"] and t12[4].split() == ["wrong", "1", "1"]
    # A = Â + K, Â = ±0.866024
    np.testing.assert_allclose(gv.rollout_advantages.numpy(), [0.866024, 0.866024, -0.866024, -0.866024], atol=1e-5)
    np.testing.assert_allclose(gv.advantages[0, :6].numpy(), [0.866024, 1.138146, 1.866024, 1.138146, 0.719627, 0.866024], atol=1e-5)
    assert (gv.advantages[~gv.response_mask] == 0).all()


def test_groupview_html_and_top_tokens(worked):
    gv = explain_group(worked)
    h = gv._repr_html_()
    assert "4 rollouts, 2 correct, 2 wrong" in h and len(cells(h)) == sum(map(len, ROWS))
    assert h.count("<tr>") == len(gv.top_tokens(8)) + 1 == 7 + 1                 # 7 ids with K != 0, plus the header
    top = gv.top_tokens(2)
    assert top.K.tolist()[:2] == sorted(top.K[top.K > 0], reverse=True)[:2] and (top.K != 0).all()
    assert set(top.token_id[top.K < 0]) <= {15, 16, 17, 18}
    assert "No key tokens" in top_tokens_html(gv.table.iloc[:0])


def test_explain_group_overrides_and_errors(worked):
    no_tf = explain_group(worked, preset="official", use_tf=False)
    np.testing.assert_allclose(no_tf.table.set_index("token_id").K.loc[[12, 13, 15]].to_numpy(),
                               [0.0610428, 0.532992, -0.532992], atol=1e-5)                   # the worked example with γ off
    with pytest.raises(ValueError, match="not in the rollouts"): explain_group(worked, "nope")
    with pytest.raises(FileNotFoundError): explain_group(worked.parent / "missing.jsonl")
    with pytest.raises(ValueError): explain_group(worked, preset="official", not_a_knob=1)


def test_malformed_line_names_line_number(tmp_path):
    p = write_worked_example(tmp_path / "bad.jsonl")
    with open(p, "a") as f: f.write("{this is not json\n")
    with pytest.raises(ValueError, match="line 5"): explain_group(p)


def test_empty_rollout_is_shown_as_empty(tmp_path):
    p = write_worked_example(tmp_path / "e.jsonl", [dict(group_id="g8", rollout_id=4, token_ids=[151643],
                                                          tokens=["<|endoftext|>"], response_mask=[0], reward=0.0)])
    gv = explain_group(p)
    assert gv.views[4] is None and "empty (no valid tokens)" in gv._repr_html_()


# ---------------------------------------------------------------- plots
def test_plot_top_tokens(worked):
    gv = explain_group(worked)
    fig, ax = plot_top_tokens(gv.table, n=2)
    k = sorted(p.get_width() for p in ax.patches)
    ref = sorted(gv.table.K[gv.table.K < 0].nsmallest(2).tolist() + gv.table.K[gv.table.K > 0].nlargest(2).tolist())
    np.testing.assert_allclose(k, ref)
    colors = {tuple(np.round(np.array(p.get_facecolor()[:3]) * 255).astype(int)) for p in ax.patches}
    assert colors == {KTAE_GREEN, KTAE_RED}
    _, ax2 = plot_top_tokens(gv.table, group="g8", n=1)
    assert len(ax2.patches) == 2
    _, ax3 = plot_top_tokens(gv.table.assign(K=0.0))
    assert len(ax3.patches) == 0 and "no key tokens" in ax3.get_title()


def test_plot_k_distribution(worked):
    gv = explain_group(worked)
    fig, ax = plot_k_distribution(gv.K, gv.response_mask, gv.rewards)
    assert len(ax.patches) == 2                                                    # one filled histogram per class
    counts = [int(re.search(r"\((\d+) tokens", t.get_text()).group(1)) for t in ax.get_legend().get_texts()]
    assert counts == [11, 12]                                                      # T_c = 11, T_w = 12 valid tokens
    top = max(p.get_path().vertices[:, 1].max() for p in ax.patches)
    assert top == 5 and ax.get_ylim()[1] >= 1.3 * top - 1e-9                       # tallest bin (K = -1 in wrong rollouts), headroom
    with pytest.raises(ValueError, match="does not match"): plot_k_distribution(gv.K, gv.response_mask[:, :2], gv.rewards)
    with pytest.raises(ValueError, match="one entry per row"): plot_k_distribution(gv.K, gv.response_mask, gv.rewards[:2])


def test_plot_rollout_advantage(worked):
    gv = explain_group(worked)
    m = gv.response_mask[2]
    fig, ax = plot_rollout_advantage(gv.advantages[2][m], float(gv.rollout_advantages[2]), gv.views[2].tokens)
    heights = [p.vertices[1, 1] for p in ax.collections[0].get_paths()]          # one rectangle per position
    np.testing.assert_allclose(heights, gv.advantages[2][m].numpy(), atol=1e-6)
    assert [l.get_ydata()[0] for l in ax.lines][0] == pytest.approx(-0.866024, abs=1e-5)
    assert [t.get_text() for t in ax.get_xticklabels()][:3] == ["Let", "First", "·x"]     # token_text, spaces shown
    with pytest.raises(ValueError, match="`tokens` has 1"): plot_rollout_advantage([0.1, 0.2], 0.0, ["a"])
    with pytest.raises(ValueError, match="NaN"): plot_rollout_advantage([0.1, float("nan")], 0.0)


def test_plot_contingency():
    fig, ax = plot_contingency(dict(token="Ġx", token_id=12, a=2, b=1, c=0, d=1, K=0.272122, p=1.0, IG=0.311))
    assert [t.get_text() for t in ax.texts] == ["2", "0", "1", "1"]
    assert "token ·x: K = +0.272" in ax.get_title()
    with pytest.raises(ValueError, match="a, b, c, d"): plot_contingency(dict(a=1))


def test_figures_inline_png(worked):
    fig = agg_figure(); fig.subplots().plot([0, 1])
    h = figure_html(fig, "x")
    import base64
    png = base64.b64decode(re.search(r"base64,([^\"]+)", h).group(1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    fh = group_figures_html(explain_group(worked))
    assert fh.count("data:image/png;base64,") == 1 and "http" not in fh                      # one figure, four plots


# ---------------------------------------------------------------- EpicPRM annotation view
from types import SimpleNamespace
from ktae_lab.viz import annotation_html, annotation_steps, plot_search_path, AnnotationView, STEP_COLORS

STEPS = ["Tom has 12 apples.", "He buys 7: 12 + 7 = 19.", "He gives <5> away.", "So we subtract.", "19 + 5 = 24.", "The answer is 24."]
PROBES = [dict(step=2, estimate=0.58, count_estimate=0.56, rollouts=32, tokens=4000, lo=0, hi=4, is_error=False),
          dict(step=4, estimate=0.02, count_estimate=0.03, rollouts=32, tokens=4000, lo=3, hi=4, is_error=True),
          dict(step=3, estimate=0.55, count_estimate=0.50, rollouts=32, tokens=4000, lo=3, hi=3, is_error=False)]
REC = dict(id="r", method="epic_adaptive", status="ok", labels=[1, 1, 1, 1, 0, 0], first_error=4, rollouts=96, tokens=12000,
           baseline=dict(k=16, v0=0.62), probes=PROBES, steps=[dict(text=t, rating=None) for t in STEPS])


def step_divs(h):
    return re.findall(r"<div class='ktae-step' data-label='(\d?)' title='([^']*)' style='background:(#\w+)", h)


def test_annotation_steps_coloured_by_label():
    d = step_divs(annotation_html(REC))
    assert [x[0] for x in d] == ["1", "1", "1", "1", "0", "0"]
    assert [x[2] for x in d] == [STEP_COLORS[1]] * 4 + [STEP_COLORS["first"], STEP_COLORS[0]]
    h = annotation_html(REC)
    assert "He gives &lt;5&gt; away." in h and "<5>" not in h
    assert h.count("← first error") == 1 and "first error at step 4" in h and "V0 = 0.620 (k = 16)" in h


def test_annotation_probes_and_path():
    h = annotation_html(REC)
    chips = re.findall(r"class='ktae-probe'[^>]*>([^<]*)</span>", h)
    assert chips == ["#1 step 2 [0–4] V=0.580 fine", "#2 step 4 [3–4] V=0.020 error", "#3 step 3 [3–3] V=0.550 fine"]
    assert "[probe #2: V=0.020 → error]" in h and "[probe #3: V=0.550 → fine]" in h


def test_annotation_objects_render_like_records():
    obj = SimpleNamespace(method="epic_adaptive", status="ok", labels=REC["labels"], first_error=4, rollouts=96, tokens=12000,
                          soft_labels=None, baseline=SimpleNamespace(k=16, v0=0.62),
                          probes=[SimpleNamespace(**p) for p in PROBES])
    assert annotation_html(obj, STEPS) == annotation_html(REC)


def test_annotation_special_cases_and_errors():
    skipped = dict(REC, status="skipped", labels=None, first_error=None, probes=[])
    h = annotation_html(skipped)
    assert "Skipped" in h and [x[0] for x in step_divs(h)] == [""] * 6 and "none found" in h
    soft = annotation_html(dict(REC, method="math_shepherd", soft_labels=[0.9, 0.8, 0.7, 0.6, 0.0, 0.0]))
    assert "soft label 0.600" in soft
    with pytest.raises(ValueError, match="6 labels but there are 2 steps"): annotation_html(REC, ["a", "b"])
    with pytest.raises(ValueError, match="`steps` is required"): annotation_html(dict(labels=[1]))
    with pytest.raises(ValueError, match="empty"): annotation_steps(dict(labels=None), [])
    with pytest.raises(TypeError, match="strings"): annotation_steps(dict(labels=None), [1, 2])


def test_plot_search_path():
    fig, ax = plot_search_path(REC)
    assert ax.collections[0].get_offsets().tolist() == [[2.0, 0.58], [4.0, 0.02], [3.0, 0.55]]
    cols = [tuple(np.round(c[:3] * 255).astype(int)) for c in ax.collections[0].get_facecolors()]
    assert cols == [KTAE_GREEN, KTAE_RED, KTAE_GREEN]
    assert any(l.get_ydata()[0] == 0.62 for l in ax.lines if len(l.get_ydata()) == 2 and l.get_linestyle() == "--")
    span = ax.patches[0]                                                          # the first-error column
    assert (span.get_x(), span.get_x() + span.get_width()) == pytest.approx((3.5, 4.5))
    _, ax2 = plot_search_path(dict(REC, probes=[], first_error=None))
    assert len(ax2.collections) == 0


def test_annotation_view():
    v = AnnotationView(REC)
    assert v.steps == STEPS and v.probes().index.tolist() == [1, 2, 3] and v.probes().is_error.tolist() == [False, True, False]
    assert len(step_divs(v._repr_html_())) == 6 and "3 probes" in repr(v)


def test_explain_groups_batched_equals_one_by_one(tmp_path):
    from ktae_lab.viz import explain_groups
    from ktae_lab.data import sample_rollouts_path
    views = explain_groups(sample_rollouts_path(), preset="official", beta=2.0)
    assert [v.group for v in views] == [f"sample-{i}" for i in range(5)]
    for v in views:
        one = explain_group(sample_rollouts_path(), v.group, beta=2.0)
        assert torch.equal(v.K, one.K) and torch.equal(v.advantages, one.advantages) and v.rows == one.rows
        assert v.table.equals(one.table)
        assert [w.to_html() for w in v.views] == [w.to_html() for w in one.views]
    assert (views[4].K == 0).all() and (views[4].advantages == 0).all()           # the all-correct group
    two = explain_groups(sample_rollouts_path(), ["sample-3", "sample-1"])
    assert [v.group for v in two] == ["sample-3", "sample-1"]
    with pytest.raises(ValueError, match="not in the rollouts"): explain_groups(sample_rollouts_path(), ["x"])


# ---------------------------------------------------------------- the estimator: one KTAE advantage function
from ktae_lab.advantages import ESTIMATORS, outcome_advantages
from ktae_lab.data import to_batch
from ktae_lab.ktae import ktae_advantages
import ktae_lab.viz as viz


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_group_view_uses_the_chosen_estimator(worked, estimator):
    gv = explain_group(worked, "g8", estimator=estimator)
    b = to_batch(worked)
    want = ktae_advantages(b.responses, b.response_mask, b.rewards, index=list(b.index), estimator=estimator)
    L = gv.advantages.shape[1]
    torch.testing.assert_close(gv.advantages, want[:, :L])
    torch.testing.assert_close(gv.rollout_advantages, outcome_advantages(b.rewards, list(b.index), None, estimator).to(gv.rollout_advantages.dtype))
    assert gv.estimator == estimator and f"Â ({estimator})" in gv.views[0].title


def test_estimators_change_the_baseline_not_k(worked):
    g, r = explain_group(worked, estimator="grpo"), explain_group(worked, estimator="dr_grpo")
    assert torch.equal(g.K, r.K)
    np.testing.assert_allclose(r.rollout_advantages.numpy(), [0.5, 0.5, -0.5, -0.5])    # Dr. GRPO: r - mean, no std
    assert not torch.allclose(g.advantages, r.advantages)


def test_advantage_comes_from_ktae_advantages(worked, monkeypatch):
    "viz computes no KTAE advantage itself: it asks the one function, with the estimator it was given."
    calls = []
    real = viz.ktae_advantages
    monkeypatch.setattr(viz, "ktae_advantages", lambda *a, **k: calls.append(k) or real(*a, **k))
    explain_groups = viz.explain_groups
    explain_groups(worked, estimator="rloo", beta=2.0)
    assert len(calls) == 1 and calls[0]["estimator"] == "rloo" and calls[0]["beta"] == 2.0


def test_explain_groups_checks_its_inputs(worked):
    with pytest.raises(ValueError, match="estimator"): explain_group(worked, estimator="ppo")
    from types import SimpleNamespace
    b = to_batch(worked)
    bad = SimpleNamespace(responses=b.responses, response_mask=b.response_mask, rewards=torch.tensor([1.0, float("nan"), 0.0, 0.0]),
                          index=list(b.index), tokens=None, frame=None)
    with pytest.raises(ValueError, match="rewards"): explain_group(bad, "g8")
    bad = SimpleNamespace(responses=b.responses.float(), response_mask=b.response_mask, rewards=b.rewards, index=list(b.index),
                          tokens=None, frame=None)
    with pytest.raises(TypeError, match="responses"): explain_group(bad, "g8")


def test_one_class_group_says_no_contrast(tmp_path):
    p = write_worked_example(tmp_path / "w.jsonl", [dict(group_id="flat", rollout_id=i, token_ids=[11, 13], tokens=["Let", "Ġratio"],
                                                           reward=0.0) for i in range(3)])
    gv = explain_group(p, "flat")
    assert "no contrast, K = 0 (all wrong)" in gv.summary() and (gv.K == 0).all() and (gv.advantages == 0).all()
    assert "No plots: no contrast, K = 0 (all wrong)" in group_figures_html(gv)
    assert "no contrast" not in explain_group(p, "g8").summary()


# ---------------------------------------------------------------- token text: one owner, safe in plots
from ktae_lab.viz import token_text, plot_text, tooltip_parts, tooltip_text, tooltip_table_html, compact_token_html


@pytest.mark.parametrize("tok,text", [("Ġratio", " ratio"), ("Ċ", "↵"), ("ĠĠ", "␣␣"), ("ĉx", "⇥x"), ("", "∅"), ("<b>", "<b>")])
def test_token_text(tok, text):
    assert token_text(tok) == text
    assert html.unescape(display_token(tok).replace("<br>", "")) == text                 # the HTML form shows the same text


MATH_TOKENS = ["$$", "$x$", "Ġ$\\frac{1}{2}$", "\\$", "$", "$$$", "a$b$c"]


def test_dollar_tokens_do_not_break_plots():
    "Tokens with '$' would be parsed as mathtext (and '$$' raises); every plot escapes them and still draws."
    import pandas as pd
    n = len(MATH_TOKENS)
    table = pd.DataFrame(dict(token=MATH_TOKENS, token_id=range(n), K=np.linspace(-1, 1, n), a=1, b=1, c=1, d=1, p=0.5))
    for draw in (lambda ax: plot_top_tokens(table, n=n, ax=ax),
                 lambda ax: plot_rollout_advantage(np.linspace(-1, 1, n), 0.1, MATH_TOKENS, ax=ax),
                 lambda ax: plot_contingency(table.iloc[0], ax=ax)):
        fig = agg_figure((8, 4)); ax = fig.subplots(); draw(ax)
        assert figure_html(fig).count("base64,") == 1                                  # rendering it raises nothing
    fig = agg_figure(); ax = fig.subplots(); plot_top_tokens(table, n=n, ax=ax)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "\\$\\$" in labels and all(not t._preprocess_math(t.get_text())[1] for t in ax.get_yticklabels())   # no mathtext
    assert plot_text("$$") == "\\$\\$" and plot_text("a") == "a"


def test_unescaped_dollars_do_break_matplotlib():
    "Control: the escaping above is needed, a raw '$$' label cannot be drawn."
    fig = agg_figure(); ax = fig.subplots(); ax.set_title("$$")
    with pytest.raises(ValueError): figure_html(fig)


def test_plot_fonts_at_least_9pt(worked):
    gv = explain_group(worked)
    fig = agg_figure((13, 7))
    axs = fig.subplots(2, 2)
    plot_top_tokens(gv.table, ax=axs[0, 0]); plot_k_distribution(gv.K, gv.response_mask, gv.rewards, ax=axs[0, 1])
    plot_rollout_advantage(gv.advantages[0][gv.response_mask[0]], float(gv.rollout_advantages[0]), gv.views[0].tokens, ax=axs[1, 0])
    plot_search_path(REC, ax=axs[1, 1])
    sizes = [t.get_fontsize() for t in fig.findobj(lambda o: hasattr(o, "get_fontsize") and hasattr(o, "get_text") and o.get_text())]
    assert sizes and min(sizes) >= 9


def test_search_path_threshold_and_interval_legend():
    fig, ax = plot_search_path(REC)
    dotted = [l for l in ax.lines if l.get_linestyle() == ":"]
    assert len(dotted) == 1 and dotted[0].get_ydata()[0] == pytest.approx(0.5 * 0.62)
    labels = ax.get_legend().get_texts()
    names = [t.get_text() for t in labels]
    assert "error threshold 0.5 × V0 = 0.31" in names and any(n.startswith("search interval") for n in names)
    assert "prefix judged an error" in names and "prefix judged fine" in names
    _, ax2 = plot_search_path(REC, alpha=0.25)
    assert [l for l in ax2.lines if l.get_linestyle() == ":"][0].get_ydata()[0] == pytest.approx(0.25 * 0.62)
    _, ax3 = plot_search_path(dict(REC, baseline=None))                                  # no V0: no threshold to draw
    assert not [l for l in ax3.lines if l.get_linestyle() == ":"]


def test_annotation_summary_is_prose():
    v = AnnotationView(REC)
    assert v.summary() == "6 steps: first error at step 4, by epic_adaptive with 3 probes, 96 rollouts, 12,000 tokens."
    assert "no error found" in AnnotationView(dict(REC, first_error=None)).summary()
    assert "skipped" in AnnotationView(dict(REC, status="skipped", labels=None, first_error=None)).summary()


# ---------------------------------------------------------------- compact cells: each group's table written once
def json_table(h, uid):
    return json.loads(re.search(rf'<script type="application/json" id="ktae-tab-{uid}">(.*?)</script>', h, re.S).group(1))


def test_tooltip_table_and_compact_cells_carry_the_title_tooltips(worked):
    gv = explain_group(worked)
    h = gv.to_html(uid="7")
    rows = json_table(h, "7")
    assert len(rows) == len(gv.table)
    for j, v in enumerate(gv.views):                      # every compact cell's tooltip = the title tooltip of the same token
        titles = [c["title"] for c in cells(v.to_html())]
        part = re.findall(r'<div class="ktae-tokens">(.*?)</div>', h)[j]
        idx = [int(i) for i in re.findall(r'data-t="(\d+)"', part)]
        assert [tooltip_text(rows[i]) for i in idx] == titles
    assert 'id=ktae-g7 data-tab=7' in h and 'class="ktae-tok"' not in h and ' title=' not in h.split("<style>#ktae-g7")[1]   # no per-cell style or title
    rules = dict(re.findall(r'#ktae-g7 \[data-t="(\d+)"\]\{background:(#[0-9a-f]{6})', h))
    K = gv.table.K.to_numpy()
    assert {int(i): c for i, c in rules.items()} == {i: c for i, (c, k) in enumerate(zip(score_colors(K, gv.vmax), K)) if k != 0}


def test_tooltip_table_escapes_and_checks():
    import pandas as pd
    t = pd.DataFrame([dict(STATS[0], token="</script><script>alert(1)</script>")])
    h = tooltip_table_html(t, "x1")
    assert h.count("</script>") == 1 and json.loads(re.search(r">(\[.*\])<", h).group(1))[0][0].startswith("'</script>")
    with pytest.raises(ValueError, match="uid"): tooltip_table_html(t, 'a" onmouseover="x')
    with pytest.raises(ValueError, match="missing from the group's table"): compact_token_html(["a"], [-1])
    with pytest.raises(ValueError, match="`rows` has 2"): compact_token_html(["a"], [0, 1])
    assert tooltip_text(tooltip_parts("a", -0.5)) == "'a'\nK = -0.500000"


def _texts_outside(fig):
    "Texts of a drawn figure whose box sticks out of the figure (a cut label)."
    fig.canvas.draw()
    r = fig.canvas.get_renderer(); W, H = fig.bbox.width, fig.bbox.height
    out = []
    for t in fig.findobj(lambda o: hasattr(o, "get_window_extent") and hasattr(o, "get_text") and o.get_text() and o.get_visible()):
        b = t.get_window_extent(r)
        if b.x0 < -1 or b.y0 < -1 or b.x1 > W + 1 or b.y1 > H + 1: out.append(t.get_text())
    return out


def test_group_figure_holds_its_labels(tmp_path):
    "The fixed layout (no bbox_inches='tight') is sized from the labels: long and '$' tokens stay inside the image."
    from ktae_lab.viz import group_figure
    long = ["Ġsupercalifragilistic", "Ġ$$", "Ġ\\frac{1}{2}", "ĊĊ", "Ġx"]
    recs = [dict(group_id="long", rollout_id=i, token_ids=ids, tokens=[long[t - 1] for t in ids], reward=r)
            for i, (ids, r) in enumerate([([1, 2, 5], 1.0), ([1, 3, 5], 1.0), ([4, 5], 0.0), ([4, 2], 0.0)])]
    p = tmp_path / "long.jsonl"; p.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    fig = group_figure(explain_group(p, "long"))
    assert _texts_outside(fig) == []
    fig = group_figure(explain_group(write_worked_example(tmp_path / "w.jsonl"), "g8"))
    assert _texts_outside(fig) == []


def test_cut_label_detector_catches_a_cut_label():
    "Control: a label placed past the edge is reported."
    fig = agg_figure((3, 2)); ax = fig.add_axes((0.0, 0.2, 0.8, 0.7))
    ax.set_yticks([0], ["a very long label that cannot fit"])
    assert "a very long label that cannot fit" in _texts_outside(fig)


# ---------------------------------------------------------------- no view renders markup from data (a real browser)
XSS = "<img src=x onerror=\"document.title='PWNED'\"><script>document.title='PWNED'</script>"
HOSTILE = dict(REC, id=XSS, method=XSS, status=XSS, error=XSS, baseline=dict(k=XSS, v0=0.62),
               probes=[dict(p, step=XSS if i == 0 else p["step"], lo=XSS, hi=XSS, rollouts=XSS) for i, p in enumerate(PROBES)],
               steps=[dict(text=XSS) for _ in STEPS])


def hostile_pages():
    "Every HTML builder of 30_viz, 31_report and 32_widgets fed a hostile record: {name: HTML}."
    import pandas as pd
    from ktae_lab.viz import AnnotationView, explain_group, top_tokens_html, legend_html
    from ktae_lab.widgets import AnnotationExplorer, KeyTokenExplorer
    from ktae_lab.report import report_html
    pages = {"annotation_html": annotation_html(HOSTILE, title=XSS), "AnnotationView": AnnotationView(HOSTILE).to_html(),
             "legend_html": legend_html(1.0, XSS)}
    ax = AnnotationExplorer([HOSTILE], show_plot=True)
    pages["AnnotationExplorer"] = ax.status.value + ax.steps_view.value + ax.plot.value + ax.probes_view.value
    rows = [dict(group_id=XSS, rollout_id=None, prompt=XSS, token_ids=[5, 6, 7] if i < 3 else [5],
                 tokens=[XSS, "a", "</script>"] if i < 3 else [XSS], response_mask=[1, 1, 1] if i < 3 else [0],
                 reward=float(i % 2), model=XSS) for i in range(4)]
    df = pd.DataFrame(rows)
    gv = explain_group(df, XSS)
    pages["GroupView"] = gv.to_html(top=3) + gv.to_html(top=3, uid="0")
    pages["top_tokens_html"] = top_tokens_html(gv.top_tokens(3))
    pages["report_html"] = report_html(df, title=XSS, plots=False)
    kx = KeyTokenExplorer(df, show_plots=False)
    pages["KeyTokenExplorer"] = kx.token_view.value + kx.table_view.value + kx.status.value if hasattr(kx, "status") else kx.token_view.value + kx.table_view.value
    return pages


def test_hostile_records_are_escaped_in_every_builder():
    for name, page in hostile_pages().items():
        assert "<script>document" not in page and "<img src=x" not in page, name
        assert "&lt;img src=x" in page or name in ("legend_html",) or "&lt;script&gt;" in page, name


@pytest.mark.skipif(__import__("shutil").which("chromedriver") is None or __import__("importlib").util.find_spec("selenium") is None,
                    reason="needs Chromium, its driver and selenium")
def test_no_script_runs_from_a_hostile_record_in_chromium(tmp_path):
    from test_report import selenium_driver
    from selenium.webdriver.common.by import By
    d = selenium_driver()
    try:
        for name, body in hostile_pages().items():
            page = tmp_path / f"{name}.html"      # no CSP here: only the escaping stands between the record and the browser
            page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>safe</title></head><body>{body}</body></html>")
            d.get(page.resolve().as_uri())
            assert d.title == "safe", f"{name}: a script from the record ran"
            assert not d.find_elements(By.CSS_SELECTOR, "img[src=x]"), f"{name}: markup from the record was rendered"
            assert "<img src=x" in d.find_element(By.TAG_NAME, "body").text or name == "legend_html" or "<script>" in d.find_element(By.TAG_NAME, "body").text, name
    finally:
        d.quit()
