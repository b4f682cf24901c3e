"""Looking inside PatchCore: the logic behind the teaching notebooks.

Every plot and widget of ``notebooks/`` is built from these plain
functions (and the pipeline's own modules), so the notebooks hold no
pipeline code of their own and every widget works without a front end:
call the function directly and you get the same numbers or figure.

* patch features (notebook 01): :func:`feature_maps`, :func:`layer_geometry`,
  :func:`receptive_field`, :func:`layer_view`, :func:`pca_rgb`;
* memory bank and coreset (02): :func:`bank_footprint`, :func:`radius_curves`,
  :func:`coreset_trial`, :func:`defect_patches`, :func:`embed_2d`;
* scoring and heatmaps (03): :func:`eq7_breakdown`, :func:`map_stages`,
  :func:`plot_explanation`;
* evaluation (04): :func:`per_defect_table`, :func:`worst_failures`;
* experiments (05): :func:`cached_evaluation`, :func:`plot_sweep`;
* your own data (06): :func:`sample_own_data`;
* shared: :func:`plot_predictions`, :func:`markdown_table`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_path
from .coreset import covering_radius, greedy_coreset, random_coreset
from .features import local_aggregate
from .scoring import anomaly_map, reweighted_image_score
from .viz import draw_box, overlay_heatmap, zoom_box

__all__ = [
    "feature_maps", "layer_geometry", "receptive_field", "rf_extent", "layer_view", "pca_rgb",
    "upsample_nearest", "bank_footprint", "radius_curves", "coreset_trial", "defect_patches", "embed_2d",
    "eq7_breakdown", "map_stages", "plot_explanation", "per_defect_table", "worst_failures",
    "experiment_cache_dir", "cached_evaluation", "plot_sweep", "sample_own_data", "plot_predictions",
    "plot_layer_view", "markdown_table",
]


# ------------------------------------------------------------ 01 patch features
def _input(model, image) -> torch.Tensor:
    if model.preprocess is None:
        raise RuntimeError("fit the model first: its preprocessing is chosen from the training images")
    return model.preprocess(image)[None].to(model.device)


def feature_maps(model, image) -> dict[str, torch.Tensor]:
    """The backbone's raw feature maps of one image: ``{layer: [C, h, w]}`` (CPU)."""
    return {k: v[0].float().cpu() for k, v in model.extractor(_input(model, image)).items()}


def layer_geometry(model, image) -> list[dict]:
    """Per layer: channels, grid and stride (input pixels per feature-map cell)."""
    size = model.config.image_size
    return [{"layer": k, "channels": v.shape[0], "grid": tuple(v.shape[1:]), "stride": size // v.shape[1]}
            for k, v in feature_maps(model, image).items()]


def receptive_field(model, image, layer: str, neighbourhood: int = 1,
                    row: int | None = None, col: int | None = None) -> np.ndarray:
    """Which input pixels influence one feature vector: ``|d feature / d pixel|``.

    Backpropagates the squared norm of the feature at ``(row, col)`` (the
    grid centre by default) of ``layer``, after ``neighbourhood x
    neighbourhood`` local aggregation, to the input. Returns ``[H, W]``
    gradient magnitudes scaled to a maximum of 1: the *effective*
    receptive field (its nonzero extent is the theoretical one).
    """
    ext = model.extractor
    if layer not in ext.stage_names:
        raise ValueError(f"unknown layer {layer!r}; choose one of {ext.stage_names[1:]}")
    with torch.inference_mode(False), torch.enable_grad():
        x = _input(model, image).clone().requires_grad_(True)
        h = x
        for name, stage in zip(ext.stage_names, ext.stages):
            h = stage(h)
            if name == layer:
                break
        h = local_aggregate(h.float(), neighbourhood)
        r = h.shape[2] // 2 if row is None else row
        c = h.shape[3] // 2 if col is None else col
        h[0, :, r, c].pow(2).sum().backward()
    g = x.grad[0].abs().sum(0).cpu().numpy()
    return g / max(float(g.max()), 1e-30)


def rf_extent(rf: np.ndarray, level: float = 1e-4) -> tuple[int, int]:
    """(height, width) in pixels of the region where ``rf > level``."""
    ys, xs = np.nonzero(rf > level)
    if len(ys) == 0:
        return 0, 0
    return int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)


def pca_rgb(features, clip: float = 1.0) -> np.ndarray:
    """Patch features ``[..., D]`` -> ``uint8 [..., 3]``: the first three
    principal components as red, green and blue.

    Fit jointly over everything given (pass several images stacked as
    ``[N, h, w, D]`` and their colours are comparable). Each component is
    scaled between its ``clip`` and ``100 - clip`` percentiles; the sign of
    each component is fixed so the result is deterministic.
    """
    f = torch.as_tensor(features).float()
    lead = f.shape[:-1]
    x = f.reshape(-1, f.shape[-1]).double()
    x = x - x.mean(0)
    _, vecs = torch.linalg.eigh(x.T @ x)
    comps = vecs[:, -3:].flip(1)  # top three components, largest first
    proj = x @ comps
    # Sign convention: the largest-magnitude projection is positive.
    sign = torch.sign(proj.gather(0, proj.abs().argmax(0, keepdim=True)))
    proj = (proj * sign).numpy()
    lo, hi = np.percentile(proj, clip, axis=0), np.percentile(proj, 100 - clip, axis=0)
    rgb = np.clip((proj - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
    return (rgb * 255).round().astype(np.uint8).reshape(*lead, 3)


def upsample_nearest(grid_image: np.ndarray, size: int) -> np.ndarray:
    """``[h, w, ...]`` -> ``[size, size, ...]`` by repeating cells (each patch as a block)."""
    h, w = grid_image.shape[:2]
    ys = np.arange(size) * h // size
    xs = np.arange(size) * w // size
    return grid_image[ys][:, xs]


def layer_view(model, image, layer: str, neighbourhood: int = 3, n_channels: int = 4) -> dict:
    """What one layer sees of one image (the logic of notebook 01's widget).

    Returns a dict: ``raw`` and ``aggregated`` maps ``[C, h, w]``,
    ``channels`` (the ``n_channels`` channels that vary most over the
    image), ``rgb`` (PCA of the aggregated features, ``uint8 [h, w, 3]``),
    ``stride``, ``grid`` and ``smoothness`` (mean squared difference of
    horizontally adjacent features: aggregation lowers it).
    """
    maps = feature_maps(model, image)
    if layer not in maps:
        raise ValueError(f"layer {layer!r} is not extracted; choose one of {list(maps)}")
    raw = maps[layer]
    agg = local_aggregate(raw[None], neighbourhood)[0]
    channels = agg.flatten(1).var(dim=1).argsort(descending=True)[:n_channels].tolist()
    smooth = float((agg[:, :, 1:] - agg[:, :, :-1]).pow(2).sum(0).mean())
    return {"raw": raw, "aggregated": agg, "channels": channels,
            "rgb": pca_rgb(agg.permute(1, 2, 0)), "grid": tuple(raw.shape[1:]),
            "stride": model.config.image_size // raw.shape[1], "smoothness": smooth}


def plot_layer_view(model, image, layer: str, neighbourhood: int = 3, n_channels: int = 4):
    """Figure: the image, the ``n_channels`` liveliest channels (after
    aggregation) and the PCA colouring of all channels."""
    import matplotlib.pyplot as plt

    v = layer_view(model, image, layer, neighbourhood, n_channels)
    fig, axes = plt.subplots(1, n_channels + 2, figsize=(3 * (n_channels + 2), 3.4))
    axes[0].imshow(model.display(image))
    axes[0].set_title("input (224 x 224)")
    for ax, ch in zip(axes[1:], v["channels"]):
        im = ax.imshow(v["aggregated"][ch].numpy(), cmap="viridis")
        ax.set_title(f"channel {ch}")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    axes[-1].imshow(v["rgb"])
    axes[-1].set_title("PCA of all channels")
    for ax in axes:
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    fig.suptitle(f"{layer}: {v['aggregated'].shape[0]} channels on a {v['grid'][0]}x{v['grid'][1]} grid "
                 f"(stride {v['stride']}), neighbourhood p={neighbourhood}", fontsize=13)
    fig.tight_layout()
    return fig


# ------------------------------------------------- 02 memory bank and coreset
def bank_footprint(n_images: int, grid: tuple[int, int], dim: int, bytes_per_value: int = 4) -> dict:
    """Size of the full memory bank: every patch of every training image."""
    patches = n_images * grid[0] * grid[1]
    return {"patches": patches, "dim": dim, "megabytes": patches * dim * bytes_per_value / 2**20}


def radius_curves(features: torch.Tensor, counts, seed: int = 0, projection_dim: int = 128) -> dict:
    """Covering radius (in the full feature space) of greedy and random
    coresets of each size in ``counts``.

    Greedy picks are nested (the first ``k`` of a longer run are the run
    for ``k``), so one run of ``max(counts)`` serves every size.
    """
    counts = sorted(int(c) for c in counts)
    greedy = greedy_coreset(features, count=counts[-1], projection_dim=projection_dim, seed=seed).indices
    rand = random_coreset(features, count=counts[-1], seed=seed).indices
    return {"counts": counts,
            "greedy": [covering_radius(features, greedy[:c]) for c in counts],
            "random": [covering_radius(features, rand[:c]) for c in counts]}


def coreset_trial(train_features: torch.Tensor, test_features: torch.Tensor, labels, ratio: float,
                  method: str = "greedy", seed: int = 0) -> dict:
    """Build a bank from precomputed features and score the test set with it
    (the logic of notebook 02's coreset slider; no backbone runs).

    Args:
        train_features: ``[..., D]`` training patch features (all patches).
        test_features: ``[T, h, w, D]`` test patch features.
        labels: ``[T]`` 1 = defective.
        ratio: share of training patches kept; ``method``: greedy | random.

    Returns:
        dict with ``size``, ``megabytes``, ``covering_radius`` (full
        feature space), ``image_auroc``, ``scores`` and ``seconds`` (coreset
        selection time).
    """
    import time

    from .memory_bank import MemoryBank
    from .metrics import image_auroc

    flat = train_features.reshape(-1, train_features.shape[-1])
    t0 = time.perf_counter()
    if method == "greedy":
        idx = greedy_coreset(flat, ratio, seed=seed).indices
    elif method == "random":
        idx = random_coreset(flat, ratio, seed=seed).indices
    else:
        raise ValueError(f"method must be 'greedy' or 'random', not {method!r}")
    seconds = time.perf_counter() - t0
    bank = MemoryBank(flat[idx].contiguous(), torch.zeros(len(idx), 3, dtype=torch.long))
    t = test_features
    dist, _ = bank.search(t.reshape(-1, t.shape[-1]), k=1)
    scores = dist[:, 0].view(t.shape[0], -1).amax(dim=1).numpy()
    labels = np.asarray(labels, dtype=int)
    both = 0 < labels.sum() < len(labels)
    return {"size": len(idx), "megabytes": bank.nbytes / 2**20,
            "covering_radius": covering_radius(flat, idx),
            "image_auroc": image_auroc(labels, scores) if both else float("nan"),
            "scores": scores, "seconds": seconds}


def defect_patches(mask: np.ndarray, grid: tuple[int, int], min_fraction: float = 0.3) -> np.ndarray:
    """``bool [h, w]``: patches whose pixels are at least ``min_fraction`` defective."""
    m = torch.as_tensor(np.asarray(mask), dtype=torch.float32)[None, None]
    frac = torch.nn.functional.adaptive_avg_pool2d(m, grid)[0, 0].numpy()
    return frac >= min_fraction


def embed_2d(features, method: str = "umap", seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """``[N, D]`` -> ``[N, 2]`` with UMAP (``umap-learn``), or PCA (``method="pca"``,
    also the fallback when umap-learn is not installed)."""
    x = np.asarray(torch.as_tensor(features).float().cpu())
    if method == "umap":
        try:
            import umap
        except ImportError:
            method = "pca"
        else:
            return umap.UMAP(n_neighbors=n_neighbors, min_dist=0.1, random_state=seed).fit_transform(x)
    if method != "pca":
        raise ValueError(f"method must be 'umap' or 'pca', not {method!r}")
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return xc @ vt[:2].T


# ----------------------------------------------------- 03 scoring and heatmaps
def eq7_breakdown(model, image, b: int = 3) -> dict:
    """The paper's Eq. 7 for one image, every quantity named.

    Returns a dict: ``row``/``col`` of the most anomalous patch
    ``m^test,*``, ``s_star`` (its distance to the nearest bank patch
    ``m*``), ``m_star`` (bank row), ``neighbours`` (``N_b(m*)``, ``m*``
    first), ``distances`` (from ``m^test,*`` to each of them),
    ``softmax`` (``exp d / sum exp d``), ``weight`` (``1 - softmax[0]``),
    ``score`` (``weight * s_star``) and ``package_score`` (the same from
    :func:`~patchcore_core.scoring.reweighted_image_score`).
    """
    feats = model.extract([image])[0]  # [h, w, D]
    h, w, d = feats.shape
    flat = feats.reshape(-1, d)
    dist, idx = model.bank.search(flat, k=1)
    patch, nearest = dist[:, 0], idx[:, 0]
    i = int(patch.argmax())
    m_star = int(nearest[i])
    _, support = model.bank.search(model.bank.features[m_star][None].to(flat), k=b)
    support = support[0].cpu()
    bank = model.bank.features[support.to(model.bank.features.device)].to(flat)
    dists = torch.linalg.vector_norm(bank - flat[i], dim=1).cpu().double()
    soft = torch.softmax(dists, dim=0)
    weight = 1.0 - float(soft[0])
    package = float(reweighted_image_score(flat, patch, nearest, model.bank, b))
    return {"row": i // w, "col": i % w, "s_star": float(patch[i]), "m_star": m_star,
            "neighbours": support.tolist(), "distances": dists.tolist(), "softmax": soft.tolist(),
            "weight": weight, "score": weight * float(patch[i]), "package_score": package}


def map_stages(patch_scores, size: int = 224, sigma: float = 4.0) -> dict:
    """From ``[h, w]`` patch scores to the anomaly map, one step at a time:
    ``patch`` (as is), ``nearest`` (each patch a block), ``bilinear``
    (interpolated) and ``smoothed`` (bilinear + Gaussian ``sigma``)."""
    p = torch.as_tensor(np.asarray(patch_scores), dtype=torch.float32)
    return {"patch": p.numpy(),
            "nearest": upsample_nearest(p.numpy(), size),
            "bilinear": anomaly_map(p[None], size, 0.0)[0].numpy(),
            "smoothed": anomaly_map(p[None], size, sigma)[0].numpy()}


def _train_display(model, index: int) -> np.ndarray:
    name = model.train_names[index]
    if Path(name).is_file():
        return model.display(name)
    size = model.config.image_size
    return np.full((size, size, 3), 128, dtype=np.uint8)  # fitted from in-memory images


def plot_explanation(model, image, row: int | None = None, col: int | None = None, vmax=None):
    """Figure: the test image with its anomaly map and the chosen patch, and
    the training image holding the nearest normal patch (both boxed, and
    zoomed). ``row``/``col`` default to the most anomalous patch."""
    import matplotlib.pyplot as plt

    ex = model.explain(image, row, col)
    pred = model.predict([image])[0]
    test = model.display(image)
    train = _train_display(model, ex.train_index)

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    im = axes[0].imshow(pred.anomaly_map, cmap="inferno", vmin=0, vmax=vmax)
    axes[0].imshow(draw_box(test, ex.box, (0, 255, 0)), alpha=0.55)
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04, label="patch distance")
    axes[0].set_title(f"test patch ({ex.row}, {ex.col}): score {ex.distance:.1f}")
    axes[1].imshow(zoom_box(test, ex.box, pad=16))
    axes[1].set_title("test patch, zoomed")
    axes[2].imshow(draw_box(train, ex.train_box, (0, 200, 255)))
    axes[2].set_title(f"nearest normal: {Path(ex.train_name).name}\npatch ({ex.train_row}, {ex.train_col})")
    axes[3].imshow(zoom_box(train, ex.train_box, pad=16))
    axes[3].set_title("nearest normal patch, zoomed")
    for ax in axes:
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------- 04 evaluation
def per_defect_table(defects, scores, threshold: float | None) -> list[dict]:
    """One row per defect type (``good`` first): count, score range and the
    share flagged anomalous (score above ``threshold``)."""
    defects, scores = list(defects), np.asarray(scores, dtype=float)
    kinds = sorted(set(defects), key=lambda k: (k != "good", k))
    rows = []
    for kind in kinds:
        s = scores[[d == kind for d in defects]]
        row = {"defect": kind, "n": len(s), "mean score": float(s.mean()),
               "min score": float(s.min()), "max score": float(s.max())}
        if threshold is not None:
            row["flagged"] = float((s > threshold).mean())
        rows.append(row)
    return rows


def worst_failures(labels, scores, threshold: float, n: int = 4) -> list[dict]:
    """The ``n`` images the threshold gets most wrong (or nearly wrong).

    ``margin`` is how far on the wrong side an image is: ``score -
    threshold`` for normal images, ``threshold - score`` for defective
    ones; positive means misclassified. Sorted worst first.
    """
    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    margin = np.where(labels == 1, threshold - scores, scores - threshold)
    order = np.argsort(-margin, kind="stable")[:n]
    return [{"index": int(i), "label": int(labels[i]), "score": float(scores[i]),
             "margin": float(margin[i]), "wrong": bool(margin[i] > 0),
             "kind": ("missed defect" if labels[i] else "false alarm") if margin[i] > 0 else
                     ("closest defect" if labels[i] else "closest normal")} for i in order]


# ------------------------------------------------------------ 05 experiments
def experiment_cache_dir() -> Path:
    """Where :func:`cached_evaluation` keeps its JSON results
    (``$PATCHCORE_CACHE/experiments``, else ``~/.cache/patchcore_core/experiments``)."""
    from .builtin_data import default_cache_dir

    return default_cache_dir() / "experiments"


def cached_evaluation(root, category: str, shots: int | None = None, cache_dir=None,
                      device: str = "cpu", **config) -> dict:
    """:func:`~patchcore_core.evaluation.evaluate_category`'s metrics, cached as JSON.

    The cache key is everything that changes the result: data root,
    category, shots, device, settings and package version. A second call
    with the same key reads the file (``"cached": True`` in the result).
    """
    from . import __version__
    from .evaluation import evaluate_category

    key = {"root": str(Path(root).resolve()), "category": category, "shots": shots,
           "device": device, "config": dict(sorted(config.items())), "version": __version__}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir is not None else experiment_cache_dir()
    path = cache / f"{category}-{digest}.json"
    if path.is_file():
        return {**json.loads(path.read_text())["metrics"], "cached": True}
    result = evaluate_category(root, category, shots=shots, device=device, progress=False, **config)
    metrics = {k: (None if isinstance(v, float) and math.isnan(v) else v)
               for k, v in result.metrics.items()}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"key": key, "metrics": metrics}, indent=1, default=str))
    return {**metrics, "cached": False}


def mean_over_seeds(runs: list[dict]) -> dict:
    """One setting run with several seeds -> one row: numbers averaged, each
    with ``<key>_std`` (sample standard deviation; 0 for a single run).
    ``cached`` is true only if every run was; a failed run (``error``) is
    returned as it is."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    row = {**runs[0], "seeds": len(runs), "cached": all(r.get("cached", False) for r in runs)}
    for key, value in runs[0].items():
        values = [r.get(key) for r in runs]
        if isinstance(value, bool) or not all(isinstance(v, (int, float)) for v in values):
            continue
        same = all(v == values[0] for v in values)  # sizes, counts: keep them as they are
        row[key] = value if same else float(np.mean(values))
        row[f"{key}_std"] = 0.0 if same else float(np.std(values, ddof=1))
    return row


def plot_sweep(rows: list[dict], x: str, title: str, xlabel: str | None = None,
               metrics=("image_auroc", "pixel_auroc", "aupro"), cost: str = "fit_seconds",
               logx: bool = False, by: str | None = None):
    """Figure of one ablation: the metrics (left) and the cost (right) against
    the swept setting ``x`` (numbers, or names shown as categories). Rows
    with an ``error`` are left out of the lines and listed in the title.
    ``by`` names a second setting (e.g. ``"sampling"``): one line per value
    of it, told apart by line style, in the metric's colour. Rows from
    :func:`mean_over_seeds` get error bars of one standard deviation."""
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    failed = [str(r.get(x)) for r in rows if "error" in r]
    groups = list(dict.fromkeys(r[by] for r in ok)) if by else [None]
    xs = list(dict.fromkeys(r[x] for r in ok))
    categorical = any(isinstance(v, str) for v in xs)
    where = {v: (i if categorical else v) for i, v in enumerate(xs)}
    styles = itertools.cycle(["o-", "s--", "^:", "d-."])
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    for g, style in zip(groups, styles):
        part = [r for r in ok if by is None or r[by] == g]
        pos = [where[r[x]] for r in part]
        suffix = "" if by is None else f", {g}"
        for colour, m in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], metrics):
            ys = [np.nan if r.get(m) is None else r[m] for r in part]
            spread = [r.get(f"{m}_std") or 0.0 for r in part]
            if any(spread):
                a.errorbar(pos, ys, yerr=spread, fmt=style, color=colour, lw=2, capsize=3, label=m + suffix)
            else:
                a.plot(pos, ys, style, color=colour, lw=2, label=m + suffix)
        if categorical and by is None:
            b.bar(pos, [r[cost] for r in part], width=0.6, color="tab:grey")
        else:
            b.plot(pos, [r[cost] for r in part], style, color="tab:grey", lw=2, label=g)
    a.set_ylabel("metric (1 = perfect)")
    a.legend(loc="lower right", fontsize=9 if by else None)
    a.set_title("accuracy")
    b.set_ylabel(cost.replace("_", " "))
    b.set_title("cost")
    if by:
        b.legend()
    for ax in (a, b):
        ax.set_xlabel(xlabel or x)
        ax.grid(alpha=0.3)
        if categorical:
            ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        elif logx:
            ax.set_xscale("log")
    fig.suptitle(title + (f"  (failed: {', '.join(failed)})" if failed else ""), fontsize=13)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------ 06 your own data
def sample_own_data(dst, root=None, category: str = "brick") -> dict[str, Path]:
    """A stand-in for "your own images": ``dst/good`` (the category's good
    training images) and ``dst/test`` (its test images, named
    ``<defect>_<name>``), copied from an MVTec-layout ``root`` (default:
    the built-in data). Returns ``{"good": ..., "test": ...}``."""
    from .builtin_data import builtin_root
    from .data import MVTecCategory

    cat = MVTecCategory(root or builtin_root(), category)
    dst = Path(dst)
    out = {"good": dst / "good", "test": dst / "test"}
    for p in out.values():
        p.mkdir(parents=True, exist_ok=True)
    for path in cat.train:
        shutil.copy2(path, out["good"] / path.name)
    for item in cat.test:
        shutil.copy2(item.path, out["test"] / f"{item.defect}_{item.path.name}")
    return out


# ------------------------------------------------------------------ shared
def plot_predictions(model, images, predictions, titles=None, ncols: int = 4, vmax=None):
    """Grid of images with their anomaly maps overlaid; each titled with
    its score and verdict. One shared colour scale (``vmax``: default the
    largest map value) with a colour bar."""
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    n = len(images)
    nrows = math.ceil(n / ncols)
    vmax = vmax or max(float(p.anomaly_map.max()) for p in predictions)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.5 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        p = predictions[k]
        ax.imshow(overlay_heatmap(model.display(images[k]), p.anomaly_map, 0.5, 0, vmax))
        head = f"{titles[k]}\n" if titles is not None else ""
        norm = f" ({p.normalised_score:.2f}x thr)" if p.normalised_score is not None else ""
        colour = "crimson" if p.is_anomalous else "black"
        ax.set_title(f"{head}score {p.score:.1f}{norm}\n{p.verdict}", fontsize=11, color=colour)
    fig.colorbar(cm.ScalarMappable(colors.Normalize(0, vmax), "inferno"), ax=axes.ravel().tolist(),
                 fraction=0.02, pad=0.02, label="anomaly map (patch distance)")
    return fig


def markdown_table(rows: list[dict], digits: int = 3) -> str:
    """Rows of dicts -> a Markdown table (for ``IPython.display.Markdown``)."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
