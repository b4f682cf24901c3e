"""The Gradio page: ``build_demo(model) -> gr.Blocks``.

Every event calls a function of :mod:`demo.logic` and is named
(``api_name``) so the same steps work from ``gradio_client``. Per-visitor
things live in ``gr.State``: the model fitted in this browser session (None
means the shared default, which no session ever changes) and the last
prediction (so the threshold slider redraws without running the model).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import gradio as gr

from . import explain, logic, models, tab_batch, tab_compare, tab_threshold
from .numbers import finite_input
from .training_images import TrainingImages
from .ui import PageContext, session_state, starting
from .ui import failure as _failure
from .ui import warn as _warn
from .uploads import UploadPolicy, files_input, image_input

log = logging.getLogger("demo")

INTRO = """
# PatchCore: spot defects by comparing patches with normal ones
The model has only ever seen **defect-free** images. It splits your image into small patches and
scores each one by its distance to the nearest normal patch it remembers: far from anything normal
= bright on the heatmap = likely defect.
"""

CSS = """
.gradio-container {max-width: min(1280px, 100vw) !important; margin: auto;}
#intro h1 {margin-bottom: 0.2em;}
#verdict textarea, #verdict input {font-weight: 700; font-size: 1.1em;}
/* a verdict never breaks inside the word ("anomal ous") */
#verdict textarea, #verdict input {overflow-wrap: normal; word-break: keep-all; white-space: nowrap;}
#model-line {font-size: 0.92em; opacity: 0.9;}
#zoom img {image-rendering: pixelated;}
/* labels of images and file drops sit above them, not over the image's corner or "Drop File Here" */
.gradio-container label.float[data-testid="block-label"] {position: static; margin-bottom: 4px;}
.gradio-container label.float[data-testid="block-label"] ~ .image-container {height: calc(100% - 34px);}
/* plots shrink with their column instead of widening the page (phones) */
.gradio-container .js-plotly-plot, .gradio-container [id$="-plot"] img, #heatmap img, #set-dist img,
#set-roc img, #set-confusion img {max-width: 100%; height: auto;}
/* table headers break between words only ("thresh old"); a long cell (an error) wraps inside the
   table; the table scrolls sideways inside its box on a phone */
#batch-table th, #batch-table th * {word-break: normal !important; overflow-wrap: normal !important;
  hyphens: none;}
#batch-table td:nth-child(1), #batch-table td:nth-child(1) *, #batch-table td:nth-child(4),
#batch-table td:nth-child(4) * {overflow-wrap: anywhere; white-space: normal;}
@media (max-width: 480px) {#batch-table th, #batch-table td {font-size: 0.8em;}}
/* the table sizes itself from its box: cap the box by the screen, or it widens the page */
#batch-table {min-width: 0 !important; width: 100%; max-width: calc(100vw - 40px); overflow-x: auto;}
/* the gallery of mistakes: as many thumbnails a row as fit (a phone too), captions wrapped, not "..." */
#set-mistakes .grid-container {grid-template-columns: repeat(auto-fill, minmax(110px, 1fr)) !important;}
#set-mistakes .caption-label {white-space: normal; overflow: visible; text-overflow: clip;
  overflow-wrap: anywhere; max-width: 100%;}
.gradio-container label[data-testid="block-label"] {white-space: normal; max-width: 100%;}
/* the page's box is a flex item: without min-width 0 the Batch table's own width measure
   stretches it past a phone's screen */
.gradio-container {min-width: 0 !important;}
footer {display: none !important;}
"""

FIXED, PER_IMAGE = "fixed", "per image"
DEFAULT_CONCURRENCY = 2
SCALE_HELP = ("Fixed: one scale for every image (0.5x to 2x the threshold), so a normal image stays dark. "
              "Per image: stretched to this image's own range, so every image has a bright spot.")


def _cache_images_atomically() -> None:
    """Gradio caches output images under a hash of their bytes and rewrites
    that file in place on every request, so two visitors who get the same
    picture at once can be served a half-written file. Same bytes, same
    name: write it once, through a temporary file, and never again."""

    from gradio import processing_utils as pu

    from patchcore_core.util.atomic import atomic_path

    if getattr(pu.save_pil_to_cache, "_atomic", False):
        return

    def save_pil_to_cache(img, cache_dir, name="image", format="webp"):
        data = pu.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / pu.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        if not path.exists():
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        return str(path)

    save_pil_to_cache._atomic = True
    save_pil_to_cache.__wrapped__ = pu.save_pil_to_cache  # Gradio's (test_demo_gradio_overrides.py)
    pu.save_pil_to_cache = save_pil_to_cache


def build_demo(model, examples: list[tuple[str, str]] | None = None, model_label: str = "built-in brick",
               fit_device: str | None = None, fit_examples: list[str] | None = None,
               allowed_paths: list[str] | None = None, category: str | None = None,
               examples_label: str | None = None, concurrency: int = DEFAULT_CONCURRENCY,
               image_folders: list[str] | None = None) -> gr.Blocks:
    """The demo page around a fitted ``model`` (shared, read-only).

    Args:
        model: the default :class:`~patchcore_core.PatchCore`, fitted.
        examples: (path, label) pairs shown as clickable examples.
        model_label: how the page names the default model.
        fit_device: device for models fitted in a session (default: the model's).
        fit_examples: good image paths the "Build your own" tab can load in one click.
        allowed_paths: more files or folders Gradio may serve, as they are; passed to launch.
            (The example files themselves are served without it: each file, not its folder.)
        category: the built-in category the default model was fitted on (None: another model).
        concurrency: requests of one kind served at once (fits: always one at a time).
        examples_label: the examples' heading (default: "Examples of <the object the model knows>").
        image_folders: folders the operator named (``--examples``, ``--train-images``) whose images
            Explain may show as training patches, besides the folders of ``examples`` and
            ``fit_examples``. The paths a model file names are never opened as they are.
    """
    from patchcore_core.data.builtin import CATEGORIES

    _cache_images_atomically()
    if not model.is_fitted:
        raise ValueError("build_demo needs a fitted model")
    examples = list(examples or [])
    fit_examples = list(fit_examples or [])
    fit_device = fit_device or str(model.device)
    # the one rule for every path a request hands over (see demo/uploads.py)
    uploads = UploadPolicy([p for p, _ in examples] + fit_examples)

    # the page's own images and the operator's folders; never a folder a model file names
    own_folders = [str(Path(p).parent) for p, _ in examples] + [str(Path(p).parent) for p in fit_examples]
    training_images = TrainingImages(own_folders + list(image_folders or []))
    ctx = PageContext(model, model_label, uploads, fit_device, category, fit_examples,
                      training_images=training_images)
    obj = models.known_object(model, category)
    examples_label = examples_label or (f"Examples of {obj}" if obj else "Examples")

    def describe(m, label):
        """The model line, and (for the shared model) which object it knows."""
        line = logic.describe_model(m, label)
        if m is model and obj:
            line += f" It knows **{obj}** images: judge those with it."
        return line
    active = ctx.active
    no_examples_note = f"No examples for this model: upload images of {obj or 'the object it was fitted on'}."

    def examples_update(session_value):
        """The Inspect examples of the model in use (the visitor's own training images after a
        fit) and the note under them."""
        m, _ = active(session_value)
        if m is model:
            return (gr.Dataset(samples=[[p] for p, _ in examples],
                               sample_labels=[lbl for _, lbl in examples] or None,
                               label=examples_label, visible=bool(examples)),
                    "" if examples else no_examples_note)
        names = getattr(m, "train_names", [])
        own = [p for p in map(ctx.training_image_finder(m), names) if p][:12]
        label = (f"Examples: your model's own training images ({len(own)} of {len(names)}, all good; "
                 "upload other images of the same object to test it)")
        return (gr.Dataset(samples=[[p] for p in own], sample_labels=[Path(p).name for p in own] or None,
                           label=label, visible=bool(own)),
                "" if own else "Upload images of the object your model was fitted on.")

    # ---------------------------------------------------------- handlers
    def do_predict(image, factor, session, colour_scale=FIXED):
        if image is None:
            return None, None, None, None, None, "", "Upload an image or pick an example.", None
        try:
            m, _ = active(session)
            insp = dataclasses.replace(logic.predict(m, image), per_image=colour_scale == PER_IMAGE)
            region, share = logic.region_image(insp, factor)
            msg = logic.score_text(insp) + "  \n" + logic.region_text(insp, factor, share)
            return (logic.overlay(insp), region, logic.heatmap_figure(insp, factor), round(insp.score, 3),
                    None if insp.normalised_score is None else round(insp.normalised_score, 3),
                    insp.verdict, msg, insp)
        except Exception as exc:
            return None, None, None, None, None, "error", _failure(exc), None

    def do_colour_scale(colour_scale, factor, last):
        """Redraw the last image on the chosen scale; the session keeps the choice for the next ones."""
        if last is None:
            return gr.skip(), gr.skip(), None, colour_scale
        last = dataclasses.replace(last, per_image=colour_scale == PER_IMAGE)
        return logic.overlay(last), logic.heatmap_figure(last, factor), last, colour_scale

    def do_region(factor, last):
        if last is None:
            return gr.skip(), gr.skip(), gr.skip()
        try:
            region, share = logic.region_image(last, factor)
            msg = logic.score_text(last) + "  \n" + logic.region_text(last, factor, share)
            return region, logic.heatmap_figure(last, factor), msg
        except Exception as exc:
            return None, None, _failure(exc)

    empty_explain = (None, None, None, "", {})

    def run_explain(m, image, x, y):
        if getattr(m, "is_export", False):  # no training patches in an export: said in place, no toast
            from .exported import NEEDS_PYTORCH

            return None, None, None, NEEDS_PYTORCH.format(what="Explain"), {}
        try:
            r = explain.explain(m, image, x, y, find_training_image=ctx.training_image_finder(m))
            return r.test_image, r.train_image, r.zoom, r.text, r.details
        except Exception as exc:
            return None, None, None, _failure(exc), {}

    def do_explain(image, x, y, session):
        m, _ = active(session)
        return run_explain(m, image, x, y)

    def do_explain_top(last, session):
        if last is None:
            return (None, None) + empty_explain
        m, _ = active(session)
        out = run_explain(m, last.path, None, None)
        box = out[-1].get("box")
        centre = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2) if box else (None, None)
        return centre + out

    def do_explain_click(last, session, evt: gr.SelectData):
        if last is None:
            return (None, None) + empty_explain
        x, y = (evt.index or (None, None))[:2]
        m, _ = active(session)
        return (x, y) + run_explain(m, last.path, x, y)

    def do_pick_example(sample):
        """An example's path, as a plain value for the image input (checked like an upload)."""
        try:
            return uploads.check((sample or [None])[0])
        except logic.UserError:
            return gr.skip()

    def show_numbers(*values):
        """The score fields' text: blank until something is scored."""
        return ["" if v is None else f"{v:.3f}" for v in values]

    def do_mark(last, details):
        """The heatmap with the explained patch boxed: the click (or the default patch) shows."""
        box = (details or {}).get("box") if isinstance(details, dict) else None
        if last is None or not box:
            return gr.skip()
        return logic.mark_patch(logic.overlay(last), box)

    def do_card(session):
        m, label = active(session)
        card = models.model_card(m)
        return describe(m, label), models.card_markdown(card, label), card

    def do_fit(files, session, request: gr.Request, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        try:
            progress(0, desc="reading your images")
            m, skipped = logic.fit(files, device=fit_device,
                                   progress=lambda f, t: progress(0.1 * f, desc=t))  # then tqdm's bars
            progress(0.97, desc="saving the model for download")
            path = logic.save_for_download(m)
            label = "your model"
            new = ctx.sessions.hold(request, model=m, label=label)
            n = len(m.train_names)
            msg = (f"**Done.** Fitted on {n} image{'s' if n != 1 else ''} in {m.stats['fit_seconds']:.1f} s; "
                   f"memory bank of {len(m.bank)} patches. Go to **Inspect** to try it; "
                   "download it below.")
            if m.threshold is None:
                msg += " With a single image there is no threshold, so no verdicts: add more for one."
            if skipped:
                msg += "  \n" + _warn("Skipped: " + "; ".join(skipped))
            return (new, msg, path) + do_card(new)
        except Exception as exc:
            return (session, _failure(exc), None) + do_card(session)

    def do_reset():
        return (None, f"Back to the default model ({model_label}).", None) + do_card(None)

    def release_session(request: gr.Request) -> None:
        ctx.sessions.release(request)

    def do_load_fit_examples():
        return fit_examples

    # ---------------------------------------------------------------- page
    # delete_cache: Gradio's copies of heatmaps and models older than 6 h go, checked hourly,
    # so a demo left running for a course does not fill the disk.
    with gr.Blocks(title="PatchCore demo", analytics_enabled=False, delete_cache=(3600, 6 * 3600)) as demo:
        session = session_state()        # {"model", "label"} fitted here; None: the default
        last_state = gr.State(None)      # logic.Inspection of the last image
        # the colour scale as a state, not a /predict input: API callers keep sending (image, factor)
        scale_state = gr.State(FIXED)

        gr.Markdown(INTRO, elem_id="intro")
        model_line = gr.Markdown(describe(model, model_label), elem_id="model-line",
                                 label="model in use")

        # wrap: on a phone every tab stays in sight (Gradio's default hides the last ones behind "...")
        with gr.Tabs(overflow_behavior="wrap"):
            with gr.Tab("Inspect", id="inspect"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4, min_width=280):
                        image_in = image_input(uploads, label="Image to inspect",
                                               sources=["upload", "webcam", "clipboard"], height=230,
                                               elem_id="image-in")
                        run_btn = gr.Button("Inspect", variant="primary", elem_id="run")
                        # a Dataset, not gr.Examples: an example click must set the image as a
                        # plain value; gr.Examples sends a component update, and Gradio then
                        # rebuilds the session's image input without the upload check (demo/uploads.py)
                        examples_ds = gr.Dataset(components=[image_in], samples=[[p] for p, _ in examples],
                                                 sample_labels=[lbl for _, lbl in examples] or None,
                                                 label=examples_label, samples_per_page=12, type="values",
                                                 visible=bool(examples), elem_id="examples")
                        examples_note = gr.Markdown(
                            "" if examples else "No examples for this model: upload images of "
                            f"{obj or 'the object it was fitted on'}.", elem_id="examples-note")
                        factor = finite_input(gr.Slider(
                            0.5, 3.0, value=1.0, step=0.05, elem_id="factor",
                            label="Region threshold (x the model's threshold)",
                            info="Moves the defect region; the model does not run again."),
                            "the region threshold")
                        colour_scale = gr.Radio([FIXED, PER_IMAGE], value=FIXED, label="Colour scale",
                                                elem_id="colour-scale", info=SCALE_HELP)
                    with gr.Column(scale=8):
                        with gr.Row():
                            # shown as text: Gradio's number field shows 0 before anything is scored.
                            # The numbers themselves (hidden) are what /predict returns.
                            score_text = gr.Textbox(label="Image score", interactive=False, elem_id="score",
                                                    min_width=100, placeholder="-")
                            norm_text = gr.Textbox(label="Score / threshold", interactive=False,
                                                   elem_id="norm", min_width=100, placeholder="-")
                            verdict = gr.Textbox(label="Verdict", interactive=False, elem_id="verdict",
                                                 min_width=130, placeholder="-")
                            score = gr.Number(precision=3, visible=False, elem_id="score-value")
                            norm = gr.Number(precision=3, visible=False, elem_id="norm-value")
                        message = gr.Markdown("Upload an image or pick an example, then press **Inspect**.",
                                              elem_id="message", label="message")
                        with gr.Row():
                            overlay = gr.Image(label="Heatmap: click to explain",
                                               type="numpy", format="png", interactive=False, height=230,
                                               elem_id="overlay", buttons=["fullscreen"])
                            region = gr.Image(label="Defect region", type="numpy",
                                              format="png", interactive=False, height=230, elem_id="region",
                                              buttons=["fullscreen"])
                            plot = gr.Plot(label="Anomaly map and colour bar", elem_id="heatmap",
                                           show_label=False)
                        # the answer to "why?" sits right under the heatmap: in sight at 1280 x 900
                        gr.Markdown("**Why? The nearest normal patch.** A patch's score is its distance to "
                                    "the closest patch in the memory bank of normal patches. Click the "
                                    "heatmap to pick a patch (by default: the most anomalous one).",
                                    elem_id="why")
                        with gr.Row(equal_height=False):
                            with gr.Column(min_width=240):
                                ex_text = gr.Markdown(elem_id="explain-text", label="explanation text")
                                ex_zoom = gr.Image(label="Zoom: yours | nearest normal", format="png",
                                                   interactive=False, height=110, elem_id="zoom",
                                                   buttons=["fullscreen"])
                            ex_test = gr.Image(label="Your image: the patch (cyan)", format="png",
                                               interactive=False, height=200, elem_id="explain-test",
                                               buttons=["download", "fullscreen"])
                            ex_train = gr.Image(label="Its nearest normal patch (green)", format="png",
                                                interactive=False, height=200, elem_id="explain-train",
                                                buttons=["download", "fullscreen"])
                        with gr.Row(equal_height=False):
                            x_num = finite_input(gr.Number(None, label="x (px, 224 view)", precision=0,
                                                           min_width=80, elem_id="x-num", placeholder="-"),
                                                 "x")
                            y_num = finite_input(gr.Number(None, label="y", precision=0, min_width=80,
                                                           elem_id="y-num", placeholder="-"), "y")
                            explain_btn = gr.Button("Explain this point", size="sm", min_width=120)
                with gr.Accordion("Explanation details (JSON)", open=False):
                    ex_json = gr.JSON(label="explanation")

            with gr.Tab("Build your own", id="build"):
                gr.Markdown("Upload a handful of **good** images of one kind of object or texture (one is "
                            "enough; 2+ also calibrate a threshold). A model is fitted for this browser "
                            "session only; the shared default model is not changed.")
                with gr.Row():
                    with gr.Column():
                        fit_files = files_input(uploads, file_types=["image"],
                                                label=f"Good images (up to {logic.MAX_FIT_IMAGES})",
                                                elem_id="fit-files", height=200)
                        with gr.Row():
                            if fit_examples:
                                sample_btn = gr.Button(f"Use {len(fit_examples)} built-in good images",
                                                       size="sm")
                            fit_btn = gr.Button("Fit my model", variant="primary", elem_id="fit")
                            reset_btn = gr.Button("Back to the default model", size="sm")
                    with gr.Column():
                        fit_msg = gr.Markdown(elem_id="fit-message", label="fit message")
                        download = gr.File(label="Your model (.safetensors, safe to share: no pickle)",
                                           interactive=False, elem_id="download")

            tab_threshold.build(ctx, session, list(CATEGORIES))
            tab_batch.build(ctx, session)
            tab_compare.build(ctx, session)

            with gr.Tab("Model card", id="card"):
                card_md = gr.Markdown(models.card_markdown(models.model_card(model), model_label),
                                      label="model card")
                with gr.Accordion("Raw (JSON)", open=False):
                    card_json = gr.JSON(models.model_card(model), label="model card (JSON)")

        # ------------------------------------------------------------ events
        card_outputs = [model_line, card_md, card_json]
        predict_outputs = [overlay, region, plot, score, norm, verdict, message, last_state]
        explain_outputs = [ex_test, ex_train, ex_zoom, ex_text, ex_json]
        gr.on([run_btn.click, image_in.change], do_predict, [image_in, factor, session, scale_state],
              predict_outputs, api_name="predict", trigger_mode="always_last",
              ).then(show_numbers, [score, norm], [score_text, norm_text], api_visibility="undocumented",
                     show_progress="hidden", queue=False,
              ).then(do_explain_top, [last_state, session], [x_num, y_num] + explain_outputs,
                     api_name="explain_most_anomalous", show_progress="minimal",
                     ).then(do_mark, [last_state, ex_json], overlay, api_visibility="undocumented",
                            show_progress="hidden",
                            # the model card's predict time, now measured
                            ).then(do_card, session, card_outputs, api_visibility="undocumented",
                                   show_progress="hidden")
        colour_scale.change(do_colour_scale, [colour_scale, factor, last_state],
                            [overlay, plot, last_state, scale_state],
                            api_name="set_colour_scale", show_progress="hidden")
        factor.change(do_region, [factor, last_state], [region, plot, message], api_name="update_region",
                      trigger_mode="always_last", show_progress="hidden")
        overlay.select(do_explain_click, [last_state, session], [x_num, y_num] + explain_outputs,
                       api_name="explain_click",
                       ).then(do_mark, [last_state, ex_json], overlay, api_visibility="undocumented",
                              show_progress="hidden")
        explain_btn.click(do_explain, [image_in, x_num, y_num, session], explain_outputs,
                          api_name="explain",
                          ).then(do_mark, [last_state, ex_json], overlay, api_visibility="undocumented",
                                 show_progress="hidden")
        # the examples follow the model in use (a step of its own: /fit's outputs stay as documented)
        examples_outputs = [examples_ds, examples_note]
        fit_btn.click(starting("Fitting..."), None, fit_msg, queue=False, api_visibility="undocumented",
                      ).then(do_fit, [fit_files, session], [session, fit_msg, download] + card_outputs,
                             api_name="fit", concurrency_limit=1, concurrency_id="fit",
                             show_progress_on=[fit_msg],
                             ).then(examples_update, session, examples_outputs, api_visibility="undocumented")
        reset_btn.click(do_reset, None, [session, fit_msg, download] + card_outputs,
                        api_name="use_default_model",
                        ).then(examples_update, session, examples_outputs, api_visibility="undocumented")
        examples_ds.click(do_pick_example, examples_ds, image_in, api_visibility="undocumented",
                          show_progress="hidden", queue=False)
        if fit_examples:
            sample_btn.click(do_load_fit_examples, None, fit_files, api_name="load_sample_images")
        demo.load(do_card, session, card_outputs, api_name="model_card")
        # a closed page's models go now, not when Gradio drops its state an hour later
        demo.unload(release_session)

    # concurrency: see demo/README.md, "Thirty visitors" (measured by benchmarks/bench_demo_load.py)
    demo.queue(default_concurrency_limit=concurrency, max_size=max(64, 8 * concurrency))
    # each example file, not its folder: Gradio serves every file under an allowed folder
    served = {str(Path(p).resolve()) for p, _ in examples} | {str(Path(p).resolve()) for p in fit_examples}
    demo.patchcore_launch_kwargs = {
        "theme": gr.themes.Soft(primary_hue="orange", secondary_hue="slate"),
        "css": CSS,
        "allowed_paths": sorted(served | set(allowed_paths or [])),
        "max_file_size": "40mb",
        "show_error": True,
    }
    demo.patchcore_context = ctx  # for tests and the load benchmark (ctx.sessions.live())
    return demo


def launch(demo: gr.Blocks, **kwargs):
    """``demo.launch`` with the page's theme, CSS and allowed folders."""
    opts = dict(getattr(demo, "patchcore_launch_kwargs", {}))
    opts.update(kwargs)
    return demo.launch(**opts)
