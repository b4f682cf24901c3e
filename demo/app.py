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
from .ui import PageContext, session_state
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
.gradio-container {max-width: 1280px !important; margin: auto;}
#intro h1 {margin-bottom: 0.2em;}
#verdict textarea, #verdict input {font-weight: 700; font-size: 1.1em;}
#model-line {font-size: 0.92em; opacity: 0.9;}
#zoom img {image-rendering: pixelated;}
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

        with gr.Tabs():
            with gr.Tab("Inspect", id="inspect"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4, min_width=280):
                        image_in = image_input(uploads, label="Image to inspect",
                                               sources=["upload", "webcam", "clipboard"], height=250,
                                               elem_id="image-in")
                        run_btn = gr.Button("Inspect", variant="primary", elem_id="run")
                        factor = finite_input(gr.Slider(
                            0.5, 3.0, value=1.0, step=0.05, elem_id="factor",
                            label="Region threshold (x the model's threshold)",
                            info="Moves the defect region; the model does not run again."),
                            "the region threshold")
                        colour_scale = gr.Radio([FIXED, PER_IMAGE], value=FIXED, label="Colour scale",
                                                elem_id="colour-scale", info=SCALE_HELP)
                        if examples:
                            gr.Examples([[p] for p, _ in examples], inputs=[image_in],
                                        example_labels=[lbl for _, lbl in examples],
                                        label=examples_label, examples_per_page=12)
                        else:
                            gr.Markdown("No examples for this model: upload images of "
                                        f"{obj or 'the object it was fitted on'}.")
                    with gr.Column(scale=8):
                        with gr.Row():
                            score = gr.Number(label="Image score", precision=3, interactive=False,
                                              elem_id="score", min_width=100)
                            norm = gr.Number(label="Score / threshold", precision=3,
                                             interactive=False, elem_id="norm", min_width=100)
                            verdict = gr.Textbox(label="Verdict", interactive=False, elem_id="verdict",
                                                 min_width=100)
                        message = gr.Markdown("Upload an image or pick an example, then press **Inspect**.",
                                              elem_id="message", label="message")
                        with gr.Row():
                            overlay = gr.Image(label="Heatmap: click to explain",
                                               type="numpy", format="png", interactive=False, height=260,
                                               elem_id="overlay", buttons=["fullscreen"])
                            region = gr.Image(label="Defect region", type="numpy",
                                              format="png", interactive=False, height=260, elem_id="region",
                                              buttons=["fullscreen"])
                            plot = gr.Plot(label="Anomaly map and colour bar", elem_id="heatmap",
                                           show_label=False)

                gr.Markdown("### Why? The nearest normal patch\nEach patch's score is its distance to the "
                            "closest patch in the memory bank of normal patches. Click the heatmap to pick a "
                            "patch (by default: the most anomalous one).")
                with gr.Row(equal_height=False):
                    ex_test = gr.Image(label="Your image: the patch (cyan)", format="png", interactive=False,
                                       height=230, elem_id="explain-test", buttons=["download", "fullscreen"])
                    ex_train = gr.Image(label="Its nearest normal patch (green)", format="png",
                                        interactive=False, height=230, elem_id="explain-train",
                                        buttons=["download", "fullscreen"])
                    with gr.Column(min_width=240):
                        ex_zoom = gr.Image(label="Zoom: yours | nearest normal", format="png",
                                           interactive=False, height=120, elem_id="zoom",
                                           buttons=["fullscreen"])
                        ex_text = gr.Markdown(elem_id="explain-text", label="explanation text")
                        with gr.Row():
                            x_num = finite_input(gr.Number(None, label="x (px, 224 view)", precision=0,
                                                           min_width=80, elem_id="x-num"), "x")
                            y_num = finite_input(gr.Number(None, label="y", precision=0, min_width=80,
                                                           elem_id="y-num"), "y")
                        explain_btn = gr.Button("Explain this point", size="sm")
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
            tab_compare.build(ctx)

            with gr.Tab("Model card", id="card"):
                card_md = gr.Markdown(models.card_markdown(models.model_card(model), model_label),
                                      label="model card")
                with gr.Accordion("Raw (JSON)", open=False):
                    card_json = gr.JSON(models.model_card(model), label="model card (JSON)")

        # ------------------------------------------------------------ events
        predict_outputs = [overlay, region, plot, score, norm, verdict, message, last_state]
        explain_outputs = [ex_test, ex_train, ex_zoom, ex_text, ex_json]
        gr.on([run_btn.click, image_in.change], do_predict, [image_in, factor, session, scale_state],
              predict_outputs, api_name="predict", trigger_mode="always_last",
              ).then(do_explain_top, [last_state, session], [x_num, y_num] + explain_outputs,
                     api_name="explain_most_anomalous", show_progress="minimal")
        colour_scale.change(do_colour_scale, [colour_scale, factor, last_state],
                            [overlay, plot, last_state, scale_state],
                            api_name="set_colour_scale", show_progress="hidden")
        factor.change(do_region, [factor, last_state], [region, plot, message], api_name="update_region",
                      trigger_mode="always_last", show_progress="hidden")
        overlay.select(do_explain_click, [last_state, session], [x_num, y_num] + explain_outputs,
                       api_name="explain_click")
        explain_btn.click(do_explain, [image_in, x_num, y_num, session], explain_outputs,
                          api_name="explain")
        card_outputs = [model_line, card_md, card_json]
        fit_btn.click(do_fit, [fit_files, session], [session, fit_msg, download] + card_outputs,
                      api_name="fit", concurrency_limit=1, concurrency_id="fit", show_progress_on=[fit_msg])
        reset_btn.click(do_reset, None, [session, fit_msg, download] + card_outputs,
                        api_name="use_default_model")
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
