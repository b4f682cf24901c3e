"""What the autograder's test files use (``notebooks/grading/tests/NN.k.py``, run by otter-grader).

* :func:`references_disabled`: while it is active, the package's own
  implementation of every function exercise raises :class:`ReferenceDisabled`,
  so an answer that only calls (wraps) the package's function fails, while
  one written from primitives (numpy, torch, scipy) passes;
* :func:`expect`: run a check of :mod:`.checks` quietly and fail with its hint
  (a public test: says what is off, shows no expected value);
* :func:`matches`: compare a learner's function with a reference on cases the
  notebook never shows, the learner's running with the references disabled (a hidden test).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
from collections.abc import Callable, Iterator, Sequence

from . import exercises
from .exercises import Verdict, check_function

# The package's implementations of what the function exercises ask for, as "module:name".
REFERENCES = (
    "patchcore_core.pipeline.features:local_aggregate",            # 01.1
    "patchcore_core.pipeline.features:aggregate_layers",
    "patchcore_core.pipeline.features:patch_features",
    "patchcore_core.pipeline.coreset:reference_greedy_coreset",    # 02.1, 02.2
    "patchcore_core.pipeline.coreset:greedy_coreset",
    "patchcore_core.pipeline.coreset:covering_radius",
    "patchcore_core.ext.composable:composable_greedy_coreset",
    "patchcore_core.ext.composable:covering_radius_faiss",
    "patchcore_core.teaching.toy:greedy_kcenter",
    "patchcore_core.teaching.toy:covering_radius_2d",
    "patchcore_core.teaching.exercises:covering_radius",
    "patchcore_core.pipeline.memory_bank:knn_search",              # 03.1, 03.2
    "patchcore_core.pipeline.scoring:image_scores",
    "patchcore_core.pipeline.scoring:reweighted_image_scores",
    "patchcore_core.evaluation.metrics:pro_curve",                 # 04.3
    "patchcore_core.evaluation.metrics:aupro",
    "patchcore_core.cluster.bank:merge_shard_answers",             # 07.1
    "patchcore_core.teaching.shards:merged_nearest",
    "patchcore_core.evaluation.search:recall_at_1",                # 07.3
    "patchcore_core.teaching.baselines:padim_scores",              # 09.1
    "patchcore_core.teaching.logical:count_parts",                 # 10.2
)
# The capstone (11) asks for every step from primitives, so its checks and hidden tests disable these too
# (not by default: a learner's answer elsewhere may use the model, which calls them).
CAPSTONE_REFERENCES = REFERENCES + (
    "patchcore_core.teaching.capstone:package_embed",              # 11.2
    "patchcore_core.pipeline.features:PatchEmbedding",
    "patchcore_core.pipeline.coreset:random_projection",           # 11.3
    "patchcore_core.pipeline.scoring:anomaly_map",                 # 11.7
)


class ReferenceDisabled(RuntimeError):
    """Raised by a disabled reference: the exercise is to write it, not to call it."""


def _stub(qualified: str) -> Callable:
    def disabled(*args, **kwargs):
        raise ReferenceDisabled(f"the grader disabled {qualified}: this exercise asks you to write it "
                                f"yourself, not to call the package's implementation")
    disabled.__name__ = disabled.__qualname__ = qualified.rsplit(".", 1)[-1]
    return disabled


def _references(names: Sequence[str]) -> dict[int, tuple[object, Callable]]:
    """id(reference) -> (reference, its stub)."""
    found = {}
    for spec in names:
        module_name, attr = spec.split(":")
        obj = getattr(importlib.import_module(module_name), attr)
        found[id(obj)] = (obj, _stub(f"{module_name}.{attr}"))
    return found


@contextlib.contextmanager
def references_disabled(env: dict | None = None, names: Sequence[str] = REFERENCES) -> Iterator[None]:
    """Replace each reference in ``names`` by a stub that raises :class:`ReferenceDisabled`: in its
    module, in every loaded ``patchcore_core`` module that imported it, and under every name of
    ``env`` (a notebook's globals) bound to it, whatever the name. Everything is restored after."""
    refs = _references(names)
    namespaces = [vars(m) for name, m in list(sys.modules.items())
                  if m is not None and (name == "patchcore_core" or name.startswith("patchcore_core."))]
    if env is not None:
        namespaces.append(env)
    replaced: list[tuple[dict, str, object]] = []
    try:
        for ns in namespaces:
            for key, value in list(ns.items()):
                hit = refs.get(id(value))
                if hit is not None and hit[0] is value:
                    replaced.append((ns, key, value))
                    ns[key] = hit[1]
        yield
    finally:
        for ns, key, value in reversed(replaced):
            ns[key] = value


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def expect(check: Callable[..., exercises.Verdict], *args, **kwargs) -> None:
    """Run ``check(*args, **kwargs)`` without printing; fail with its line unless it says correct."""
    with _quiet():
        verdict = check(*args, **kwargs)
    assert verdict.ok is True, verdict.message


def matches(fn, reference: Callable, cases: Sequence[tuple], env: dict | None = None, **kwargs) -> None:
    """Fail unless ``fn(*case)`` gives ``reference(*case)`` on every case, ``fn`` running with the
    references disabled (``reference`` runs first, with them working). ``env``: the notebook's
    globals; ``kwargs`` go to :func:`exercises.check_function` (``what``, ``rtol``, ``mistakes``, ...)."""
    with _quiet():
        verdict = compare_function(fn, reference, cases, env, **kwargs)
    assert verdict.ok is True, verdict.message.replace("on case", "on hidden case")


def compare_function(fn, reference: Callable, cases: Sequence[tuple], env: dict | None = None,
                     references: Sequence[str] = REFERENCES, **kwargs) -> Verdict:
    """:func:`exercises.check_function`, with ``fn`` run with the package's ``references`` disabled
    (``reference`` runs first, with them working). ``env``: the learner's namespace (default: the
    globals ``fn`` was defined in)."""
    if exercises.is_unanswered(fn):
        return check_function(fn, reference, cases, **kwargs)
    wants = [reference(*case) for case in cases]
    outcomes = []
    with references_disabled(getattr(fn, "__globals__", None) if env is None else env, references):
        for case in cases:
            try:
                outcomes.append((True, fn(*case)))
            except Exception as exc:  # replayed below, where check_function words it
                outcomes.append((False, exc))
                break
    by_case = {case_key(case): (want, out) for case, want, out in zip(cases, wants, outcomes)}

    def replay(*case):
        returned, value = by_case[case_key(case)][1]
        if not returned:
            raise value
        return value

    replay.__name__ = getattr(fn, "__name__", "your function")
    kwargs.setdefault("what", replay.__name__)
    return check_function(replay, lambda *case: by_case[case_key(case)][0], cases[:len(outcomes)], **kwargs)


def case_key(case: tuple) -> tuple:
    return tuple(id(c) for c in case)
