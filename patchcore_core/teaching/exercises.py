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
                 what: str = "your answer", hint: str = "",
                 mistakes: dict[str, float] | None = None) -> Verdict:
    """``answer`` within ``rel`` (relative) or ``abs_tol`` of ``expected``.

    The hint says whether the answer is too high or too low, then ``hint``;
    ``mistakes`` maps a hint to the value a common mistake gives, and an
    answer at that value (and not at ``expected``) gets that hint instead.
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
    for mistake, wrong in (mistakes or {}).items():
        if math.isclose(value, float(wrong), rel_tol=rel, abs_tol=abs_tol):
            return _say(False, f"{what} = {value:.4g} is too {side}: {mistake}")
    return _say(False, f"{what} = {value:.4g} is too {side}. {hint}".strip())


# Exercise id "NN.k" -> its check; :mod:`.checks` fills it (imported with the package, building on
# this module, so this module never imports it).
CHECKS: dict[str, Callable[..., Verdict]] = {}


def check_exercise(exercise: str, *answers_and_data, **data) -> Verdict:
    """The check of exercise ``"NN.k"`` (notebook NN, question k), from :mod:`.checks`: it computes
    what the answer should be from the notebook's data, so that a notebook shows no expected value."""
    if exercise not in CHECKS:
        raise KeyError(f"no check for exercise {exercise!r}; import patchcore_core.teaching, whose "
                       f"checks module registers {sorted(CHECKS) or 'them'}")
    return CHECKS[exercise](*answers_and_data, **data)


def all_of(*verdicts: Verdict) -> Verdict:
    """One verdict for an exercise with several answers (each has printed its own line)."""
    oks = [v.ok for v in verdicts]
    ok = True if all(o is True for o in oks) else (False if False in oks else None)
    return Verdict(ok, "; ".join(v.message for v in verdicts if v.ok is not True) or CORRECT)


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
                   same_set: bool = False, hint: str = "",
                   mistakes: dict[str, Callable] | None = None,
                   describe: Callable[[tuple, np.ndarray, np.ndarray], str] | None = None) -> Verdict:
    """Call ``fn(*case)`` and ``reference(*case)`` for each case and compare.

    ``same_set``: compare the results as sets of values (e.g. chosen indices
    in any order). The hint names the first case that differs and how
    (shape, the largest difference, or the exception raised).

    ``mistakes`` maps a hint to a function that makes a common mistake: when
    the answer agrees with it on the case that differs, that hint is given
    instead of ``hint``. ``describe(case, got, want)`` says in the learner's
    terms how the results differ (e.g. the covering radius each reaches);
    without it the hint gives the largest difference of the values.
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
        if g.shape == w.shape and np.allclose(g, w, rtol=rtol, atol=atol):
            continue
        specific = _matching_mistake(mistakes, case, g, rtol, atol, same_set)
        if g.shape != w.shape:
            return _say(False, f"on case {k}, {what} returned shape {g.shape}, "
                               f"expected {w.shape}. {specific or hint}".strip())
        how = describe(case, g, w) if describe is not None else _how_it_differs(g, w, rtol, atol)
        return _say(False, f"on case {k}, {what} {how}. {specific or hint}".strip())
    return _say(True)


def _how_it_differs(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> str:
    """Where two results of the same shape differ, without giving the expected values away."""
    if got.size == 1:
        return f"returned {got.item():.4g}, too {'high' if got.item() > want.item() else 'low'}"
    wrong = ~np.isclose(got, want, rtol=rtol, atol=atol)
    first = tuple(int(i) for i in np.argwhere(wrong)[0])
    return (f"differs at {int(wrong.sum())} of {got.size} values (the first at index "
            f"{first[0] if len(first) == 1 else first})")


def _matching_mistake(mistakes: dict[str, Callable] | None, case: tuple, got: np.ndarray,
                      rtol: float, atol: float, same_set: bool) -> str:
    """The hint of the first common mistake whose result on ``case`` is the learner's, or ""."""
    for hint, wrong in (mistakes or {}).items():
        try:
            w = _to_numpy(wrong(*case))
        except Exception:  # a mistake that cannot run on this case explains nothing
            continue
        if same_set:
            w = np.unique(w)
        if w.shape == got.shape and np.allclose(got, w, rtol=rtol, atol=atol):
            return hint
    return ""


def first_difference(got, want) -> int | None:
    """Position of the first element where two sequences differ (or where one ends), or None."""
    got, want = list(np.ravel(got)), list(np.ravel(want))
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return i
    return None if len(got) == len(want) else min(len(got), len(want))


def covering_radius(points, centres) -> float:
    """Largest distance from a point to its nearest centre (``centres``: indices into ``points``)."""
    points = np.asarray(points, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.int64).ravel()
    if centres.size == 0:
        return math.inf
    d = np.linalg.norm(points[:, None] - points[centres][None], axis=2)
    return float(d.min(axis=1).max())


def describe_coreset(points, got, want) -> str:
    """How a learner's greedy picks differ from the reference's, in the learner's terms: the
    covering radius each set of picks reaches and the first pick that differs."""
    got = np.asarray(got).ravel()
    want = np.asarray(want).ravel()
    r_got, r_want = covering_radius(points, got.astype(np.int64)), covering_radius(points, want)
    i = first_difference(got, want)
    if i is None or i >= min(len(got), len(want)):
        where = ""
    elif i == 0:
        where = f"; its first pick is point {int(got[0])}, but the first centre is given: `first`"
    else:
        where = (f"; pick {i + 1} is the first that differs: yours is point {int(got[i])}, "
                 f"{_distance_to(points, got[:i], got[i]):.3g} from its nearest centre so far, while the "
                 f"worst-covered point then is {_distance_to(points, want[:i], want[i]):.3g} away")
    return f"reaches covering radius {r_got:.4g} with its picks, the greedy reference {r_want:.4g}{where}"


def _distance_to(points, centres, point) -> float:
    points = np.asarray(points, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.int64)
    if centres.size == 0:
        return math.nan
    return float(np.linalg.norm(points[centres] - points[int(point)], axis=1).min())
