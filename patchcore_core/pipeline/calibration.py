"""A decision threshold from normal images only.

PatchCore never sees a defect while training, so the threshold cannot be
tuned on defects either. Instead some good training images are held out:
scored against a memory bank built from the others, they show how high a
*normal* image's score goes. Scores are reported normalised so that 1.0 is
the threshold.

Which held-out images (:func:`calibration_folds`):

* 10 or more images: one split, ``fraction`` (10%) held out, but at least
  ``min(5, n // 4)`` images: the maximum of two scores is too shaky a
  threshold;
* 2 to 9 images: leave-one-out, each image scored against the others;
* 1 image: no threshold can be calibrated (scores are still reported).

Where the threshold goes (:func:`threshold_from_scores`):

* ``false_alarm_rate=None``: the largest held-out score. Tight: with five
  held-out images, a good image has about a 1 in 6 chance to score above the
  largest of them (the order-statistics rule), whatever the scores are.
* ``false_alarm_rate=a``: the score a good image exceeds with probability
  ``a``, from a distribution fitted to the held-out scores (see
  :func:`fitted_threshold` for the fit and its assumptions).
"""

from __future__ import annotations

import math
import random

from scipy.stats import t

__all__ = ["calibration_folds", "threshold_from_scores", "fitted_threshold", "LEAVE_ONE_OUT_BELOW",
           "MIN_SCORES_TO_FIT", "DEFAULT_FALSE_ALARM_RATE"]

LEAVE_ONE_OUT_BELOW = 10
MIN_SCORES_TO_FIT = 3  # a spread from two numbers is a guess; fewer: the largest score is the threshold
# The default (config.false_alarm_rate): 0, the largest held-out score. Measured with
# benchmarks/bench_threshold.py on the real sets of ../shared/data (README, "The threshold in
# practice"): with the 5 held-out scores of a small set, a fitted 5% bound sits so high that grid
# missed 24 of 33 defects (the largest score: 7) to save 3 false alarms in 27 good images; with many
# held-out scores (magnetic tile: 76) both give the same threshold (2/191 false alarms, 99/392
# misses). A stated rate is an option, not the default.
DEFAULT_FALSE_ALARM_RATE = 0.0


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


def fitted_threshold(scores: list[float], false_alarm_rate: float) -> float:
    """The score a new good image exceeds with probability ``false_alarm_rate``.

    Assumptions, each a choice that can be wrong on your data:

    * the held-out scores are independent draws from the distribution of
      good images' scores (so held-out images must be like the good images
      you will inspect: same camera, same product variant);
    * that distribution is **log-normal**: scores are positive distances
      with a long right tail, and their logarithms are close to normal on
      the real sets measured here;
    * its mean and spread are *estimated* from a handful of scores, so the
      threshold is the upper end of a one-sided **prediction interval**
      (Student's t with ``n - 1`` degrees of freedom, widened by
      ``sqrt(1 + 1/n)``), not the plain quantile: with five scores the plain
      quantile would sit too low and false alarms would exceed the aim.

    Rates measured on test images can still differ from the aim: a test set
    with 3 good images can only show 0%, 33%, 67% or 100%.
    """
    if not 0 < false_alarm_rate < 1:
        raise ValueError(f"false_alarm_rate must be in (0, 1), not {false_alarm_rate}")
    n = len(scores)
    if n < MIN_SCORES_TO_FIT:
        raise ValueError(f"a fitted threshold needs at least {MIN_SCORES_TO_FIT} held-out scores, "
                         f"not {n}")
    logs = [math.log(max(s, 1e-12)) for s in scores]  # a score of exactly 0: a perfect match
    mean = sum(logs) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (n - 1))
    return float(math.exp(mean + t.ppf(1 - false_alarm_rate, n - 1) * sd * math.sqrt(1 + 1 / n)))


def threshold_from_scores(scores: list[float], false_alarm_rate: float | None = None) -> float | None:
    """The decision threshold from held-out good images' scores (``None``: none can be set).

    ``false_alarm_rate=None`` or fewer than :data:`MIN_SCORES_TO_FIT` scores:
    the largest score. Else :func:`fitted_threshold`, but never below the
    largest held-out score: a threshold that calls a known-good image
    anomalous contradicts the very data it was fitted to.
    """
    if not scores:
        return None
    if false_alarm_rate is None or len(scores) < MIN_SCORES_TO_FIT:
        return float(max(scores))
    return max(float(max(scores)), fitted_threshold(scores, false_alarm_rate))
