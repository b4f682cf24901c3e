"""Exercise checks for the notebooks.

Each check prints one line, ``correct`` or a hint that says what is off,
and returns a :class:`Verdict` whose ``ok`` is ``True`` (correct), ``False``
(wrong) or ``None`` (not answered yet); a notebook shows nothing more.
A check never raises: a student edition runs from top to bottom with
every exercise still open. An answer is "not answered yet" while it is
``...`` (the starter cells' placeholder) or ``None``, and a function is
while it raises ``NotImplementedError``::

    answer = ...                                   # starter cell
    exercises.check_number(answer, expected=0.25, what="the fraction caught")

    def image_score(d): raise NotImplementedError  # starter cell
    exercises.check_function(image_score, reference, cases=[(d,)], what="image_score")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CORRECT = "correct"
NOT_ANSWERED = "not answered yet"


@dataclass(frozen=True)
class Verdict:
    """What a check found: ``ok`` True, False or None (not answered yet), and the line it printed."""

    ok: bool | None
    message: str

    def __bool__(self) -> bool:
        return self.ok is True

    def _ipython_display_(self):  # the printed line says it all; show no "Out[...]"
        pass


def is_unanswered(value) -> bool:
    return value is ... or value is None


def _say(ok: bool | None, message: str = "") -> Verdict:
    head = {True: CORRECT, False: "not quite", None: NOT_ANSWERED}[ok]
    line = f"{head}: {message}" if message and ok is not True else head
    print(line)
    return Verdict(ok, line)


def _as_float(value) -> float:
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:  # numpy or torch scalars
        value = value.item()
    return float(value)


def check_number(answer, expected: float, *, rel: float = 0.02, abs_tol: float = 1e-9,
                 what: str = "your answer", hint: str = "") -> Verdict:
    """``answer`` within ``rel`` (relative) or ``abs_tol`` of ``expected``.

    The hint says whether the answer is too high or too low, then ``hint``.
    """
    if is_unanswered(answer):
        return _say(None, f"set {what}")
    try:
        value = _as_float(answer)
    except (TypeError, ValueError):
        return _say(False, f"{what} should be a number, not {type(answer).__name__} {answer!r:.60}")
    expected = float(expected)
    if math.isclose(value, expected, rel_tol=rel, abs_tol=abs_tol):
        return _say(True)
    side = "high" if value > expected else "low"
    return _say(False, f"{what} = {value:.4g} is too {side}. {hint}".strip())


def check_choice(answer, expected: str, hints: dict[str, str] | None = None,
                 what: str = "your answer") -> Verdict:
    """``answer`` equals ``expected`` (strings compared without case or spaces
    at the ends); ``hints`` maps a wrong choice to the hint it deserves."""
    if is_unanswered(answer):
        return _say(None, f"set {what}")
    hints = hints or {}
    given = str(answer).strip().lower()
    if given == expected.strip().lower():
        return _say(True)
    options = sorted({expected, *hints})
    if given not in {o.lower() for o in options}:
        return _say(False, f"{what} should be one of {options}, not {answer!r}")
    return _say(False, hints.get(given, hints.get(str(answer), "look again at the figure above")))


def check_true(answer, condition: bool, *, what: str = "your answer", hint: str = "") -> Verdict:
    """For answers judged by a condition the caller computes (``condition``)."""
    if is_unanswered(answer):
        return _say(None, f"set {what}")
    return _say(True) if condition else _say(False, hint or f"{what} does not hold yet")


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensors
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def check_function(fn: Callable, reference: Callable, cases: Sequence[tuple], *,
                   what: str | None = None, rtol: float = 1e-4, atol: float = 1e-6,
                   same_set: bool = False, hint: str = "") -> Verdict:
    """Call ``fn(*case)`` and ``reference(*case)`` for each case and compare.

    ``same_set``: compare the results as sets of values (e.g. chosen indices
    in any order). The hint names the first case that differs and how
    (shape, the largest difference, or the exception raised).
    """
    what = what or getattr(fn, "__name__", "your function")
    if is_unanswered(fn):
        return _say(None, f"define {what}")
    for k, case in enumerate(cases, 1):
        try:
            got = fn(*case)
        except NotImplementedError:
            return _say(None, f"{what} still raises NotImplementedError: replace it with your code")
        except Exception as exc:  # a student's bug is a hint, never a crash
            return _say(False, f"{what} raised {type(exc).__name__} on case {k}: {exc}")
        if got is None:
            return _say(None, f"{what} returns None: return your result")
        want = reference(*case)
        try:
            g, w = _to_numpy(got), _to_numpy(want)
        except (TypeError, ValueError) as exc:
            return _say(False, f"{what} should return numbers; case {k} gave {type(got).__name__}: {exc}")
        if same_set:
            g, w = np.unique(g), np.unique(w)
        if g.shape != w.shape:
            return _say(False, f"on case {k}, {what} returned shape {g.shape}, "
                               f"expected {w.shape}. {hint}".strip())
        if not np.allclose(g, w, rtol=rtol, atol=atol):
            diff = float(np.max(np.abs(g - w))) if g.size else 0.0
            return _say(False, f"on case {k}, {what} differs from the expected result "
                               f"(largest difference {diff:.4g}). {hint}".strip())
    return _say(True)
