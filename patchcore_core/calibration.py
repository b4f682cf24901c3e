"""A decision threshold from normal images only.

PatchCore never sees a defect while training, so the threshold cannot be
tuned on defects either. Instead some good training images are held out:
scored against a memory bank built from the others, they show how high a
*normal* image's score goes. The threshold is the highest held-out score,
and scores are reported normalised so that 1.0 is the threshold.

* 10 or more images: one split, ``fraction`` (10%) held out, but at least
  ``min(5, n // 4)`` images: the maximum of two scores is too shaky a
  threshold;
* 2 to 9 images: leave-one-out, each image scored against the others;
* 1 image: no threshold can be calibrated (scores are still reported).
"""

from __future__ import annotations

import random

__all__ = ["calibration_folds", "LEAVE_ONE_OUT_BELOW"]

LEAVE_ONE_OUT_BELOW = 10


def calibration_folds(n: int, fraction: float = 0.1, seed: int = 0
                      ) -> list[tuple[list[int], list[int]]]:
    """Splits of ``n`` good images into (bank images, held-out images).

    Returns an empty list when ``fraction`` is 0 or ``n < 2``.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"calibration fraction must be in [0, 1), not {fraction}")
    if fraction == 0 or n < 2:
        return []
    if n < LEAVE_ONE_OUT_BELOW:
        return [([j for j in range(n) if j != i], [i]) for i in range(n)]
    n_held = max(1, round(n * fraction), min(5, n // 4))
    held = sorted(random.Random(seed).sample(range(n), n_held))
    return [([j for j in range(n) if j not in set(held)], held)]
