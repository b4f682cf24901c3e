"""Which numbers a request may hand the demo.

Gradio checks a slider's or a number field's value against its minimum and
maximum, but NaN passes every comparison ("At nan: 16 missed"), and a number
field with ``precision=0`` rounds infinity to an ``OverflowError`` before the
demo sees it. So every numeric input is checked here first: a finite number
(within its range, where the range is fixed), else a message naming the field
and what it accepts.
"""

from __future__ import annotations

import math
import numbers

from .logic import UserError


def check_number(value, what: str, lo: float | None = None, hi: float | None = None,
                 meaning: str = "") -> float:
    """``value`` as a float if it is a finite number in ``[lo, hi]``; else
    :class:`UserError` naming ``what`` and the accepted range."""
    span = (f" from {lo:g} to {hi:g}" if lo is not None and hi is not None
            else f" of at least {lo:g}" if lo is not None
            else f" of at most {hi:g}" if hi is not None else "")
    wanted = f"{what} must be a number{span}" + (f" ({meaning})" if meaning else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{wanted}, not {value!r:.40}.")
    value = float(value)
    if not math.isfinite(value):
        raise UserError(f"{wanted}, not {value}.")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UserError(f"{wanted}; {value:g} is out of range.")
    return value


def finite_input(component, what: str):
    """``component`` (a ``gr.Slider`` or ``gr.Number``) refusing NaN, infinity
    and non-numbers with a message, before Gradio's own range check and rounding.
    (An instance override, like :mod:`demo.uploads`: Gradio's ``preprocess`` still runs.)

    A handler that returns a new range for the component (``gr.Slider(minimum=...)``)
    gets a fresh Gradio copy for that session, without this check: its handler
    checks the value with :func:`check_number` too (Gradio's copy still refuses infinity
    as out of range)."""
    import gradio as gr

    parent = component.preprocess

    def preprocess(payload):
        if payload is not None:
            try:
                check_number(payload, what)
            except UserError as exc:
                # gr.Error: the visitor (and an API client) sees this message, never a traceback
                raise gr.Error(str(exc), duration=8) from None
        return parent(payload)

    component.preprocess = preprocess
    return component
