"""Every notebook's setup cell in one call: seeds, device, FAST mode, the
data and its category, the plot style.

    >>> setup = notebook_setup(default_category="brick")   # doctest: +SKIP
    >>> print(setup)                                        # doctest: +SKIP
    brick: 24 good training images, 28 test images (defects: hole, patch, scratch, stain); FAST=False

The environment picks the data without editing a notebook (what CI and
``notebooks/run_notebooks.py --data`` do): ``PATCHCORE_DATA_ROOT`` and
``PATCHCORE_CATEGORY``; ``PATCHCORE_DEVICE``; ``CI`` (any value) for FAST mode.
Arguments given in the cell win over the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from patchcore_core.data.builtin import builtin_root
from patchcore_core.data.mvtec import MVTecCategory

__all__ = ["NotebookSetup", "notebook_setup", "PLOT_STYLE"]

# Figures readable on a projector and in a browser at 100%.
PLOT_STYLE = {"figure.dpi": 80, "font.size": 12, "axes.titlesize": 13}


@dataclass
class NotebookSetup:
    """What a notebook's setup cell defines; ``str()`` is its one-line summary."""

    seed: int
    device: str       # "auto": a GPU when there is one, else the CPU
    fast: bool        # smaller sweeps when run by CI
    data_root: Path
    category: str
    cat: MVTecCategory

    def __str__(self) -> str:
        cat = self.cat
        return (f"{self.category}: {len(cat.train)} good training images, {len(cat.test)} test images "
                f"(defects: {', '.join(cat.defects)}); FAST={self.fast}")


def notebook_setup(data_root=None, category: str | None = None, *, default_category: str = "brick",
                   default_root: Callable[[], Path] = builtin_root, seed: int = 0) -> NotebookSetup:
    """Seed torch and numpy, read the environment, style the plots, and open the category.

    ``data_root``: given, it is used (``~`` expanded); else ``PATCHCORE_DATA_ROOT``, else
    ``default_root()`` (the built-in data, written on first use, so it is only called when needed).
    ``category``: given, it is used; else ``PATCHCORE_CATEGORY``, else ``default_category``.
    A missing category raises :class:`~patchcore_core.util.images.DataError` naming the ones found.
    """
    torch.manual_seed(seed)
    np.random.seed(seed)
    device = os.environ.get("PATCHCORE_DEVICE", "auto")
    fast = bool(os.environ.get("CI"))
    if data_root is not None:
        root = Path(data_root).expanduser()
    else:
        root = Path(os.environ.get("PATCHCORE_DATA_ROOT") or default_root())
    category = category if category is not None else os.environ.get("PATCHCORE_CATEGORY", default_category)

    import matplotlib.pyplot as plt  # the library imports plotting lazily

    plt.rcParams.update(PLOT_STYLE)
    return NotebookSetup(seed=seed, device=device, fast=fast, data_root=root, category=category,
                         cat=MVTecCategory(root, category))
