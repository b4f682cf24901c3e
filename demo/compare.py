"""Two settings, the same good images, one test image: what changes? No Gradio here.

Both anomaly maps are drawn on **one** colour scale (in score units), so the
same colour means the same distance to normal under both models.
"""

from __future__ import annotations

import numpy as np

from .logic import Inspection, UserError, fit, predict

__all__ = ["PRESETS", "UserError", "compare", "fit_pair", "shared_scale", "compare_figure",
           "cards_side_by_side"]

# Settings a class compares (each a set of PatchCoreConfig overrides); offline backbones only.
PRESETS: dict[str, dict] = {
    "coreset 10% (greedy)": {"coreset_ratio": 0.1},
    "coreset 1% (greedy)": {"coreset_ratio": 0.01},
    "coreset 10% (random)": {"coreset": "random", "coreset_ratio": 0.1},
    "coreset 1% (random)": {"coreset": "random", "coreset_ratio": 0.01},
    "no coreset (every patch)": {"coreset": "none"},
    "backbone efficientnet_lite1": {"backbone": "efficientnet_lite1"},
    "no smoothing (sigma 0)": {"sigma": 0.0},
}
MAX_COMPARE_IMAGES = 16  # two fits per request: keep it to seconds


def settings_of(name: str) -> dict:
    if name not in PRESETS:
        raise UserError(f"unknown setting {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def fit_pair(paths: list[str], a: str, b: str, device: str = "cpu", progress=None):
    """Two models, settings ``a`` and ``b`` (names of :data:`PRESETS`), fitted
    on the same good images. Returns ``(model_a, model_b)``."""
    if not paths:
        raise UserError("Give some good images to fit both models on (or use the built-in ones).")
    if len(paths) > MAX_COMPARE_IMAGES:
        raise UserError(f"{len(paths)} images is more than this tab fits twice ({MAX_COMPARE_IMAGES}).")
    out = []
    for i, name in enumerate((a, b)):
        if progress:
            progress(i / 2, f"fitting '{name}'")
        model, _ = fit(paths, device=device, **settings_of(name))
        out.append(model)
    return tuple(out)


def shared_scale(a: Inspection, b: Inspection) -> tuple[float, float]:
    """One (vmin, vmax) for both maps: from half the lower threshold to twice the
    higher (or to the highest score, if higher), as the inspect tab's fixed scale."""
    thr = [t for t in (a.threshold, b.threshold) if t]
    top = max(float(a.anomaly_map.max()), float(b.anomaly_map.max()))
    if not thr:
        return min(float(a.anomaly_map.min()), float(b.anomaly_map.min())), top
    return 0.5 * min(thr), max(2.0 * max(thr), top)


def compare(model_a, model_b, image) -> tuple[Inspection, Inspection, tuple[float, float]]:
    a, b = predict(model_a, image), predict(model_b, image)
    return a, b, shared_scale(a, b)


def overlay_on(insp: Inspection, scale: tuple[float, float]) -> np.ndarray:
    from patchcore_core.util.viz import overlay_heatmap

    return overlay_heatmap(insp.display, insp.anomaly_map, alpha=0.55, vmin=scale[0], vmax=scale[1])


def compare_figure(a: Inspection, b: Inspection, scale, names: tuple[str, str]):
    """Both anomaly maps side by side with one colour bar; each threshold on the bar."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.9), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, insp, name in zip(axes, (a, b), names):
        im = ax.imshow(insp.anomaly_map, cmap="inferno", vmin=scale[0], vmax=scale[1])
        ax.set_title(f"{name}\nscore {insp.score:.1f}, {insp.verdict}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(im, ax=list(axes), fraction=0.046, pad=0.02)
    bar.set_label("score, one scale for both", fontsize=7)
    from matplotlib.lines import Line2D

    marks = []
    for insp, style, name in ((a, "-", names[0]), (b, "--", names[1])):
        if insp.threshold:
            bar.ax.axhline(insp.threshold, color="#00e6ff", lw=2, ls=style)
            marks.append(Line2D([], [], color="#00e6ff", lw=2, ls=style,
                                label=f"threshold of {name}: {insp.threshold:.1f}"))
    if marks:  # which tick on the colour bar is whose
        fig.legend(handles=marks, loc="outside lower center", ncols=len(marks), fontsize=7, frameon=False)
    return fig


# shown even when equal: what a class compares (the JSON has every setting)
CARD_KEYS = ("backbone", "coreset", "coreset_ratio", "memory_bank_size", "memory_bank_mb", "threshold",
             "fit_seconds", "predict_seconds_per_image", "n_train")


def cards_side_by_side(card_a: dict, card_b: dict, names: tuple[str, str], every: bool = False) -> list[dict]:
    """Rows (setting, value A, value B) of the model cards: those that differ
    first, then :data:`CARD_KEYS` (every shared setting if ``every``)."""
    def show(v):
        return ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v

    keys = [k for k in card_a if k in card_b and not isinstance(card_a[k], dict)]
    rows = [{"setting": k, names[0]: show(card_a[k]), names[1]: show(card_b[k])} for k in keys]
    rows = sorted(rows, key=lambda r: r[names[0]] == r[names[1]])
    return rows if every else [r for r in rows if r[names[0]] != r[names[1]] or r["setting"] in CARD_KEYS]


def good_images_for(model, fit_examples: list[str], training_images=None, limit: int = 8) -> list[str]:
    """Good images to compare on when the visitor gives none: the page's
    built-in good images, else the model's own training images that
    ``training_images`` (:class:`demo.training_images.TrainingImages`) finds in
    the demo's trusted folders (a model file's paths are untrusted)."""
    if fit_examples:
        return list(fit_examples)[:limit]
    if training_images is None:
        return []
    return training_images.available(getattr(model, "train_names", []), limit)
