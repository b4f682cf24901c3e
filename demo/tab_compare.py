"""The "Compare" tab: two settings fitted on the same good images, one image
under both, on one colour scale, with the model cards side by side (``/compare``)."""

from __future__ import annotations

import gradio as gr

from . import compare
from .models import model_card
from .ui import PageContext, failure, session_state, starting
from .uploads import files_input, image_input


def build(ctx: PageContext, session: gr.State) -> None:
    """The tab and its event; call inside ``gr.Blocks`` and ``gr.Tabs``."""

    def default_images(session_value) -> tuple[list[str], str]:
        """The good images to fit on when the visitor gives none, and what they are: those of
        the model in use (a session's model: its own uploads), else the built-in ones."""
        model, label = ctx.active(session_value)
        if model is not ctx.model:
            find = ctx.training_image_finder(model)
            own = [p for p in map(find, model.train_names) if p][:compare.MAX_COMPARE_IMAGES]
            return own, f"the training images of {label}, the model in use"
        paths = compare.good_images_for(ctx.model, ctx.fit_examples, ctx.training_images)
        obj = f" {ctx.category}" if ctx.category else ""
        return paths, (f"the built-in{obj} good images" if ctx.fit_examples
                       else f"the training images of {label}")

    def do_compare(image, a, b, good, pair, session_value, request: gr.Request,
                   progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        try:
            if image is None:
                raise compare.UserError("Upload an image (or pick an example) to compare the two models on.")
            if a == b:
                raise compare.UserError("Pick two different settings.")
            if good:
                paths, what = list(good), "your uploaded good images"
            else:
                paths, what = default_images(session_value)
            key = (a, b, tuple(paths))
            if not pair or pair["key"] != key:  # fit once per (settings, images) in a session
                models = compare.fit_pair(paths, a, b, ctx.fit_device,
                                          progress=lambda f, t: progress(0.9 * f, desc=t))
                pair = ctx.sessions.hold(request, key=key, models=models)
            progress(0.95, desc="scoring the image under both")
            ia, ib, scale = compare.compare(*pair["models"], image)
            cards = [model_card(m) for m in pair["models"]]
            rows = compare.cards_side_by_side(*cards, (a, b))
            from patchcore_core.util.tables import markdown_table

            msg = (f"Both fitted on the same {len(paths)} good images: {what}. One colour scale for both "
                   f"maps: {scale[0]:.1f} (dark) to {scale[1]:.1f} (bright). Scores: **{ia.score:.1f}** "
                   f"({ia.verdict}) under *{a}*, **{ib.score:.1f}** ({ib.verdict}) under *{b}*.")
            return (compare.overlay_on(ia, scale), compare.overlay_on(ib, scale),
                    compare.compare_figure(ia, ib, scale, (a, b)), markdown_table(rows),
                    {a: cards[0], b: cards[1]}, msg, pair)
        except Exception as exc:
            return None, None, None, "", {}, failure(exc), pair

    names = list(compare.PRESETS)
    with gr.Tab("Compare", id="compare"):
        gr.Markdown("### Two settings side by side\nBoth models are fitted on the same good images (yours, "
                    "or the built-in ones); one image is scored by both and drawn on **one** colour scale, "
                    "so the same colour means the same distance to normal.")
        pair_state = session_state()  # {"key", "models"}: this session's fitted pair
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=260):
                a = gr.Dropdown(names, value=names[0], label="Setting A", elem_id="cmp-a")
                b = gr.Dropdown(names, value=names[1], label="Setting B", elem_id="cmp-b")
                image = image_input(ctx.uploads, label="Image to compare on", height=200,
                                    sources=["upload", "clipboard"], elem_id="cmp-image")
                good = files_input(ctx.uploads, file_types=["image"], height=150, elem_id="cmp-good",
                                   label=f"Good images to fit on (up to {compare.MAX_COMPARE_IMAGES})")
                gr.Markdown("Optional: without them both are fitted on the good images of the model in "
                            "use (the built-in ones, or those of the model you fitted).",
                            elem_id="cmp-good-note")
                run = gr.Button("Fit both and compare", variant="primary", elem_id="cmp-run")
            with gr.Column(scale=8):
                msg = gr.Markdown("Pick two settings and an image.", elem_id="cmp-message",
                                  label="compare message")
                with gr.Row():
                    over_a = gr.Image(label="A", type="numpy", format="png", interactive=False, height=230,
                                      elem_id="cmp-overlay-a")
                    over_b = gr.Image(label="B", type="numpy", format="png", interactive=False, height=230,
                                      elem_id="cmp-overlay-b")
                plot = gr.Plot(label="Both maps, one colour scale", elem_id="cmp-plot", show_label=False)
        cards_md = gr.Markdown(label="model cards", elem_id="cmp-cards")
        with gr.Accordion("Both model cards (JSON)", open=False):
            cards_json = gr.JSON(label="model cards")
    run.click(starting("Fitting both models..."), None, msg, queue=False, api_visibility="undocumented",
              ).then(do_compare, [image, a, b, good, pair_state, session],
                     [over_a, over_b, plot, cards_md, cards_json, msg, pair_state],
                     api_name="compare", concurrency_id="fit", concurrency_limit=1)
