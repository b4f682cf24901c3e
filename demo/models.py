"""The models a demo page shows: the model card, the cached default model
and the built-in examples. No Gradio here.
"""

from __future__ import annotations

import os
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from .logic import UserError
from .uploads import is_inside

CARD_ROWS = [
    ("backbone", "Backbone (frozen, ImageNet-pretrained)"),
    ("members", "Ensemble members (scores standardised, then averaged)"),
    ("member_summary", "Each member: backbone, memory bank, threshold"),
    ("layers", "Feature layers"),
    ("image_size", "Image size (px, after resize + centre crop)"),
    ("grid", "Patch grid"),
    ("feature_dim", "Stored feature width"),
    ("n_train", "Training images (all good)"),
    ("n_patches", "Patches before the coreset"),
    ("memory_bank_size", "Memory bank size (patches)"),
    ("memory_bank_mb", "Memory bank size (MB)"),
    ("coreset", "Coreset method"),
    ("coreset_ratio", "Coreset ratio"),
    ("threshold", "Threshold (score)"),
    ("fit_seconds", "Fit time (s)"),
    ("predict_seconds_per_image", "Predict time per image (s)"),
    ("device", "Device"),
]


def model_card(model) -> dict:
    """The model's summary as a JSON-friendly dict."""
    card = {}
    summary = model.summary()
    if "member_cards" in summary:  # an ensemble: one line per member in the table
        summary["member_summary"] = [f"{m['backbone']} ({m['memory_bank_size']} patches, threshold "
                                     f"{m['threshold']:.4g})" if m.get("threshold") else m["backbone"]
                                     for m in summary["member_cards"]]
    for k, v in summary.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        card[k] = list(v) if isinstance(v, tuple) else v
    return card


def card_markdown(card: dict, label: str = "") -> str:
    """The card as a Markdown table: the named rows first, then every other setting."""
    from patchcore_core import PatchCoreConfig
    from patchcore_core.util.tables import markdown_table

    def fmt(v):
        if v is None:
            return "none (fit on 2+ images)"
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list):
            return " x ".join(map(str, v)) if all(isinstance(i, int) for i in v) else ", ".join(map(str, v))
        return str(v)

    rows = []
    for key, name in CARD_ROWS:
        if key in card:
            rows.append({"Setting": name, "Value": fmt(card[key])})
        elif key == "predict_seconds_per_image":
            rows.append({"Setting": name, "Value": "not measured yet: inspect an image"})
    named = {k for k, _ in CARD_ROWS}
    for f in fields(PatchCoreConfig):  # every other setting, as the config names it
        if f.name in card and f.name not in named:
            value = fmt(card[f.name]) if card[f.name] is not None else "default"
            rows.append({"Setting": f"{f.name}: {f.metadata.get('help', '')}", "Value": value})
    return (f"### {label}\n\n" if label else "") + markdown_table(rows)


# ----------------------------------------------------------- default model
def default_model_path(category: str, cache_dir=None) -> Path:
    from patchcore_core.data.builtin import default_cache_dir
    from patchcore_core.io.model_file import FORMAT_VERSION

    base = Path(cache_dir) if cache_dir else default_cache_dir()
    return base / "demo" / f"builtin-{category}-efficientnet_lite0-v{FORMAT_VERSION}.safetensors"


def load_or_build_default(category: str = "brick", device: str = "auto", cache_dir=None,
                          say=print):
    """The default model: loaded from the cache, or fitted on the built-in
    ``category`` and cached (atomically) for the next start."""
    from patchcore_core import PatchCore, load, save
    from patchcore_core.data.builtin import CATEGORIES, builtin_root
    from patchcore_core.data.mvtec import MVTecCategory
    from patchcore_core.io.model_file import ModelFileError

    if category not in CATEGORIES:
        raise UserError(f"unknown built-in category {category!r}; choose one of {', '.join(CATEGORIES)}")
    path = default_model_path(category, cache_dir)
    root = builtin_root(cache_dir=cache_dir)
    if path.is_file():
        try:
            model = load(path, device=device)
            if all(os.path.exists(n) for n in model.train_names):
                say(f"loaded the default model from {path}")
                return model
            say(f"{path}: its training images moved; refitting")
        except ModelFileError as exc:
            say(f"{exc}; refitting")
    t0 = time.perf_counter()
    say(f"fitting the default model on the built-in '{category}' images (once; ~10-30 s on a CPU) ...")
    cat = MVTecCategory(root, category)
    model = PatchCore(device=device).fit([str(p) for p in cat.train], progress=False)
    save(model, path)  # temp file + rename: never a half-written model
    say(f"fitted in {time.perf_counter() - t0:.1f} s; cached at {path}")
    return model


def builtin_examples(category: str = "brick", cache_dir=None) -> list[tuple[str, str]]:
    """(path, label) of built-in test images: two good ones and one per defect type."""
    from patchcore_core.data.builtin import builtin_root
    from patchcore_core.data.mvtec import MVTecCategory

    cat = MVTecCategory(builtin_root(cache_dir=cache_dir), category)
    out, seen = [], {}
    for item in cat.test:
        n = seen.get(item.defect, 0)
        if n < (2 if item.defect == "good" else 1):
            out.append((str(item.path), f"{item.defect} {n + 1}" if item.defect == "good" else item.defect))
            seen[item.defect] = n + 1
    return out


def known_object(model, category: str | None = None) -> str | None:
    """What the model was fitted on: the built-in ``category``, else the
    folder above ``train/good`` in its training images' paths (MVTec layout);
    None when the paths do not say (a downloaded model names files only)."""
    if category:
        return category
    for name in getattr(model, "train_names", []):
        parts = Path(name).parts
        if len(parts) >= 4 and parts[-3:-1] == ("train", "good"):
            return parts[-4]
    return None


def model_examples(model, examples_dir=None, limit: int = 6,
                   training_images=None) -> list[tuple[str, str]]:
    """Examples that fit a loaded model: the images of ``examples_dir``, else a
    few of the model's own training images that ``training_images`` (a
    :class:`demo.training_images.TrainingImages`) finds in its trusted folders,
    else none. The model's own paths are never taken as they are: a model file
    is untrusted input."""
    from patchcore_core.data.mvtec import image_folder
    from patchcore_core.util.images import DataError

    if examples_dir:
        try:
            paths = image_folder(examples_dir)
        except DataError as exc:
            raise UserError(str(exc)) from None
        # only images that stay in the folder: a link out of it would be served as an example
        root = os.path.realpath(examples_dir)
        paths = [p for p in paths if is_inside(os.path.realpath(p), root)]
        return [(str(p), p.stem) for p in paths[:4 * limit]]
    if training_images is None:
        return []
    own = training_images.available(getattr(model, "train_names", []), limit)
    return [(n, f"training image {Path(n).name} (good)") for n in own]
