"""The check of every notebook exercise, by its id ``"NN.k"`` (notebook NN, question k).

A notebook's check cell calls ``exercises.check_exercise("NN.k", answer, data...)``:
the expected answer is computed here from the notebook's data, so that a handed-out
notebook shows none, and each check knows the common mistakes of its exercise
and gives each its own hint. The autograder's public tests
(``notebooks/grading/tests/NN.k.py``) run the same checks.

A function exercise's answer runs with the package's own implementation
disabled (:func:`.grading.references_disabled`): an answer that calls it is
told so instead of passing.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch

from . import exercises
from .exercises import Verdict, all_of, check_number, check_true
from .grading import case_key, compare_function

CHECKS = exercises.CHECKS  # the registry check_exercise reads


def exercise(exercise_id: str):
    def register(fn):
        CHECKS[exercise_id] = fn
        return fn
    return register


# --- 00 quickstart ------------------------------------------------------------------------------------

@exercise("00.1")
def fraction_caught(caught, preds, labels) -> Verdict:
    flagged = np.array([p.verdict == "anomalous" for p in preds])
    labels = np.asarray(labels, dtype=bool)
    return check_number(caught, flagged[labels].mean(), rel=1e-6, what="`caught`",
                        hint="count the defective images flagged 'anomalous', divided by the number of "
                             "defective images.",
                        mistakes={"that is the share of all test images flagged; divide by the defective "
                                  "images only": flagged.mean(),
                                  "that is the share of good images flagged (false alarms)":
                                  flagged[~labels].mean() if (~labels).any() else math.nan,
                                  "that is the share of defective images missed": 1 - flagged[labels].mean()})


@exercise("00.2")
def training_image_score(train_score, model, image) -> Verdict:
    pred = model.predict([image])[0]
    return check_number(train_score, pred.normalised_score, rel=1e-4, what="`train_score`",
                        hint="predict cat.train[0] and take its normalised score (score / threshold).",
                        mistakes={"that is the raw score; the normalised score divides it by the threshold":
                                  pred.score})


# --- 01 patch features --------------------------------------------------------------------------------

def _maps(seed: int) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, 4, 6, 6, generator=g),), (torch.randn(2, 3, 5, 9, generator=g),)]


@exercise("01.1")
def local_aggregate_3x3(my_local_aggregate, seed: int) -> Verdict:
    from patchcore_core.pipeline.features import local_aggregate

    pool = torch.nn.functional.avg_pool2d
    return compare_function(
        my_local_aggregate, lambda x: local_aggregate(x, 3), _maps(seed), what="my_local_aggregate",
        hint="the border: outside the map counts as zero, and every average divides by 9.",
        mistakes={"inside the map it is right, but the border averages only the neighbours that exist; "
                  "count those outside as zero and divide by 9 everywhere":
                  lambda x: pool(x, 3, stride=1, padding=1, count_include_pad=False),
                  "a sum of the nine neighbours: divide it by 9":
                  lambda x: 9 * pool(x, 3, stride=1, padding=1)})


@exercise("01.2")
def patches_and_numbers(patches_per_image, numbers_per_patch, model, features) -> Verdict:
    h, w = model.grid
    return all_of(
        check_number(patches_per_image, h * w, rel=0, what="`patches_per_image`",
                     hint="one patch per cell of the finer grid.",
                     mistakes={"that is one side of the grid: a patch per cell, rows x columns": h}),
        check_number(numbers_per_patch, features.shape[1], rel=0, what="`numbers_per_patch`",
                     hint="the compact form, not the paper's 1024.",
                     mistakes={"that is the paper's 1024-d embedding; the package stores the compact form "
                               "(emb.compact_dim)": 1024}))


# --- 02 memory bank and coreset ---------------------------------------------------------------------

def greedy_reference(points, k, first):
    from patchcore_core.pipeline.coreset import reference_greedy_coreset

    x = torch.from_numpy(np.asarray(points, dtype=np.float64))
    return reference_greedy_coreset(x, k, projection_dim=x.shape[1], first=first).indices


def _greedy_by(points, k, first, distance_to_centres):
    """Greedy picks where a point's distance to the centres is ``distance_to_centres(d [n, t])``."""
    points = np.asarray(points, dtype=np.float64)
    picks = [first]
    for _ in range(k - 1):
        d = np.linalg.norm(points[:, None] - points[picks][None], axis=2)
        score = distance_to_centres(d, picks)
        score[picks] = -np.inf
        picks.append(int(score.argmax()))
    return np.array(picks)


GREEDY_MISTAKES = {
    "each new centre is farthest from the LAST pick only; keep every point's distance to its nearest "
    "centre of all picked so far (np.minimum after each pick)":
        lambda p, k, f: _greedy_by(p, k, f, lambda d, picks: d[:, -1].copy()),
    "each new centre is farthest from the centres on average (a sum or mean); it should be the point "
    "whose NEAREST centre is farthest (a min over centres, then the argmax)":
        lambda p, k, f: _greedy_by(p, k, f, lambda d, picks: d.mean(axis=1)),
    "your picks do not start at `first`: the first centre is given":
        lambda p, k, f: np.asarray(greedy_reference(p, k + 1, f))[1:],
}


def greedy_cases(points, first: int, seed: int) -> list[tuple]:
    from .toy import toy_points

    return [(points, 10, int(first)), (toy_points(60, seed=seed + 1), 5, 7),
            (np.random.default_rng(seed).normal(size=(80, 5)), 12, 0)]


@exercise("02.1")
def greedy_kcenter(my_greedy_kcenter, points, first: int, seed: int) -> Verdict:
    return compare_function(my_greedy_kcenter, greedy_reference, greedy_cases(points, first, seed),
                            what="my_greedy_kcenter", mistakes=GREEDY_MISTAKES,
                            describe=lambda case, got, want: exercises.describe_coreset(case[0], got, want),
                            hint="each new centre is the point whose distance to its nearest centre (of all "
                                 "centres so far, not only the last) is largest.")


def radius_reference(points, centres):
    from patchcore_core.pipeline.coreset import covering_radius

    return covering_radius(torch.from_numpy(np.asarray(points, dtype=np.float64)),
                           torch.as_tensor(np.asarray(centres), dtype=torch.long))


def _nearest(points, centres):
    points = np.asarray(points, dtype=np.float64)
    return np.linalg.norm(points[:, None] - points[np.asarray(centres)][None], axis=2)


RADIUS_MISTAKES = {
    "that is the mean distance to the nearest centre; the radius is the largest (max), the worst point":
        lambda p, c: _nearest(p, c).min(axis=1).mean(),
    "that is the distance to the FARTHEST centre; take each point's nearest centre (min), then the max":
        lambda p, c: _nearest(p, c).max(),
    "that is the smallest distance (0: a centre to itself); take each point's nearest centre, then the "
    "largest of those":
        lambda p, c: _nearest(p, c).min(),
}


@exercise("02.2")
def covering_radius(my_covering_radius, points, picks, seed: int) -> Verdict:
    rng = np.random.default_rng(seed)
    cases = [(points, np.asarray(picks[:10])), (points, rng.choice(len(points), 25, replace=False))]
    return compare_function(my_covering_radius, radius_reference, cases, what="my_covering_radius",
                            mistakes=RADIUS_MISTAKES,
                            hint="nearest centre per point (min over centres), then the worst point (max).")


# --- 03 kNN scoring -----------------------------------------------------------------------------------

def distance_matrix(model, image) -> torch.Tensor:
    """One test image's patches against the whole memory bank, exactly: ``D [P, M]``."""
    q = model.extract([image])[0].reshape(-1, model.bank.features.shape[1])
    return torch.cdist(q, model.bank.features, compute_mode="donot_use_mm_for_euclid_dist")


@exercise("03.1")
def scores_from_distances(my_patch_scores, my_image_score, model, images, seed: int) -> Verdict:
    from patchcore_core.pipeline.memory_bank import knn_search
    from patchcore_core.pipeline.scoring import image_scores

    real = [(distance_matrix(model, image),) for image in images]
    patch = {case_key(c): model.score([image])[2][0].flatten() for c, image in zip(real, images)}
    g = torch.Generator().manual_seed(seed)
    q, m = torch.randn(50, 8, generator=g), torch.randn(200, 8, generator=g)
    toy = [(torch.cdist(q, m),)]
    patch[case_key(toy[0])] = knn_search(q, m, 1)[0][:, 0]
    cases = real + toy
    return all_of(
        compare_function(my_patch_scores, lambda d: patch[case_key((d,))], cases, what="my_patch_scores",
                         rtol=1e-4, atol=1e-3,
                         mistakes={"that is each patch's FARTHEST bank patch; the score is the distance to "
                                   "the nearest (a min over each row)": lambda d: d.max(dim=1).values,
                                   "one number per bank patch (a min over columns); give one per test patch, "
                                   "the min over each row": lambda d: d.min(dim=0).values},
                         hint="nearest: the smallest distance in each row (one score per test patch)."),
        compare_function(my_image_score, lambda d: image_scores(patch[case_key((d,))][None])[0], real,
                         what="my_image_score", rtol=1e-4, atol=1e-3,
                         mistakes={"that is the mean patch score; the image is as anomalous as its most "
                                   "anomalous patch (a max)": lambda d: d.min(dim=1).values.mean(),
                                   "that is the smallest distance in the whole matrix: take the nearest per "
                                   "patch (min over a row), then the largest of those": lambda d: d.min()},
                         hint="the image is as anomalous as its most anomalous patch: a max, not a mean."))


def eq7_weight(d: torch.Tensor) -> torch.Tensor:
    """Eq. 7's weight, as :func:`patchcore_core.pipeline.scoring.reweighted_image_scores` computes it."""
    return 1 - torch.softmax(d, dim=0)[0]


EQ7_CASES = [torch.tensor(v, dtype=torch.float64) for v in ([0.1, 0.4, 0.9], [1.0, 1.0, 1.0], [0.5, 0.6])]


@exercise("03.2")
def eq7(my_eq7_weight, rows) -> Verdict:
    package = {tuple(r["distances"]): r["weight"] for r in rows}  # from scoring.reweighted_image_scores
    cases = [(torch.tensor(r["distances"], dtype=torch.float64),) for r in rows[:6]]
    cases += [(d,) for d in EQ7_CASES]

    def reference(d):
        key = tuple(d.tolist())
        return package[key] if key in package else eq7_weight(d)

    return compare_function(my_eq7_weight, reference, cases, what="my_eq7_weight",
                            mistakes={"that is the softmax share of m* itself; the weight is one minus it":
                                      lambda d: torch.softmax(d, 0)[0],
                                      "that takes the softmax at the LAST distance; m* is the first":
                                      lambda d: 1 - torch.softmax(d, 0)[-1],
                                      "the weight depends on the distances (it is 2/3 when all three are "
                                      "equal): compute it from d": lambda d: 1.0},
                            hint="one minus the softmax of the distances, taken at m* (the first).")


# --- 04 evaluation ------------------------------------------------------------------------------------

@exercise("04.1")
def errors_at_threshold(fp, fn, labels, scores, thr) -> Verdict:
    flagged, bad = np.asarray(scores) > thr, np.asarray(labels) == 1
    want_fp, want_fn = int(np.sum(flagged & ~bad)), int(np.sum(~flagged & bad))
    swapped = "you swapped them: a false positive is a GOOD image flagged, a false negative a defect missed"
    return all_of(
        check_number(fp, want_fp, rel=0, what="`fp`", hint="good images (label 0) whose score is above thr.",
                     mistakes={} if want_fp == want_fn else {swapped: want_fn}),
        check_number(fn, want_fn, rel=0, what="`fn`",
                     hint="defective images (label 1) whose score is not above thr.",
                     mistakes={} if want_fp == want_fn else {swapped: want_fp}))


@exercise("04.2")
def f1_at_threshold(f1_at_thr, labels, scores, thr) -> Verdict:
    from patchcore_core.evaluation.metrics import f1_max

    flagged, bad = np.asarray(scores) > thr, np.asarray(labels) == 1
    tp, wrong = np.sum(flagged & bad), np.sum(flagged != bad)
    return check_number(f1_at_thr, 2 * tp / max(1, 2 * tp + wrong), rel=1e-6, what="`f1_at_thr`",
                        hint="F1 of the predictions scores > thr against labels.",
                        mistakes={"that is F1-max, the best threshold chosen with hindsight; use thr":
                                  f1_max(labels, scores),
                                  "that is the accuracy (right / all); F1 = 2TP / (2TP + FP + FN)":
                                  np.mean(flagged == bad)})


def pro_at_reference(masks, maps, t):
    """The point of metrics.pro_curve where every pixel scoring >= t is flagged."""
    from patchcore_core.evaluation.metrics import pro_curve

    fpr, pro = pro_curve(masks, maps)
    k = int(np.sum(np.unique(maps) >= t))  # one curve point per distinct score, highest first
    return np.array([fpr[k], pro[k]])


def _pro_pixelwise(masks, maps, t):
    flagged = maps >= t
    return np.array([flagged[~masks].mean(), flagged[masks].mean()])


def _pro_fpr_all(masks, maps, t):
    from scipy import ndimage

    flagged = maps >= t
    overlaps = []
    for mask, flag in zip(masks, flagged):
        regions, n = ndimage.label(mask, structure=np.ones((3, 3)))
        overlaps += [flag[regions == r].mean() for r in range(1, n + 1)]
    return np.array([flagged.mean(), np.mean(overlaps)])


PRO_MISTAKES = {"pro is the share of ALL defect pixels flagged; average each region's share instead "
                "(small regions count as much as large ones)": _pro_pixelwise,
                "fpr counts every pixel; count the normal pixels (mask False) only": _pro_fpr_all}


def toy_regions(seed: int):
    rng = np.random.default_rng(seed)
    masks = np.zeros((2, 12, 12), bool)
    masks[0, 2:5, 2:6] = masks[0, 8:10, 7:11] = masks[1, 5:9, 5:7] = True  # 3 regions
    return masks, rng.random((2, 12, 12)) + masks * 0.5


@exercise("04.3")
def pro_at(my_pro_at, masks, maps, seed: int) -> Verdict:
    toy_masks, toy_maps = toy_regions(seed)
    maps = np.asarray(maps, dtype=np.float32)
    cases = [(toy_masks, toy_maps, 0.9), (toy_masks, toy_maps, 1.2),
             (np.asarray(masks, dtype=bool), maps, float(np.quantile(maps, 0.95)))]
    return compare_function(my_pro_at, pro_at_reference, cases, what="my_pro_at", mistakes=PRO_MISTAKES,
                            hint="each region's share of flagged pixels, averaged over regions (not over "
                                 "pixels); fpr over normal pixels only; flagged means >= t.")


# --- 05 experiments -----------------------------------------------------------------------------------

@exercise("05.1")
def bank_growth(growth, coreset_rows) -> Verdict:
    sizes = [r["memory_bank_size"] for r in coreset_rows]
    return check_number(growth, max(sizes) / min(sizes), what="`bank_growth`",
                        hint="largest bank size divided by the smallest.",
                        mistakes={"that is the smallest over the largest; divide the other way":
                                  min(sizes) / max(sizes),
                                  "that is a difference of sizes; the question asks how many TIMES more":
                                  max(sizes) - min(sizes)})


@exercise("05.2")
def greedy_gain(gain, sampling_rows) -> Verdict:
    r0 = min(r["ratio"] for r in sampling_rows)
    r1 = max(r["ratio"] for r in sampling_rows)
    at = {(r["sampling"], r["ratio"]): r["aupro"] for r in sampling_rows}
    want = at["greedy", r0] - at["random", r0]
    mistakes = {"that is random minus greedy; the gain is greedy minus random": -want}
    if r1 != r0:
        mistakes["that is the gap at the LARGEST ratio; use the smallest"] = (at["greedy", r1]
                                                                              - at["random", r1])
    return check_number(gain, want, rel=1e-6, abs_tol=1e-9, what="`greedy_gain`",
                        hint="greedy minus random, at the smallest ratio.",
                        mistakes={k: v for k, v in mistakes.items()
                                  if not math.isclose(v, want, abs_tol=1e-12)})


# --- 06 your own data ---------------------------------------------------------------------------------

def _preds(*scores) -> list:
    return [SimpleNamespace(score=float(s)) for s in scores]


SCORE_DIFFERENCE_CASES = [(_preds(1.0, 2.0, 3.0), _preds(1.5, 2.0, 2.0)),
                          (_preds(5.0, 1.0), _preds(4.0, 3.5))]


def score_difference_reference(a, b) -> float:
    return max(abs(x.score - y.score) for x, y in zip(a, b))


@exercise("06.1")
def saved_and_loaded(max_score_difference, max_difference, threshold: float) -> Verdict:
    return all_of(
        compare_function(max_score_difference, score_difference_reference, SCORE_DIFFERENCE_CASES,
                         what="max_score_difference",
                         mistakes={"without abs: a score that went DOWN counts as negative; take the "
                                   "absolute difference":
                                   lambda a, b: max(x.score - y.score for x, y in zip(a, b)),
                                   "that is the mean difference; the question asks for the largest":
                                   lambda a, b: np.mean([abs(x.score - y.score) for x, y in zip(a, b)])},
                         hint="image by image: |a[i].score - b[i].score|, then the largest."),
        check_number(max_difference, 0.0, abs_tol=1e-4 * threshold, what="`max_difference`",
                     hint="apply max_score_difference to loaded.predict(test_images) and preds."))


@exercise("06.2")
def detection_rate(detected, preds, is_bad) -> Verdict:
    flagged = np.array([p.verdict == "anomalous" for p in preds], dtype=bool)
    is_bad = np.asarray(is_bad, dtype=bool)
    if not is_bad.any():
        return check_true(detected, detected == 0 or (isinstance(detected, float) and math.isnan(detected)),
                          what="`detected`", hint="with no defective images, set detected = 0.")
    return check_number(detected, flagged[is_bad].mean(), rel=1e-6, what="`detected`",
                        hint="verdicts of the defective images only.",
                        mistakes={"that counts every image; use the defective ones only (is_bad)":
                                  flagged.mean()})


# --- 07 scale -----------------------------------------------------------------------------------------

MERGE_CASES = [([(0.5, 3), (0.2, 17), (0.9, 40)],), ([(0.3, 12), (0.3, 4)],)]


@exercise("07.1")
def merge(my_merge, points, shard_of, query) -> Verdict:
    from .shards import merged_nearest, shard_nearest

    cases = MERGE_CASES + [(shard_nearest(points, shard_of, query),)]
    return compare_function(my_merge, merged_nearest, cases, what="my_merge",
                            mistakes={"on a tie the HIGHER row won; the lower row should":
                                      lambda a: min(a, key=lambda x: (x[0], -x[1])),
                                      "that is the farthest answer; take the smallest distance":
                                      lambda a: max(a, key=lambda x: (x[0], x[1]))},
                            hint="the smallest distance over the shards; ties go to the lower row.")


@exercise("07.2")
def guarantee(bound, run) -> Verdict:
    radii = list(run.shard_radii)
    return check_number(bound, run.bound, what="the bound",
                        hint="a point is near its shard's proposal (r_s), which is near a final pick (r_m): "
                             "add the worst of each.",
                        mistakes={"that adds every shard's radius; a point lies in ONE shard, so the worst "
                                  "shard's radius (max) is enough": sum(radii) + run.merge_radius,
                                  "that leaves out r_m: the final picks are not the shards' proposals":
                                  max(radii),
                                  "that leaves out the shards' radii r_s": run.merge_radius})


def recall_cases(seed: int) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(200, generator=g) + 1
    rounded = q * (1 + 1e-6)  # found by another index: the same neighbour, distance rounded differently
    return [(q, q), (q * 1.1, q), (torch.where(q > 1.5, q * 2, q), q),
            (torch.where(q > 1.3, rounded, q * 1.2), q)]


@exercise("07.3")
def recall(my_recall, seed: int) -> Verdict:
    from patchcore_core.evaluation.search import recall_at_1

    return compare_function(my_recall, recall_at_1, recall_cases(seed), what="my_recall",
                            mistakes={"exact equality misses answers that differ only by float rounding; "
                                      "allow approx <= exact * (1 + 1e-4)":
                                      lambda a, e: float((a == e).float().mean()),
                                      "that is the share MISSED; recall is the share found":
                                      lambda a, e: 1 - float((a <= e * (1 + 1e-4) + 1e-6).float().mean())},
                            hint="compare each approximate distance with the exact one; the mean of the "
                                 "matches.")


# --- 08 paper experiments -----------------------------------------------------------------------------

@exercise("08.1")
def seed_spread(mean_1, std_1, means) -> Verdict:
    first = means[0]
    return all_of(
        check_number(mean_1, first["image_auroc"], rel=1e-6, what="`mean_1`",
                     hint="average r['image_auroc'] over the rows with r['shots'] == SHOTS[0]."),
        check_number(std_1, first["image_auroc_std"], rel=1e-6, abs_tol=1e-9, what="`std_1`",
                     hint="np.std(values, ddof=1): the sample standard deviation."))


HELD_OUT = ((70.0, 5.0), (12.0, 1.0))  # the question's held-out mean and standard deviation of A and B


@exercise("08.2")
def standardised_mean(z, a, b) -> Verdict:
    (ma, sa), (mb, sb) = HELD_OUT
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    want = ((a - ma) / sa + (b - mb) / sb) / 2
    if exercises.is_unanswered(z):
        return check_true(z, False, what="`z`")
    try:
        got = np.asarray(z, dtype=float)
    except (TypeError, ValueError):
        return check_true(z, False, what="`z`",
                          hint=f"`z` should be an array of numbers, not {type(z).__name__}")
    mistakes = {"that averages the raw scores; standardise each model by its own mean and spread first":
                (a + b) / 2,
                "that divides by the variance; divide by the standard deviation":
                ((a - ma) / sa**2 + (b - mb) / sb**2) / 2,
                "that is model A's z-scores only; average A's and B's": (a - ma) / sa,
                "that is model B's z-scores only; average A's and B's": (b - mb) / sb,
                "that sums the z-scores; take their mean": (a - ma) / sa + (b - mb) / sb}
    if got.shape != want.shape:
        return check_true(z, False, what="`z`", hint=f"`z` should hold one combined score per image "
                                                     f"({want.size}), not shape {got.shape}")
    ok = bool(np.allclose(got, want))
    hint = next((h for h, w in mistakes.items() if np.allclose(got, w)),
                "(a - 70) / 5 and (b - 12) / 1, then their mean, image by image.")
    return check_true(z, ok, what="`z`", hint=hint)


# --- 09 baselines -------------------------------------------------------------------------------------

@exercise("09.1")
def mahalanobis(my_mahalanobis, padim, test_feats, grid) -> Verdict:
    from .baselines import padim_scores

    _, patches = padim_scores(padim, test_feats)
    h, w = grid
    ch = padim["channels"]
    cases = [(test_feats[:, i, j, ch].float(), padim["mean"][i, j], padim["inv_cov"][i, j])
             for i, j in [(0, 0), (h // 2, 3), (h - 1, w - 1)]]  # a corner, the middle, the other corner
    want = {case_key(c): patches[:, i, j] for c, (i, j) in zip(cases, [(0, 0), (h // 2, 3), (h - 1, w - 1)])}
    return compare_function(my_mahalanobis, lambda *c: want[case_key(c)], cases, what="my_mahalanobis",
                            rtol=1e-3, atol=1e-3,
                            mistakes={"that is the squared distance; take its square root":
                                      lambda x, mu, ic: (((x - mu) @ ic) * (x - mu)).sum(1),
                                      "that is the Euclidean distance; weigh it by inv_cov":
                                      lambda x, mu, ic: (x - mu).norm(dim=1)},
                            hint="the square root of (x - mu)^T inv_cov (x - mu), one value per test patch.")


@exercise("09.2")
def memory_ratio(padim_over_patchcore, padim, bank) -> Verdict:
    from .baselines import padim_nbytes

    ratio = padim_nbytes(padim) / bank.nbytes
    return check_number(padim_over_patchcore, ratio, rel=0.01, what="`padim_over_patchcore`",
                        hint="PaDiM's megabytes divided by PatchCore's.",
                        mistakes={"that is PatchCore over PaDiM; divide the other way": 1 / ratio})


# --- 10 limits ----------------------------------------------------------------------------------------

LOGICAL = ("missing", "swapped", "extra")


@exercise("10.1")
def logical_caught(caught, kinds, scores, threshold) -> Verdict:
    scores = np.asarray(scores)
    logical = np.isin(kinds, LOGICAL)
    flagged = scores > threshold
    want = flagged[logical].mean() if logical.any() else 0.0
    return check_number(caught, want, rel=1e-6, abs_tol=1e-9, what="`logical_caught`",
                        hint="count the logical images scoring above model.threshold, divided by how many "
                             "there are.",
                        mistakes={"that counts every test image; use the missing/swapped/extra ones only":
                                  flagged.mean()} if not math.isclose(flagged.mean(), want) else {})


@exercise("10.2")
def count_parts(my_count_parts, images) -> Verdict:
    from scipy import ndimage

    from .logical import count_parts as reference

    def all_regions(image):
        img = np.asarray(image).astype(int)
        return int(ndimage.label(img.max(axis=2) - img.min(axis=2) > 60)[1])

    return compare_function(my_count_parts, reference, [(im,) for im in images], what="my_count_parts",
                            mistakes={"that counts every coloured region, specks included; count only "
                                      "those of at least 200 pixels": all_regions},
                            hint="mark pixels whose max and min channel differ by more than 60; count "
                                 "regions of at least 200 pixels.")


# --- 11 PatchCore from scratch (the capstone) ---------------------------------------------------------
# Each step's answer runs with the capstone's references disabled, as in its hidden tests; the hints are
# capstone's (what the learner's function does on a small case of the exercise's own).

def _capstone_check(fn, reference, cases, *, what: str, hint: str, env=None, **tolerance) -> Verdict:
    from .grading import CAPSTONE_REFERENCES

    return compare_function(fn, reference, cases, env, references=CAPSTONE_REFERENCES, what=what,
                            hint=hint, **tolerance)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


@exercise("11.1")
def capstone_aggregate(my_aggregate, train_maps, seed: int) -> Verdict:
    from patchcore_core.pipeline.features import local_aggregate

    from .capstone import hint_aggregate

    cases = [(train_maps[0][:2],), (train_maps[1][:2],),
             (torch.randn(1, 5, 6, 7, generator=_generator(seed)),)]
    return _capstone_check(my_aggregate, lambda fmap: local_aggregate(fmap, 3), cases, what="my_aggregate",
                           rtol=1e-4, atol=1e-5, hint=hint_aggregate(my_aggregate, cases[2][0]))


@exercise("11.2")
def capstone_embed(my_embed, train_maps, width: int, seed: int) -> Verdict:
    from patchcore_core.pipeline.features import local_aggregate

    from .capstone import hint_embed, package_embed

    g = _generator(seed)
    real_layers = [local_aggregate(m[:2], 3) for m in train_maps]
    toy_layers = [torch.randn(2, 40, 6, 6, generator=g), torch.randn(2, 100, 3, 3, generator=g)]
    return _capstone_check(my_embed, package_embed, [(real_layers, int(width)), (toy_layers, 64)],
                           what="my_embed", rtol=1e-4, atol=1e-5, hint=hint_embed(my_embed, toy_layers, 64))


@exercise("11.3")
def capstone_project(my_project, bank_features, dim: int, seed: int) -> Verdict:
    from patchcore_core.pipeline.coreset import random_projection

    from .capstone import hint_project

    g = _generator(seed)
    cases = [(bank_features[:300].cpu(), int(dim), int(seed)),
             (torch.randn(50, 300, generator=g, dtype=torch.float64), 16, 3),
             (torch.randn(20, 10, generator=g), 16, 0)]
    return _capstone_check(my_project, random_projection, cases, what="my_project", rtol=1e-4, atol=1e-4,
                           hint=hint_project(my_project, *cases[1]))


@exercise("11.4")
def capstone_greedy(my_greedy_coreset, bank_features, seed: int) -> Verdict:
    """Compared by the covering radius after each pick: the same greedy run gives the same radii,
    whichever of two tied points it picks."""
    from patchcore_core.pipeline.coreset import random_projection, reference_greedy_coreset

    from .capstone import covering_radii, hint_coreset

    what = "my_greedy_coreset (the covering radius after each pick)"
    if exercises.is_unanswered(my_greedy_coreset):
        return compare_function(my_greedy_coreset, None, [], what="my_greedy_coreset")
    cases = [(torch.randn(300, 2, generator=_generator(seed), dtype=torch.float64), 30, 0),
             (random_projection(bank_features[:1000].cpu(), 16, int(seed)).double(), 50, 7)]

    def radii_of_yours(x, k, first):
        picks = my_greedy_coreset(x, k, first)
        return None if picks is None else covering_radii(x, picks)

    def radii_of_greedy(x, k, first):
        picks = reference_greedy_coreset(x, k, projection_dim=x.shape[1], first=first).indices
        return covering_radii(x, picks)

    radii_of_yours.__name__ = "my_greedy_coreset"
    return _capstone_check(radii_of_yours, radii_of_greedy, cases, what=what, rtol=1e-6, atol=1e-9,
                           env=getattr(my_greedy_coreset, "__globals__", None),
                           hint=hint_coreset(my_greedy_coreset, cases))


@exercise("11.5")
def capstone_patch_scores(my_patch_scores, bank_features, seed: int) -> Verdict:
    from patchcore_core.pipeline.memory_bank import knn_search

    from .capstone import hint_patch_scores

    g = _generator(seed)
    rows = bank_features.cpu()
    cases = [(rows[:200] + 0.1 * torch.randn(200, rows.shape[1], generator=g), rows[200:1200]),
             (torch.randn(100, 32, generator=g), torch.randn(400, 32, generator=g))]
    return _capstone_check(my_patch_scores, lambda q, bank: knn_search(q, bank, 1)[0][:, 0], cases,
                           what="my_patch_scores", rtol=1e-3, atol=1e-3,
                           hint=hint_patch_scores(my_patch_scores, *cases[1]))


def _package_patch_scores(model, paths) -> torch.Tensor:
    """The fitted model's patch scores of the first three images: ``[3, h, w]``."""
    return model.score(list(paths)[:3])[2]


@exercise("11.6")
def capstone_image_scores(my_image_scores, model, paths, seed: int) -> Verdict:
    from patchcore_core.pipeline.scoring import image_scores

    from .capstone import hint_image_scores

    cases = [(_package_patch_scores(model, paths),), (torch.rand(4, 5, 6, generator=_generator(seed)),)]
    return _capstone_check(my_image_scores, image_scores, cases, what="my_image_scores", rtol=1e-4, atol=1e-6,
                           hint=hint_image_scores(my_image_scores, *cases[1]))


@exercise("11.7")
def capstone_anomaly_maps(my_anomaly_maps, model, paths, seed: int) -> Verdict:
    from patchcore_core.pipeline.scoring import anomaly_map

    from .capstone import hint_anomaly_maps

    size, sigma = model.config.image_size, model.config.sigma
    cases = [(_package_patch_scores(model, paths), size, sigma),
             (5 * torch.rand(2, 7, 9, generator=_generator(seed)), 40, 2.0)]
    return _capstone_check(my_anomaly_maps, anomaly_map, cases, what="my_anomaly_maps", rtol=1e-4, atol=1e-4,
                           hint=hint_anomaly_maps(my_anomaly_maps, *cases[1]))


# --- 12 deploy ----------------------------------------------------------------------------------------

@exercise("12.1")
def largest_relative(answer, torch_scores, fp32_scores) -> Verdict:
    from patchcore_core.deploy.export import compare

    torch_scores, fp32_scores = np.asarray(torch_scores, np.float64), np.asarray(fp32_scores, np.float64)
    want = compare(torch_scores, fp32_scores, None)["max_relative"]
    difference = np.abs(fp32_scores - torch_scores)
    mistakes = {"that is the largest ABSOLUTE difference; divide each by PyTorch's score first":
                float(difference.max()),
                "that is the mean relative difference; the question asks for the largest":
                float(np.mean(difference / np.maximum(np.abs(torch_scores), 1e-12)))}
    mistakes = {h: v for h, v in mistakes.items() if not math.isclose(v, want, rel_tol=1e-3)}
    return check_number(answer, want, rel=1e-3, abs_tol=1e-12, what="`largest_relative`",
                        hint="divide the absolute difference by PyTorch's score, then take the largest.",
                        mistakes=mistakes)


@exercise("12.2")
def verdict_flips(flips, torch_scores, int8_scores, threshold: float, int8_threshold: float) -> Verdict:
    from patchcore_core.deploy.export import compare

    want = compare(torch_scores, int8_scores, threshold, int8_threshold)["verdicts_flipped"]
    kept = compare(torch_scores, int8_scores, threshold)["verdicts_flipped"]  # int8 judged by PyTorch's
    mistakes = {"that judges int8 by PyTorch's threshold; judge it by its own (int8.threshold)": kept}
    return check_number(flips, want, rel=0, abs_tol=0.5, what="`flips`",
                        hint="compare the two boolean verdict arrays, each score against its own threshold.",
                        mistakes={} if kept == want else mistakes)
