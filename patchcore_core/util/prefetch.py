"""A prefetching reader: the next images are decoded in background threads while the
current ones are scored, so decoding overlaps the backbone instead of adding to it (where
cores are few, it still takes CPU time from it).

    >>> for path, image, error in prefetched(paths, read_image):   # doctest: +SKIP
    ...     ...

PNG and JPEG decoding (Pillow, zlib, libjpeg) release the GIL, so threads overlap it with
the backbone. At most ``ahead`` results wait in memory (images of 79 MP are ~240 MB each).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["prefetched", "DEFAULT_AHEAD", "DEFAULT_WORKERS"]

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_AHEAD = 8    # results decoded ahead of the one being scored
DEFAULT_WORKERS = 2  # decoding threads: one keeps up with the backbone on 2 cores; two cover bursts


def prefetched(items: Iterable[T], load: Callable[[T], R], ahead: int = DEFAULT_AHEAD,
               workers: int = DEFAULT_WORKERS) -> Iterator[tuple[T, R | None, Exception | None]]:
    """``(item, load(item), None)`` for each item in order, or ``(item, None, error)`` where
    ``load`` raised: one unreadable file costs only its own result. ``ahead >= 1`` loads run
    or wait ahead of the consumer; stopping early cancels those not started."""
    if ahead < 1 or workers < 1:
        raise ValueError(f"ahead and workers must be >= 1, got ahead={ahead}, workers={workers}")
    pending: deque[tuple[T, Future]] = deque()
    source = iter(items)
    with ThreadPoolExecutor(workers, thread_name_prefix="prefetch") as pool:
        try:
            for item in source:
                pending.append((item, pool.submit(load, item)))
                if len(pending) > ahead:
                    yield _result(*pending.popleft())
            while pending:
                yield _result(*pending.popleft())
        finally:
            for _, future in pending:  # the consumer stopped early (an error, Ctrl+C)
                future.cancel()


def _result(item, future: Future):
    try:
        return item, future.result(), None
    except Exception as exc:  # the caller decides what an unreadable item means
        return item, None, exc
