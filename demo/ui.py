"""What every tab of the page shares: the visitor's error messages and the
page's context (the shared model, the upload rule, the session's model).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from . import logic

log = logging.getLogger("demo")

# A session's fitted models are dropped this long after they were last set,
# even if Gradio never hears that the visitor left (an API client, a laptop lid).
# (PATCHCORE_DEMO_SESSION_TTL: shorter for tests and the load benchmark.)
SESSION_TTL_S = float(os.environ.get("PATCHCORE_DEMO_SESSION_TTL", 30 * 60))


def warn(msg: str) -> str:
    gr.Warning(msg, duration=8)
    return f"**Problem:** {msg}"


def failure(exc: Exception) -> str:
    """The visitor's message for any exception: theirs to fix, or ours (logged)."""
    if isinstance(exc, logic.UserError):
        return warn(str(exc))
    log.exception("demo handler failed")
    # the details (which may name server paths) go to the log, not to the visitor
    return warn(f"Something went wrong on our side ({type(exc).__name__}). "
                "Try another image; the app keeps running.")


def starting(text: str):
    """A handler that shows ``text`` at once (``queue=False``), so an old "Problem:" or an old
    result's summary does not stay on the page while new work runs."""
    return lambda: text


def session_state() -> gr.State:
    """A ``gr.State`` for something big (a fitted model, a scored set): freed
    when the session ends or after :data:`SESSION_TTL_S`, whichever comes first."""
    return gr.State(None, time_to_live=SESSION_TTL_S)


class Held(dict):
    """A session's big things (a fitted model, a scored set) as kept in a ``gr.State``.

    Gradio keeps a closed page's state for an hour (so a reload can resume);
    :meth:`SessionRegistry.release` empties these at once instead.
    """


class SessionRegistry:
    """Which :class:`Held` objects each session made (weakly: Gradio's state owns them)."""

    def __init__(self):
        self._held: dict[str, list] = {}
        self._lock = threading.Lock()

    def hold(self, request, **items) -> Held:
        held = Held(items)
        key = getattr(request, "session_hash", None) or ""
        with self._lock:
            refs = [r for r in self._held.get(key, []) if r() is not None]
            self._held[key] = refs + [weakref.ref(held)]
        return held

    def release(self, request) -> int:
        """Empty every :class:`Held` of ``request``'s session (its page closed); how many."""
        with self._lock:
            refs = self._held.pop(getattr(request, "session_hash", None) or "", [])
        alive = [r() for r in refs if r() is not None]
        for held in alive:
            held.clear()  # the model goes with its last reference
        return len(alive)

    def live(self) -> int:
        """How many :class:`Held` objects still hold something (tests, the load benchmark)."""
        with self._lock:
            return sum(1 for refs in self._held.values() for r in refs if r() is not None and r())


@dataclass
class PageContext:
    """What the tabs need from the page."""

    model: Any                       # the shared default model (read only)
    model_label: str
    uploads: Any                     # demo.uploads.UploadPolicy
    fit_device: str
    category: str | None = None      # the built-in category the default model knows, if any
    fit_examples: list[str] = field(default_factory=list)
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    training_images: Any = None      # demo.training_images.TrainingImages: the shared model's
    _builtin: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def active(self, session):
        """(model, label) for this session: its own model or the shared default."""
        if session and "model" in session:  # an emptied Held: the page closed; back to the default
            return session["model"], session["label"]
        return self.model, self.model_label

    def object_of(self, session):
        """The built-in category the model in use was fitted on, if any: the shared model's
        ``category``, or a session's model fitted on the page's built-in good images only."""
        model, _ = self.active(session)
        if model is self.model:
            return self.category
        builtin = {os.path.realpath(p) for p in self.fit_examples}
        names = getattr(model, "train_names", [])
        if builtin and names and all(os.path.realpath(n) in builtin for n in names):
            return self.category
        return None

    def training_image_finder(self, model):
        """Where Explain may read ``model``'s training images from: for the shared model
        (a model file: untrusted names) the trusted folders only; for a model fitted in a
        session, the files that session was allowed to fit on (its uploads, the examples)."""
        if model is self.model:
            return self.training_images.find if self.training_images else (lambda name: None)

        def find(name):
            try:
                return self.uploads.check(name)
            except logic.UserError:  # UploadRefused
                return None
        return find

    def builtin_model(self, category: str):
        """The built-in model of ``category`` (fitted once, cached on disk and here)."""
        from .models import load_or_build_default

        with self._lock:  # two visitors asking at once fit it once
            if category not in self._builtin:
                self._builtin[category] = load_or_build_default(category, device=self.fit_device,
                                                                say=log.info)
            return self._builtin[category]
