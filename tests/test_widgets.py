"""Drive every control of `KeyTokenExplorer` by setting `.value` and check the views follow; errors show in place."""
import html, json, math, re

import numpy as np
import pytest

from ktae_lab.ktae import PRESETS
from ktae_lab.viz import explain_group, score_colors
import ktae_lab.widgets as widgets
from ktae_lab.widgets import KeyTokenExplorer, parse_ids, order_by_abs_k
from ktae_lab.viz import token_text
from test_viz import ROWS, NAMES, write_worked_example, cells, bg

# the worked example's second case (`12_ktae`): id 12 at table (1, 1, 1, 1): exact p = 1, so K(12) = 0 in the official preset
ROWS82 = [[11, 12, 13, 12, 151645], [11, 13, 14, 151645], [11, 15, 12, 16, 16, 151645], [11, 15, 17, 151645]]


@pytest.fixture
def path(tmp_path):
    extra = [dict(group_id="g82", rollout_id=i, token_ids=ids, tokens=[NAMES[t] for t in ids], reward=r)
             for i, (ids, r) in enumerate(zip(ROWS82, [1.0, 1.0, 0.0, 0.0]))]
    return write_worked_example(tmp_path / "two_groups.jsonl", extra)


@pytest.fixture
def ex(path):
    return KeyTokenExplorer(path, show_plots=False)


def K_of(ex, tid): return float(ex.table.set_index("token_id").K.loc[tid])


def status(ex): return html.unescape(ex.status.value)


def scores(ex): return [float(c["data-score"]) for c in cells(ex.token_view.value)]


def test_initial_state(ex):
    assert ex.error is None and ex.group.value == "g8" and ex.rollout.value == 0
    assert "g8" in status(ex) and "4 rollouts, 2 correct, 2 wrong" in status(ex)
    np.testing.assert_allclose(scores(ex), [0, 0.272122, 1, 0.272122, -0.146397, 0], atol=1e-5)
    assert len(ex.table) == 9 and "<table" in ex.table_view.value
    assert [ex.alpha.value, ex.beta.value, ex.gamma.value, ex.top.value] == [1.0, 1.0, 1.0, 1.0]
    assert "application/vnd.jupyter.widget-view+json" in ex._repr_mimebundle_()


def test_group_control(ex):
    before = ex.token_view.value
    ex.group.value = "g82"
    assert "Group 'g82'" in status(ex) and ex.token_view.value != before
    assert K_of(ex, 12) == 0.0                                      # exact Fisher: p = 1 -> F = 0, IG = 0, h = 0 ... K = 0
    assert len(scores(ex)) == len(ROWS82[0])
    ex.group.value = "g8"
    assert K_of(ex, 12) == pytest.approx(0.272122, abs=1e-5)


def test_rollout_control(ex):
    ex.rollout.value = 2
    assert "rollout 2 · reward 0 · wrong" in ex.token_view.value
    ref = explain_group(ex.batch, "g8")
    np.testing.assert_allclose(scores(ex), ref.K[2][ref.response_mask[2]].numpy(), atol=1e-6)
    assert [c["text"] for c in cells(ex.token_view.value)][1] == "First"


def test_preset_control_resets_knobs_with_one_recomputation(ex, monkeypatch):
    ex.alpha.value, ex.use_tf.value = 3.0, False
    calls = []
    real = widgets.explain_group
    monkeypatch.setattr(widgets, "explain_group", lambda *a, **k: calls.append(k) or real(*a, **k))
    ex.preset.value = "clean"
    assert len(calls) == 1 and ex.alpha.value == PRESETS["clean"].alpha and ex.use_tf.value is True
    ref = explain_group(ex.batch, "g8", "clean").table.set_index("token_id").K
    np.testing.assert_allclose(ex.table.set_index("token_id").K.loc[ref.index], ref, atol=1e-7)
    off = explain_group(ex.batch, "g8", "official").table.set_index("token_id").K
    assert not np.allclose(ref.to_numpy(), off.loc[ref.index].to_numpy())     # the preset really changed the values


@pytest.mark.parametrize("alpha,beta", [(0.0, 1.0), (2.5, 1.0), (1.0, 0.0), (1.0, 3.0)])
def test_alpha_beta_sliders(ex, alpha, beta):
    ex.alpha.value, ex.beta.value = alpha, beta
    t = ex.table
    np.testing.assert_allclose(t.raw, (alpha * t.F + beta * t.IG) * t.x / (alpha + beta), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(t.K, np.tanh(t.raw / 2), atol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_gamma_slider(ex, gamma):
    ex.gamma.value = gamma
    t = ex.table
    np.testing.assert_allclose(t.x, t.h + gamma * t.tf_term, rtol=1e-6, atol=1e-9)


def test_top_slider_scales_values_and_colour_scale(ex):
    k1 = ex.table.set_index("token_id").K
    ex.top.value = 0.5
    k05 = ex.table.set_index("token_id").K
    np.testing.assert_allclose(k05.loc[k1.index], 0.5 * k1, atol=1e-7)
    s = scores(ex)
    assert [bg(c) for c in cells(ex.token_view.value)] == score_colors(s, 0.5)   # the scale follows top
    assert "+0.5 rewarded" in ex.token_view.value


@pytest.mark.parametrize("name,check", [
    ("use_fisher", lambda t: np.allclose(t.raw, t.IG * t.x, atol=1e-9)),
    ("use_ig", lambda t: np.allclose(t.raw, t.F * t.x, atol=1e-9)),
    ("use_h", lambda t: np.allclose(t.x, t.tf_term, atol=1e-9)),
    ("use_tf", lambda t: np.allclose(t.x, t.h, atol=1e-9) and t.K.abs().max() <= math.tanh(math.pi / 4) + 1e-6),
])
def test_component_toggles(ex, name, check):
    before = ex.table.K.to_numpy().copy(); view_before = ex.token_view.value
    getattr(ex, name).value = False
    assert ex.error is None and check(ex.table)
    assert not np.allclose(ex.table.sort_index().K.to_numpy(), before) or ex.token_view.value != view_before
    getattr(ex, name).value = True
    assert ex.error is None


def test_ignore_ids_text(ex):
    ex.ignore_ids.value = "12, 18"
    assert K_of(ex, 12) == 0.0 and K_of(ex, 18) == 0.0 and K_of(ex, 13) == pytest.approx(1.0)
    np.testing.assert_allclose(scores(ex), [0, 0, 1, 0, 0, 0], atol=1e-6)
    assert parse_ids(ex.ignore_ids.value) == (12, 18)


def test_colour_by_advantage(ex):
    ex.color_by.value = "A"
    ref = explain_group(ex.batch, "g8")
    np.testing.assert_allclose(scores(ex), ref.advantages[0][ref.response_mask[0]].numpy(), atol=1e-6)
    assert "A = Â + K" in ex.token_view.value
    ex.color_by.value = "K"
    np.testing.assert_allclose(scores(ex)[1], 0.272122, atol=1e-5)


def test_sort_controls(ex):
    for key in ["K", "p", "IG", "count_wrong", "token_id"]:
        for asc in (True, False):
            ex.sort_by.value, ex.ascending.value = key, asc
            col = ex.table[key].to_numpy()
            assert (np.diff(col) >= 0).all() if asc else (np.diff(col) <= 0).all(), (key, asc)
    ex.sort_by.value, ex.ascending.value = "|K|", False
    assert (np.diff(ex.table.K.abs().to_numpy()) <= 0).all()
    first = re.search(r"<tbody>\s*<tr>\s*<td>([^<]*)</td>", ex.table_view.value).group(1)
    assert html.unescape(first).strip() == token_text(ex.table.token.iloc[0]).strip()   # the table shows tokens as the view does


def test_plots_toggle_and_token_control(path):
    ex = KeyTokenExplorer(path, show_plots=True)
    imgs = lambda: re.findall(r'alt="(\w+)"', ex.plots.value)
    assert imgs() == ["top", "dist", "adv", "token"]
    pngs = lambda: dict(zip(imgs(), re.findall(r'base64,([^"]+)', ex.plots.value)))
    p0 = pngs()
    ex.token.value = 18                                                   # another token's contingency table
    p1 = pngs()
    assert p1["token"] != p0["token"] and p1["top"] == p0["top"] and p1["adv"] == p0["adv"]
    ex.rollout.value = 3                                                  # another rollout's advantages
    p2 = pngs()
    assert p2["adv"] != p1["adv"] and p2["token"] == p1["token"]
    ex.beta.value = 0.0                                                   # a knob redraws every plot
    p3 = pngs()
    assert p3["top"] != p2["top"] and p3["dist"] != p2["dist"]
    ex.show_plots.value = False
    assert ex.plots.value == ""
    ex.show_plots.value = True
    assert imgs() == ["top", "dist", "adv", "token"]


def test_token_options_follow_the_group(ex):
    ids = [v for _, v in ex.token.options]
    assert set(ids) == set(ex.table.token_id) and ids[0] in (13, 14, 15, 16, 17)     # strongest |K| first
    ex.group.value = "g82"
    assert set(v for _, v in ex.token.options) == set(ex.table.token_id)


def test_bad_ignore_ids_shows_error_in_place_and_recovers(ex):
    ex.ignore_ids.value = "12, oops"
    assert ex.error and "comma-separated integers" in status(ex) and "⚠" in status(ex)
    assert ex.token_view.value == "" and ex.table_view.value == ""
    ex.ignore_ids.value = "-3"
    assert ">= 0" in status(ex)
    ex.ignore_ids.value = ""
    assert ex.error is None and len(scores(ex)) == 6


def test_engine_errors_show_in_place(ex, monkeypatch):
    def boom(*a, **k): raise RuntimeError("engine exploded")
    monkeypatch.setattr(widgets, "explain_group", boom)
    ex.alpha.value = 2.0
    assert "RuntimeError: engine exploded" in status(ex) and ex.token_view.value == ""


def test_malformed_file_shows_error_with_line_number(tmp_path):
    p = write_worked_example(tmp_path / "bad.jsonl")
    with open(p, "a") as f: f.write("{oops\n")
    ex = KeyTokenExplorer(p)
    assert ex.batch is None and "line 5" in status(ex) and ex.token_view.value == ""
    ex.alpha.value = 2.0                                                  # controls still answer, with the same error
    assert "line 5" in status(ex)


def test_missing_file_and_bad_preset(tmp_path):
    ex = KeyTokenExplorer(tmp_path / "nope.jsonl")
    assert "not found" in status(ex)
    with pytest.raises(ValueError, match="unknown `preset`"): KeyTokenExplorer(tmp_path / "nope.jsonl", preset="fancy")
    with pytest.raises(ValueError, match="unknown `estimator`"): KeyTokenExplorer(tmp_path / "nope.jsonl", estimator="ppo")


def test_empty_rollout_in_group(tmp_path):
    p = write_worked_example(tmp_path / "e.jsonl", [dict(group_id="g8", rollout_id=4, token_ids=[151643],
                                                          tokens=["<|endoftext|>"], response_mask=[0], reward=0.0)])
    ex = KeyTokenExplorer(p, show_plots=True)
    ex.rollout.value = 4
    assert "empty rollout" in ex.token_view.value and ex.error is None
    assert re.findall(r'alt="(\w+)"', ex.plots.value) == ["top", "dist", "token"]


# ---------------------------------------------------------------- EpicPRM annotation explorer
from ktae_lab.widgets import AnnotationExplorer, load_annotation_records
from test_viz import REC, STEPS, step_divs

RIGHT = dict(id="right", method="epic_adaptive", status="ok", labels=[1, 1, 1], first_error=None, probes=[],
             steps=[dict(text=t) for t in ["12 + 7 = 19.", "19 - 5 = 14.", "The answer is 14."]])


def test_annotation_explorer_switches_solutions():
    ax = AnnotationExplorer([REC, RIGHT], show_plot=True)
    assert status(ax) == "<b>6 steps: first error at step 4, by epic_adaptive with 3 probes, 96 rollouts, 12,000 tokens.</b>"
    assert ax.probes.step.tolist() == [2, 4, 3]
    assert [x[0] for x in step_divs(ax.steps_view.value)] == ["1"] * 4 + ["0"] * 2
    assert ax.plot.value.startswith("<img") and "<table" in ax.probes_view.value
    first_plot = ax.plot.value
    ax.record.value = 1
    assert "3 steps: no error found" in status(ax) and len(step_divs(ax.steps_view.value)) == 3
    assert "no probes" in ax.probes_view.value and ax.plot.value != first_plot
    ax.show_plot.value = False
    assert ax.plot.value == ""
    assert [lbl for lbl, _ in ax.record.options] == ["r · epic_adaptive · first error at step 4", "right · epic_adaptive · no error found"]


def test_annotation_explorer_from_jsonl_and_dataframe(tmp_path):
    import pandas as pd
    p = tmp_path / "ann.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [REC, RIGHT]) + "\n")
    assert len(load_annotation_records(p)) == 2
    ax = AnnotationExplorer(p, show_plot=False)
    assert ax.error is None and len(ax.record.options) == 2
    ax2 = AnnotationExplorer(pd.DataFrame([REC, RIGHT]), show_plot=False)
    assert ax2.steps_view.value == ax.steps_view.value


def test_annotation_explorer_errors_in_place(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(REC) + "\n" + '{"id": "torn", "labels": [1\n')
    with pytest.raises(ValueError, match="line 2"): load_annotation_records(p)
    ax = AnnotationExplorer(p)
    assert "line 2" in status(ax) and ax.steps_view.value == "" and ax.view is None
    ax = AnnotationExplorer([dict(REC, labels=[1, 0])], show_plot=False)
    assert "2 labels but there are 6 steps" in status(ax)
    ax = AnnotationExplorer([REC], steps=[STEPS, STEPS])
    assert "`steps` has 2 entries" in status(ax)
    ax = AnnotationExplorer([])
    assert "no annotations" in status(ax)


def test_annotation_explorer_on_real_epicprm_annotations(tmp_path):
    from ktae_lab import epicprm, simulator
    sp = simulator.simulate_problems(4, simulator.SimConfig(min_steps=6, max_steps=10), seed=3)
    wrong = sp.solutions[~sp.solutions.correct].head(3)
    comp = sp.completer()
    anns = [epicprm.annotate(r.question, list(r.steps), r.reference_answer, comp, "epic_adaptive", is_correct=False)
            for r in wrong.itertuples()]
    ax = AnnotationExplorer(anns, steps=[list(s) for s in wrong.steps], show_plot=False)
    for i, ann in enumerate(anns):
        ax.record.value = i
        if ann.labels is None: assert "Skipped" in ax.steps_view.value; continue
        assert [int(x[0]) for x in step_divs(ax.steps_view.value)] == ann.labels
        assert ax.probes.step.tolist() == [p.step for p in ann.probes]
        np.testing.assert_allclose(ax.probes.estimate.to_numpy(dtype=float), [p.estimate for p in ann.probes])
    out = tmp_path / "ann.jsonl"                                                      # annotate_dataset's JSONL, read back
    epicprm.annotate_dataset(wrong.head(2), comp, out, "epic_adaptive", progress=False)
    ax2 = AnnotationExplorer(out, show_plot=True)
    assert ax2.error is None and len(ax2.record.options) == 2 and ax2.plot.value.startswith("<img")


# ---------------------------------------------------------------- what the reader sees: token text, groups, status, |K| order
def test_token_text_is_the_same_in_view_list_and_table(ex):
    ex.group.value = "g8"
    shown = [c["text"].replace("\n", "") for c in cells(ex.token_view.value)]
    listed = {label.split("   (K")[0] for label, _ in ex.token.options}
    assert set(shown) <= listed and "Ġ" not in "".join(listed) and " x" in listed and "↵" in listed
    assert "Ġ" not in ex.table_view.value and "Ċ" not in ex.table_view.value


def test_group_picker_marks_mixed_groups(tmp_path):
    p = write_worked_example(tmp_path / "w.jsonl", [dict(group_id="flat", rollout_id=i, token_ids=[11, 13], tokens=["Let", "Ġratio"],
                                                           reward=1.0) for i in range(2)])
    ex = KeyTokenExplorer(p, show_plots=False)
    assert [label for label, _ in ex.group.options] == ["● g8 (2 of 4 correct)", "flat (no contrast: all correct)"]
    assert status(ex) == "<b>Group 'g8': 4 rollouts, 2 correct, 2 wrong, 9 distinct tokens; preset official, Â from grpo.</b>"
    ex.group.value = "flat"
    assert "no contrast, K = 0 (all correct)" in status(ex) and "every row has K = 0" in ex.table_view.value
    assert "ExplainGroup" not in status(ex) and "GroupView(" not in status(ex)            # prose, not a repr


def test_sort_by_abs_k_shows_both_signs():
    import pandas as pd
    n = 30                                                                       # 30 tokens at +1, then 5 at -1: ties
    t = pd.DataFrame(dict(token=[f"t{i}" for i in range(n + 5)], token_id=range(n + 5), K=[1.0] * n + [-1.0] * 5,
                          p=np.linspace(0.01, 0.5, n + 5), count_correct=1, count_wrong=1))
    top = order_by_abs_k(t).head(10)
    assert (top.K > 0).any() and (top.K < 0).any() and (top.K.abs() == 1).all()
    assert (np.diff(order_by_abs_k(t.assign(K=np.linspace(-1, 1, n + 5))).K.abs().to_numpy()) <= 0).all()   # distinct |K|: plain order


def test_estimator_control(ex):
    ex.color_by.value = "A"
    ex.estimator.value = "dr_grpo"
    ref = explain_group(ex.batch, "g8", estimator="dr_grpo")
    np.testing.assert_allclose(scores(ex), ref.advantages[0][ref.response_mask[0]].numpy(), atol=1e-6)
    assert "Â from dr_grpo" in status(ex) and "Â (dr_grpo) = +0.500" in ex.token_view.value


def test_key_token_explorer_on_the_minimal_schema(tmp_path):
    p = tmp_path / "min.jsonl"
    p.write_text("".join(json.dumps({"group_id": g, "token_ids": t, "reward": r}) + "\n"
                         for g, t, r in [("a", [5, 6, 7], 1), ("a", [5, 8], 0), ("b", [9], 1)]))
    ex = KeyTokenExplorer(p, show_plots=True)
    assert ex.error is None and "ktae-tok" in ex.token_view.value
    assert [lbl for lbl, _ in ex.rollout.options][:2] and len(ex.rollout.options) == 2


def test_annotation_explorer_shows_a_bad_chart_in_its_status_line():
    bad = json.loads(json.dumps(REC)); bad["probes"][0]["estimate"] = float("nan")
    ax = AnnotationExplorer([bad], show_plot=True)
    assert "chart not drawn" in status(ax) and ax.steps_view.value and ax.plot.value == ""
    bad = json.loads(json.dumps(REC)); bad["probes"][0]["step"] = "two"
    ax = AnnotationExplorer([bad], show_plot=True)          # a string step: shown in the status line, never raised
    assert ax.view is not None or "⚠" in status(ax)
