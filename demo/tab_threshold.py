"""The "Threshold" tab: a labelled set scored once, then read at any threshold.

``/evaluate_set`` runs the model (a built-in category, or an uploaded zip
in the MVTec layout); ``/set_threshold`` only redraws from the scores kept
in the session (:class:`demo.thresholds.LabelledSet`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr

from . import logic, thresholds
from .archives import extract_zip, images_in
from .numbers import check_number, finite_input
from .ui import PageContext, failure, session_state, starting
from .uploads import file_input

INTRO = """### Where should the threshold go?
PatchCore sets its threshold from **good** images only. Score a labelled set (good and defective images) to
see what that threshold costs: defects it misses, good images it flags. Move the slider: nothing is
recomputed, only counted again."""


def _outputs_at(s: thresholds.LabelledSet, thr: float):
    stats = thresholds.at_threshold(s, thr)
    return (thresholds.distribution_figure(s, thr), thresholds.roc_figure(s, thr),
            thresholds.confusion_figure(stats), thresholds.mistakes(s, thr),
            thresholds.summary_markdown(s, stats), stats)


def _zip_set(ctx: PageContext, path: str, session, progress):
    """Score a zip's test set: with a model fitted on its own train/good images
    if it has them, else with the model in use."""
    folder = extract_zip(path)
    try:
        items = thresholds.labelled_items(folder)
        test = Path(items[0][0]).parents[1]
        train = images_in(test.parent / "train" / "good") if (test.parent / "train" / "good").is_dir() else []
        if train:
            train = train[:logic.MAX_FIT_IMAGES]
            progress(0.05, desc=f"fitting on the zip's {len(train)} good training images")
            model, _ = logic.fit([str(p) for p in train], device=ctx.fit_device)
            what = (f"{Path(path).name}: its test images, scored with a model fitted on its "
                    f"{len(model.train_names)} training images")
        else:
            model, label = ctx.active(session)
            what = f"{Path(path).name}: its test images, scored with {label} (the model in use)"
        return thresholds.score_set(model, items, what,
                                    progress=lambda f, t: progress(0.3 + 0.7 * f, desc=t))
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # what the page needs is in the LabelledSet


def build(ctx: PageContext, session: gr.State, categories: list[str]) -> None:
    """The tab and its two events; call inside ``gr.Blocks`` and ``gr.Tabs``."""

    def do_evaluate(category, zip_path, session_value, request: gr.Request,
                    progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        try:
            if zip_path:
                s = _zip_set(ctx, zip_path, session_value, progress)
            else:
                from patchcore_core.data.builtin import builtin_root
                from patchcore_core.data.mvtec import MVTecCategory

                if category not in categories:
                    raise logic.UserError(f"unknown built-in set {category!r}; choose one of "
                                          f"{', '.join(categories)}")
                model, label = ctx.active(session_value)
                knows = ctx.object_of(session_value)
                note = ""
                if knows != category:
                    # another object: its own built-in model (a brick model cannot judge grass; a
                    # model fitted on the visitor's own images knows neither)
                    note = (f" (the model in use, {label}, was not fitted on {category}: to see its own "
                            "threshold, upload a zip of labelled images of its object)")
                    progress(0.05, desc=f"loading the built-in {category} model")
                    model, label = ctx.builtin_model(category), f"the built-in {category} model"
                cat = MVTecCategory(builtin_root(), category)
                s = thresholds.score_set(model, [(t.path, t.defect) for t in cat.test],
                                         f"the built-in {category} test set ({len(cat.test)} images), "
                                         f"scored with {label}{note}",
                                         progress=lambda f, t: progress(0.1 + 0.9 * f, desc=t))
            thr = thresholds.default_threshold(s)
            lo, hi = thresholds.slider_range(s)
            slider = gr.Slider(minimum=lo, maximum=hi, value=round(thr, 3), step=round((hi - lo) / 1000, 5),
                               interactive=True, visible=True)
            return (ctx.sessions.hold(request, set=s), slider) + _outputs_at(s, thr)
        except Exception as exc:
            return (None, gr.skip(), None, None, None, [], failure(exc), {})

    def do_set_threshold(thr, held):
        s = (held or {}).get("set")
        if s is None:
            return None, None, None, [], "Score a set first (button above).", {}
        try:
            return _outputs_at(s, check_number(thr, "the threshold"))
        except Exception as exc:
            return None, None, None, [], failure(exc), {}

    with gr.Tab("Threshold", id="threshold"):
        gr.Markdown(INTRO)
        scored = session_state()  # Held(set=thresholds.LabelledSet) of this session
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=260):
                first = ctx.category if ctx.category in categories else categories[0]
                category = gr.Dropdown(categories, value=first, label="Built-in labelled set",
                                       elem_id="set-category")
                zip_in = file_input(ctx.uploads, label="... or your own labelled set: a zip",
                                    file_types=[".zip"], elem_id="set-zip", height=120)
                gr.Markdown("The zip in the MVTec layout: `test/good/`, `test/<defect>/`; with "
                            "`train/good/` a model is fitted on it, else the model in use scores it.",
                            elem_id="set-zip-note")
                run = gr.Button("Score the set", variant="primary", elem_id="evaluate")
                # hidden until a set is scored: a 0-1 slider would mean nothing yet
                slider = finite_input(gr.Slider(0, 1, value=0.5, step=0.01, label="Threshold (image score)",
                                                info="Above it: called anomalous. Redraws without the model.",
                                                elem_id="set-threshold", visible=False), "the threshold")
                summary = gr.Markdown("Pick a set and press **Score the set**.", elem_id="set-summary",
                                      label="summary")
            with gr.Column(scale=8):
                with gr.Row():
                    dist = gr.Plot(label="Score distributions", elem_id="set-dist", show_label=False)
                    roc = gr.Plot(label="ROC", elem_id="set-roc", show_label=False)
                    conf = gr.Plot(label="Confusion matrix", elem_id="set-confusion", show_label=False)
        gallery = gr.Gallery(label="Misses and false alarms at this threshold (worst first)", columns=8,
                             rows=1, height=200, elem_id="set-mistakes", object_fit="contain",
                             fit_columns=False)  # thumbnails, not two images as wide as the page
        with gr.Accordion("Numbers (JSON)", open=False):
            numbers = gr.JSON(label="set numbers")

    views = [dist, roc, conf, gallery, summary, numbers]
    # a new set starts with a clean page: no old "Problem:" while this one is scored
    run.click(starting("Scoring the set..."), None, summary, queue=False, api_visibility="undocumented",
              ).then(do_evaluate, [category, zip_in, session], [scored, slider] + views,
                     api_name="evaluate_set", concurrency_id="fit", concurrency_limit=1)
    slider.input(do_set_threshold, [slider, scored], views, api_name="set_threshold",
                 trigger_mode="always_last", show_progress="hidden")
