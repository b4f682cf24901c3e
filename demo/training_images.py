"""Which training images the demo may show. No Gradio here.

A model file names its training images (``train_names``), and a model file
is untrusted input: it may name ``/etc/passwd``, ``../../secret.png`` or
another visitor's upload. So a name from a model is never opened as it is;
the demo shows a training image only when the name leads to an image file
inside a folder the demo was given on purpose (its built-in images, folders
the operator named on the command line). Nothing a model names widens what
the demo serves or shows.
"""

from __future__ import annotations

import os
from pathlib import Path

from .uploads import is_inside


class TrainingImages:
    """Finds a model's training images in trusted folders.

    Args:
        folders: folders whose images (any depth) may be shown: the built-in
            data, ``--examples DIR``, ``--train-images DIR``. A name is looked up
            as it is (absolute, or relative to the working folder) and by its
            file name directly inside each folder (a downloaded model names
            files only).
    """

    def __init__(self, folders=()):
        self.folders = tuple(dict.fromkeys(os.path.realpath(f) for f in folders if f))

    def find(self, name) -> str | None:
        """The real path of the image ``name`` stands for, if it lies in a
        trusted folder (links and ``..`` resolved first); else None."""
        from patchcore_core.util.images import IMAGE_EXTENSIONS

        if not isinstance(name, str) or not name or "\x00" in name or not self.folders:
            return None
        candidates = [name] + [os.path.join(f, Path(name).name) for f in self.folders]
        for candidate in candidates:
            real = os.path.realpath(candidate)
            if (any(is_inside(real, f) for f in self.folders) and os.path.isfile(real)
                    and Path(real).suffix.lower() in IMAGE_EXTENSIONS):
                return real
        return None

    def available(self, names, limit: int | None = None) -> list[str]:
        """The real paths of those ``names`` that :meth:`find` finds, in order (at most ``limit``)."""
        out = []
        for name in names:
            if limit is not None and len(out) >= limit:
                break
            if (real := self.find(name)) is not None:
                out.append(real)
        return out
