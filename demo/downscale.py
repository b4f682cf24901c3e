"""Big uploads are made small once, on arrival.

The model looks at a 224 px crop, but a visitor may upload a 79-megapixel PNG:
decoded, that is ~320 MB, and every step of a visit (predict, the most anomalous
patch, each click on the heatmap) used to decode it again, several visitors at
once. So an image input hands over a copy at most :data:`MAX_SIDE` px on its
longer side, made once per upload and kept next to Gradio's other cached files:

* JPEG is decoded at a reduced scale (Pillow's ``draft``: 1/2 to 1/8) and never
  at full size; other formats must be decoded whole, but only by the
  :data:`MAX_DECODES` threads of this module, one image each at a time. So the
  memory that big uploads take is bounded whatever the number of visitors: the
  allocator keeps a freed decode buffer in the thread that used it, and thirty
  request threads each decoding once would keep thirty of them.
* A file that is not an image, too large or corrupt is handed over as it is:
  :func:`demo.logic.check_image` reads it and gives the visitor its message.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

MAX_SIDE = 1024      # px: four times the model's input; the demo never shows more
MAX_DECODES = 2      # full-size decodes at once, server-wide (one per core of the 2-core demo machine)
_decoders = ThreadPoolExecutor(MAX_DECODES, thread_name_prefix="downscale")


def _small_copy_path(real: str, folder: str) -> Path:
    """Where the small copy of ``real`` lives: named by the file's path, size and time,
    so an upload is shrunk once and a changed file is shrunk again."""
    st = os.stat(real)
    key = hashlib.sha256(f"{real}\0{st.st_size}\0{st.st_mtime_ns}\0{MAX_SIDE}".encode()).hexdigest()[:32]
    return Path(folder) / f"small-{key}" / f"{Path(real).stem}.png"


def shrink(path: str, folder: str, max_side: int = MAX_SIDE) -> str:
    """``path`` if its image is at most ``max_side`` px on each side (or is no readable
    image: its reader says why); else the path of a copy that is, in ``folder``."""
    from patchcore_core.util.images import MAX_PIXELS

    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception:  # not an image, or over Pillow's own bound: check_image names it
        return path
    if max(w, h) <= max_side or w * h > MAX_PIXELS:
        return path
    target = _small_copy_path(os.path.realpath(path), folder)
    if target.is_file():
        return str(target)
    return _decoders.submit(_make_small, path, target, max_side).result()


def _make_small(path: str, target: Path, max_side: int) -> str:
    """Write the small copy of ``path`` to ``target`` (in a decoder thread); its path,
    or ``path`` when the image data is corrupt (check_image names it)."""
    from patchcore_core.util.atomic import atomic_path
    from patchcore_core.util.images import DataError, read_image

    if target.is_file():  # another request for the same upload made it meanwhile
        return str(target)
    try:
        with Image.open(path) as img:
            img.draft(img.mode, (max_side, max_side))  # JPEG: decoded at 1/2..1/8 scale
            img.load()
            try:  # small first, then converted: a full-size RGB copy would double the memory
                img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
                small = read_image(img)  # 16-bit, palette, transparency -> RGB, as predict reads it
            except ValueError:  # a mode that resize cannot take: convert first
                small = read_image(img)
                small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    except (DataError, OSError, ValueError, SyntaxError):
        return path
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        small.save(tmp, format="PNG")
    return str(target)
