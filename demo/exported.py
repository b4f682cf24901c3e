"""A folder written by ``patchcore export``, as the demo's shared model: onnxruntime scores
the images (Inspect, Batch, the Threshold tab's own sets). What needs the PyTorch model's
memory bank with its training patches (Explain) says so instead. No Gradio here.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from patchcore_core.deploy.runtime import PROVENANCE_FILE, Runtime, is_export

from .logic import UserError

__all__ = ["ExportedModel", "NEEDS_PYTORCH", "is_export"]

NEEDS_PYTORCH = ("{what} needs the PyTorch model (the .safetensors file from `patchcore fit`): this demo "
                 "runs an exported folder with onnxruntime, which scores images but keeps no training "
                 "patches to show. Start it with `--model MODEL.safetensors` for {what}.")


class ExportedModel:
    """:class:`~patchcore_core.deploy.runtime.Runtime` with the parts of a PatchCore model the
    demo's pages read: ``predict``, ``display``, ``threshold``, ``summary``, ``config.batch_size``."""

    is_export = True
    is_fitted = True
    device = "cpu"
    train_names: list[str] = []  # an export keeps no image names: no training-image examples

    def __init__(self, folder, precision: str | None = None):
        self.runtime = Runtime(folder, precision=precision)
        s = self.runtime.settings
        self.threshold = self.runtime.threshold
        self.config = SimpleNamespace(**{**s.get("config", {}), "batch_size": self.runtime.batch_size,
                                         "image_size": self.runtime.image_size})
        try:
            self.provenance = json.loads((Path(folder) / PROVENANCE_FILE).read_text())
        except (OSError, ValueError):
            self.provenance = {}

    def predict(self, images, progress: bool = False):
        return self.runtime.predict(images)

    def display(self, image):
        return self.runtime.display(image)

    @property
    def members(self):
        raise UserError(NEEDS_PYTORCH.format(what="Explain"))

    def explain(self, *args, **kwargs):
        raise UserError(NEEDS_PYTORCH.format(what="Explain"))

    def summary(self) -> dict:
        """The model card's fields (those the export records) and the runtime that scores."""
        r, s = self.runtime, self.runtime.settings
        stats = self.provenance.get("source", {}).get("stats", {})
        card = {k: v for k, v in s.get("config", {}).items()}
        card.update({
            "backbone": s.get("backbone"), "layers": s.get("layers"), "image_size": r.image_size,
            "grid": list(r.grid), "feature_dim": int(r.bank.shape[1]), "memory_bank_size": len(r.bank),
            "memory_bank_mb": round(r.bank.nbytes / 2**20, 2), "threshold": self.threshold,
            "device": f"cpu (onnxruntime, {r.precision})",
        })
        for key in ("n_train", "n_patches", "fit_seconds"):
            if key in stats:
                card[key] = stats[key]
        return card
