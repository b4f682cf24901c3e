"""Small plotting helpers shared by the notebooks, the demo and the README."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image

__all__ = ["colorize", "overlay_heatmap", "draw_box", "zoom_box"]


def colorize(values: np.ndarray, vmin: float | None = None, vmax: float | None = None,
             cmap: str = "inferno") -> np.ndarray:
    """Map a 2-D array to ``uint8 [H, W, 3]`` colours."""
    values = np.asarray(values, dtype=np.float32)
    lo = float(values.min()) if vmin is None else vmin
    hi = float(values.max()) if vmax is None else vmax
    scaled = np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1)
    return (colormaps[cmap](scaled)[..., :3] * 255).astype(np.uint8)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5,
                    vmin: float | None = None, vmax: float | None = None,
                    cmap: str = "inferno") -> np.ndarray:
    """Blend a heatmap (same height and width) over an RGB ``uint8`` image."""
    colours = colorize(heatmap, vmin, vmax, cmap).astype(np.float32)
    out = (1 - alpha) * np.asarray(image, dtype=np.float32) + alpha * colours
    return out.round().astype(np.uint8)


def draw_box(image: np.ndarray, box: tuple[int, int, int, int], colour=(0, 255, 0),
             width: int = 2) -> np.ndarray:
    """Copy of ``image`` with the rectangle ``(x0, y0, x1, y1)`` outlined."""
    out = np.array(image, copy=True)
    h, w = out.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = max(0, x0 - width), min(w, x1 + width)
    y0, y1 = max(0, y0 - width), min(h, y1 + width)
    out[y0:y0 + width, x0:x1] = colour
    out[y1 - width:y1, x0:x1] = colour
    out[y0:y1, x0:x0 + width] = colour
    out[y0:y1, x1 - width:x1] = colour
    return out


def zoom_box(image: np.ndarray, box: tuple[int, int, int, int], pad: int = 8,
             size: int | None = None) -> np.ndarray:
    """A square window around ``box`` with ``pad`` pixels of context, shifted
    inside the image at its borders (so patches keep their shape); enlarged
    to ``size`` pixels (nearest neighbour) when given."""
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = image.shape[:2]
    side = min(max(x1 - x0, y1 - y0) + 2 * pad, h, w)
    top = min(max(0, y0 - pad), h - side)
    left = min(max(0, x0 - pad), w - side)
    crop = np.asarray(image)[top:top + side, left:left + side]
    if size is None:
        return crop

    return np.asarray(Image.fromarray(crop).resize((size, size), Image.NEAREST))
