"""The capstone (notebook 11): PatchCore from the backbone's feature maps, built by the learner.

What the notebook needs besides the exercise checks:

* :func:`backbone_maps`: the frozen backbone's feature maps of many images, the capstone's only input;
* :class:`Steps`: the assembled pipeline runs the learner's function for each step, or the package's
  while the learner's still raises ``NotImplementedError`` (so a blank student edition runs to the end,
  and says which steps were not its own);
* ``hint_*``: what a wrong answer most likely did, for the checks' hints. Each compares the learner's
  result with the package's step *and* with the usual mistakes (mean instead of max, squared distances,
  scipy's border mode, ...) and returns the matching explanation. A hint never raises and never prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from patchcore_core.pipeline.coreset import reference_greedy_coreset
from patchcore_core.pipeline.features import PatchEmbedding, aggregate_layers
from patchcore_core.pipeline.memory_bank import knn_search
from patchcore_core.util.images import read_image

__all__ = ["backbone_maps", "package_embed", "Steps", "covering_radii", "hint_aggregate", "hint_embed",
           "hint_project", "hint_coreset", "hint_patch_scores", "hint_image_scores", "hint_anomaly_maps"]


@torch.inference_mode()
def backbone_maps(model, images, batch_size: int = 8) -> list[torch.Tensor]:
    """The frozen backbone's feature maps of ``images``, one ``[N, C_l, h_l, w_l]`` CPU tensor per
    layer (shallowest first), with the fitted ``model``'s preprocessing and backbone."""
    if model.preprocess is None:
        raise RuntimeError("fit the model first: its preprocessing is chosen from the training images")
    per_layer: dict[str, list[torch.Tensor]] = {}
    images = list(images)
    for start in range(0, len(images), batch_size):
        batch = torch.stack([model.preprocess(read_image(im)) for im in images[start:start + batch_size]])
        for layer, fmap in model.extractor(batch.to(model.device)).items():
            per_layer.setdefault(layer, []).append(fmap.float().cpu())
    return [torch.cat(maps) for maps in per_layer.values()]


def package_embed(layers: list[torch.Tensor], width: int = 1024) -> torch.Tensor:
    """The package's step 2 on locally aggregated maps ``[B, C_l, h_l, w_l]``: one grid
    (:func:`~patchcore_core.pipeline.features.aggregate_layers`, nothing more to aggregate) and the
    channel pooling to ``width`` (:class:`~patchcore_core.pipeline.features.PatchEmbedding`):
    ``[B*H*W, width]``, rows in the order image, row, column."""
    on_one_grid, _ = aggregate_layers(layers, neighbourhood=1)
    embedding = PatchEmbedding([fmap.shape[1] for fmap in layers], width, width)
    return embedding.full(PatchEmbedding.concat(on_one_grid))


class Steps:
    """The learner's functions, assembled: ``use(name, mine, package)`` returns a step that calls
    ``mine``, or ``package`` while ``mine`` raises ``NotImplementedError`` (or returns ``None``).
    ``whose`` records, per step, whose function ran."""

    def __init__(self):
        self.whose: dict[str, str] = {}

    def use(self, name: str, mine: Callable, package: Callable) -> Callable:
        def step(*args):
            try:
                out = mine(*args)
            except NotImplementedError:
                out = None
            if out is None:
                self.whose[name] = "the package's (yours is not written yet)"
                return package(*args)
            self.whose.setdefault(name, "yours")
            return out
        return step

    @property
    def all_yours(self) -> bool:
        return bool(self.whose) and all(w == "yours" for w in self.whose.values())

    def rows(self) -> list[dict]:
        return [{"step": name, "function used": whose} for name, whose in self.whose.items()]


def covering_radii(x: torch.Tensor, picks) -> torch.Tensor:
    """The covering radius after each pick: the largest distance from any row of ``x`` to its
    nearest pick so far, float64 ``[k]``. Equal sequences mean the same greedy run, whatever the
    indices of tied points."""
    x = x.double()
    picks = [int(i) for i in torch.as_tensor(picks).flatten().tolist()]
    nearest = torch.full((len(x),), math.inf, dtype=torch.float64)
    radii = []
    for i in picks:
        nearest = torch.minimum(nearest, torch.linalg.vector_norm(x - x[i], dim=1))
        radii.append(float(nearest.max()))
    return torch.tensor(radii, dtype=torch.float64)


# --- hints -------------------------------------------------------------------------------------

def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _same(got: np.ndarray, want, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    want = _numpy(want)
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=rtol, atol=atol))


def _diagnose(fn: Callable, args: tuple, mistakes: list[tuple[Callable, str]], default: str,
              **tolerance) -> str:
    """The hint of the first known mistake whose result the learner's matches, else ``default``."""
    try:
        got = _numpy(fn(*args))
    except Exception:  # the check reports exceptions itself
        return default
    for mistake, hint in mistakes:
        try:
            if _same(got, mistake(*args), **tolerance):
                return hint
        except Exception:  # a mistake that does not apply to these arguments
            continue
    return default


def hint_aggregate(fn: Callable, fmap: torch.Tensor) -> str:
    """Hint for ``fn(fmap)``, the 3x3 local aggregation ``[B, C, H, W] -> [B, C, H, W]``."""
    return _diagnose(fn, (fmap,), [
        (lambda m: F.avg_pool2d(m, 3, 1, 1, count_include_pad=False),
         "the border patches differ: you divided by the neighbours inside the map; the package divides "
         "by 9 everywhere (outside the map counts as zero, as the reference code's zero padding)."),
        (lambda m: F.avg_pool2d(m, 3, 1, 1) * 9,
         "you summed the nine values: average them (divide by 9)."),
        (lambda m: F.avg_pool2d(m, 3, 1, 0),
         "the grid shrank by 2: pad by one cell on each side (padding=1) so every patch keeps its place."),
        (lambda m: F.avg_pool2d(m, 3, 3, 1),
         "the grid shrank to a third: move the window one cell at a time (stride 1)."),
    ], "each patch: the mean over its 3x3 neighbourhood of every channel, zeros outside the map "
       "(F.avg_pool2d with stride 1 and padding 1 does it).")


def _embed_reference(layers, width: int, mode: str = "bilinear", align_corners: bool | None = False,
                     per_layer: bool = True, channel_major: bool = False) -> torch.Tensor:
    grid = layers[0].shape[-2:]
    rows = []
    for fmap in layers:
        if fmap.shape[-2:] != grid:
            fmap = F.interpolate(fmap, size=grid, mode=mode, align_corners=align_corners)
        rows.append(fmap.flatten(2).transpose(1, 2).reshape(-1, fmap.shape[1]) if not channel_major
                    else fmap.reshape(-1, fmap.shape[1]))
    if not per_layer:  # all channels side by side, one pooling
        flat = torch.cat(rows, dim=1)
        return F.adaptive_avg_pool1d(flat[:, None], width)[:, 0]
    pooled = torch.cat([F.adaptive_avg_pool1d(r[:, None], width)[:, 0] for r in rows], dim=1)
    return F.adaptive_avg_pool1d(pooled[:, None], width)[:, 0]


def hint_embed(fn: Callable, layers: list[torch.Tensor], width: int = 1024) -> str:
    """Hint for ``fn(layers, width)``: aggregated layer maps -> ``[B*H*W, width]`` patch features."""
    return _diagnose(fn, (layers, width), [
        (lambda ls, w: _embed_reference(ls, w, mode="nearest", align_corners=None),
         "the deeper layer was resized with nearest neighbours: use bilinear interpolation "
         "(align_corners=False), as the package and the reference code do."),
        (lambda ls, w: _embed_reference(ls, w, align_corners=True),
         "bilinear with align_corners=True stretches the map differently: use align_corners=False."),
        (lambda ls, w: _embed_reference(ls, w, per_layer=False),
         "you pooled all channels together once: pool each layer to `width` first (so each layer weighs "
         "the same whatever its channel count), then the layers side by side to `width`."),
        (lambda ls, w: _embed_reference(ls, w, channel_major=True),
         "the rows are not one patch each: move the channels last (permute(0, 2, 3, 1)) before the "
         "reshape, so row b*H*W + i*W + j holds image b, row i, column j."),
    ], "resize every layer to the first layer's grid (bilinear, align_corners=False), pool each layer's "
       "channels to `width` with F.adaptive_avg_pool1d, put the layers side by side and pool to `width` "
       "again; one row per patch, in the order image, row, column.", rtol=1e-4, atol=1e-5)


def hint_project(fn: Callable, x: torch.Tensor, dim: int, seed: int) -> str:
    """Hint for ``fn(x, dim, seed)``, the Gaussian random projection."""
    def matrix(rows, cols):
        return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))

    return _diagnose(fn, (x, dim, seed), [
        (lambda v, d, s: v.float() @ matrix(v.shape[1], d),
         f"the distances come out about sqrt({dim}) times too long: divide the matrix by sqrt(dim)."),
        (lambda v, d, s: v.float() @ (matrix(v.shape[1], d) / math.sqrt(v.shape[1])),
         "divide by sqrt(dim), the width you project to, not by sqrt of the input width: then "
         "E||vM||^2 = ||v||^2."),
        (lambda v, d, s: v.float() @ (matrix(d, v.shape[1]).T / math.sqrt(d)),
         "draw the matrix as [D, dim] (one row per input dimension), in that order, so that the same "
         "seed gives the package's matrix."),
    ], "draw M = torch.randn(D, dim, generator=torch.Generator().manual_seed(seed)) / sqrt(dim) and "
       "return x @ M; features no wider than dim come back as they are.", rtol=1e-4, atol=1e-4)


def _greedy(x: torch.Tensor, k: int, first: int, last_only: bool = False) -> list[int]:
    nearest = torch.linalg.vector_norm(x - x[first], dim=1)
    picks = [first]
    for _ in range(1, k):
        i = int(nearest.argmax())
        picks.append(i)
        step = torch.linalg.vector_norm(x - x[i], dim=1)
        nearest = step if last_only else torch.minimum(nearest, step)
    return picks


def hint_coreset(fn: Callable, cases: list[tuple]) -> str:
    """Hint for ``fn(x, k, first)``, greedy k-center, from the first of ``cases`` where it differs
    from greedy: names the first pick that differs, how far each is from the picks before it, and
    the covering radius each run reaches."""
    for x, k, first in cases:
        hint = _coreset_case_hint(fn, x, k, first)
        if hint:
            return hint
    return ""


def _coreset_case_hint(fn: Callable, x: torch.Tensor, k: int, first: int) -> str:
    try:
        got = [int(i) for i in torch.as_tensor(fn(x, k, first)).flatten().tolist()]
    except Exception:  # the check reports exceptions itself
        return ""
    want = reference_greedy_coreset(x, k, projection_dim=x.shape[1], first=first).indices.tolist()
    x64 = x.double()
    if len(got) != k:
        return f"return k = {k} indices, one per pick (you returned {len(got)})."
    if got[0] != first:
        return f"start from the given first pick ({first}); yours starts at {got[0]}."
    if len(set(got)) < len(got):
        return "a point was picked twice: once picked, its distance to the coreset is 0, so it cannot be " \
               "the farthest again unless every point is covered; did you keep the minimum over all picks?"
    if got == _greedy(x64, k, first, last_only=True):
        return "you kept each point's distance to the last pick only: keep the distance to the nearest " \
               "pick so far (torch.minimum of the old and the new distances)."
    t = next((t for t, (a, b) in enumerate(zip(got, want)) if a != b), None)
    if t is None:
        return ""
    dist = torch.cdist(x64, x64[got[:t]]).min(dim=1).values  # to the picks before pick t + 1
    radius_got, radius_want = covering_radii(x, got)[-1], covering_radii(x, want)[-1]
    return (f"with {len(x)} points and k = {k}, pick {t + 1} differs: you took point {got[t]}, "
            f"{float(dist[got[t]]):.3g} from the picks before it; greedy takes the point farthest from "
            f"them, {want[t]}, at {float(dist[want[t]]):.3g}. Your {k} picks cover every point within "
            f"{float(radius_got):.3g}, greedy's within {float(radius_want):.3g}.")


def hint_patch_scores(fn: Callable, queries: torch.Tensor, bank: torch.Tensor) -> str:
    """Hint for ``fn(queries, bank)``: the L2 distance of each query to its nearest bank row."""
    def nearest(q, b):
        return knn_search(q, b, 1)[0][:, 0]

    return _diagnose(fn, (queries, bank), [
        (lambda q, b: nearest(q, b) ** 2,
         "these are squared distances: faiss's IndexFlatL2 returns ||q - m||^2; take the square root "
         "(the paper's score is the L2 distance; the reference code skips the root)."),
        (lambda q, b: torch.cdist(q.float(), b.float()).max(dim=1).values,
         "that is the farthest bank patch: the score is the distance to the nearest one."),
        (lambda q, b: torch.cdist(q.float(), b.float()).mean(dim=1),
         "that is the mean distance to the bank: the score is the distance to the nearest bank patch."),
    ], "one number per query row: the L2 distance to its nearest bank row.", rtol=1e-3, atol=1e-3)


def hint_image_scores(fn: Callable, patch_scores: torch.Tensor) -> str:
    """Hint for ``fn(patch_scores)``: ``[B, h, w] -> [B]`` image scores."""
    return _diagnose(fn, (patch_scores,), [
        (lambda p: p.flatten(1).mean(dim=1),
         "a mean lets a small defect drown among normal patches: take the max."),
        (lambda p: p.flatten(1).median(dim=1).values, "a median ignores the defect: take the max."),
        (lambda p: p.flatten(1).amin(dim=1), "that is the least anomalous patch: take the max."),
        (lambda p: p.amax(dim=1), "one number per image: the max over all h x w patches (flatten first)."),
    ], "one number per image: its largest patch score.")


def hint_anomaly_maps(fn: Callable, patch_scores: torch.Tensor, size: int, sigma: float) -> str:
    """Hint for ``fn(patch_scores, size, sigma)``: ``[B, h, w] -> [B, size, size]`` smoothed maps."""
    from scipy import ndimage

    radius = int(4.0 * sigma + 0.5)

    def upsampled(p, mode="bilinear", align_corners=False):
        return F.interpolate(p[:, None].float(), size=size, mode=mode, align_corners=align_corners)

    def scipy_reflect(p, s, sg):
        return np.stack([ndimage.gaussian_filter(m, sg, mode="reflect", truncate=4.0)
                         for m in upsampled(p)[:, 0].numpy()])

    return _diagnose(fn, (patch_scores, size, sigma), [
        (scipy_reflect,
         "only the borders differ: scipy's default mode='reflect' repeats the edge pixel (the reference "
         "code's choice); the package mirrors without repeating it: torch's reflect padding, which is "
         "scipy's mode='mirror' (torchvision's gaussian_blur does it)."),
        (lambda p, s, sg: gaussian_blur(upsampled(p, "nearest", None), 2 * radius + 1, sg)[:, 0],
         "nearest upsampling makes blocks: upsample bilinearly (align_corners=False), then smooth."),
        (lambda p, s, sg: gaussian_blur(upsampled(p, align_corners=True), 2 * radius + 1, sg)[:, 0],
         "bilinear with align_corners=True shifts the map by half a patch: use align_corners=False."),
        (lambda p, s, sg: upsampled(p)[:, 0],
         f"not smoothed yet: blur with a Gaussian of sigma {sigma:g} pixels."),
        (lambda p, s, sg: gaussian_blur(upsampled(p), 2 * int(3 * sg + 0.5) + 1, sg)[:, 0],
         "the kernel is cut at 3 sigma: cut it at 4 sigma (kernel size 2 * int(4 sigma + 0.5) + 1), as "
         "scipy's gaussian_filter and the package do."),
    ], f"upsample the patch scores bilinearly to {size} x {size} (align_corners=False), then smooth with a "
       f"Gaussian of sigma {sigma:g}, kernel cut at 4 sigma, mirrored borders.", rtol=1e-4, atol=1e-4)

