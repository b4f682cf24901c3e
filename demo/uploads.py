"""Which files the demo may open on a visitor's behalf.

A request names its files by their path on the server. Gradio checks that
path only when the payload carries Gradio's ``meta`` field; a hand-written
``{"path": "/any/file.png"}`` reaches the event handler as it is, and the
demo would open any file on the server's disk (and, by its error messages,
tell whether a path exists).

The rule, kept here in one place: only a file Gradio stored in its upload
cache (where every upload lands) or one of the demo's own example files may
be opened. Every component that takes a file (:func:`image_input`,
:func:`files_input`) passes each path through :meth:`UploadPolicy.check`; a
new endpoint that receives a path some other way (a zip upload, say) calls
it too. A refusal reads the same whether or not the path exists.
"""

from __future__ import annotations

import os

from .downscale import shrink
from .logic import UserError

REFUSAL = ("This file was not uploaded to the demo, so it cannot be opened. Upload the image itself "
           "(from Python: gradio_client.handle_file).")


class UploadRefused(UserError):
    """A path that is neither in Gradio's upload cache nor a demo example."""


def is_inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives (Windows), or a mix of absolute and relative
        return False


class UploadPolicy:
    """Decides which paths a request may make the demo open.

    Args:
        example_files: the demo's own example images; allowed as they are.
        cache_dir: Gradio's upload cache (default: ``gradio.utils.get_upload_folder()``,
            read at each check, as Gradio reads ``GRADIO_TEMP_DIR``).
    """

    def __init__(self, example_files=(), cache_dir=None):
        self._examples = frozenset(os.path.realpath(p) for p in example_files)
        self._cache_dir = None if cache_dir is None else os.fspath(cache_dir)

    @property
    def cache_dir(self) -> str:
        if self._cache_dir is not None:
            return os.path.realpath(self._cache_dir)
        from gradio.utils import get_upload_folder

        return os.path.realpath(get_upload_folder())

    def check(self, path) -> str:
        """The file's real path (symlinks and ``..`` resolved), if the demo may
        open it; else :class:`UploadRefused`, with the same message whether the
        path is missing, a folder, a link out of the cache or a real file."""
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str) or not path or "\x00" in path:
            raise UploadRefused(REFUSAL)
        # realpath: a link or `..` inside the cache that leads out of it is judged by where it leads
        real = os.path.realpath(path)
        if real in self._examples or (is_inside(real, self.cache_dir) and os.path.isfile(real)):
            return real
        raise UploadRefused(REFUSAL)

    def check_all(self, paths) -> list[str]:
        """:meth:`check` for each path; one refused path refuses the request."""
        return [self.check(p) for p in paths]


def _raise_for_visitor(exc: UploadRefused):
    import gradio as gr

    # gr.Error: the visitor (and an API client) sees this message, never a traceback
    raise gr.Error(str(exc), duration=8) from None


def image_input(policy: UploadPolicy, **kwargs):
    """A ``gr.Image`` (type filepath) that hands over the uploaded file's path,
    checked by ``policy`` (a big image: the path of a small copy, :mod:`demo.downscale`),
    without decoding it otherwise: :func:`patchcore_core.util.images.read_image`
    (corrupt, non-image and oversized files; greyscale, RGBA, 16-bit) is the one
    that judges the file, so the visitor gets its clear message instead of a
    Gradio error.

    (An instance override, not a subclass: Gradio writes a ``.pyi`` file next
    to the source of every Component subclass.)
    """
    import gradio as gr

    image = gr.Image(type="filepath", **kwargs)
    parent = image.preprocess

    def preprocess(payload):
        if payload is None:
            return None
        url = str(getattr(payload, "url", "") or "")
        # a pasted image arrives as a data: URL; Gradio writes it into its cache
        path = parent(payload) if url.startswith("data:") else getattr(payload, "path", None)
        try:
            real = policy.check(path)
        except UploadRefused as exc:
            _raise_for_visitor(exc)
        # a big image is made small once, here: every later step reads the small copy
        return shrink(real, os.path.join(policy.cache_dir, "downscaled"))

    image.preprocess = preprocess
    return image


def files_input(policy: UploadPolicy, **kwargs):
    """A multi-file ``gr.File`` that hands over every uploaded path, whatever
    its type, so :func:`demo.logic.fit` names each unreadable file itself
    instead of Gradio refusing the whole upload. Each path is checked by ``policy``."""
    import gradio as gr

    files = gr.File(file_count="multiple", type="filepath", **kwargs)

    def preprocess(payload):
        if payload is None:
            return None
        items = payload.root if hasattr(payload, "root") else [payload]
        try:
            return policy.check_all(getattr(f, "path", None) for f in items)
        except UploadRefused as exc:
            _raise_for_visitor(exc)

    files.preprocess = preprocess
    return files


def file_input(policy: UploadPolicy, **kwargs):
    """A single-file ``gr.File`` (a zip, say) whose path is checked by ``policy``
    like :func:`files_input`'s; the handler unpacks it with :func:`demo.archives.extract_zip`,
    which bounds what the zip may hold."""
    import gradio as gr

    file = gr.File(file_count="single", type="filepath", **kwargs)

    def preprocess(payload):
        if payload is None:
            return None
        try:
            return policy.check(getattr(payload, "path", None))
        except UploadRefused as exc:
            _raise_for_visitor(exc)

    file.preprocess = preprocess
    return file
