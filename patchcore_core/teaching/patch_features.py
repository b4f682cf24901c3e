"""Looking at patch features (notebook 01): feature maps, receptive fields, PCA colours.

Plain functions, so every plot and widget of the notebook also works
without a front end: call the function and get the same numbers.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.decomposition import PCA

from patchcore_core.pipeline.backbones import FeatureExtractor, _efficientnet_lite, _stages, _torchvision
from patchcore_core.pipeline.features import local_aggregate

__all__ = ["one_backbone", "feature_maps", "layer_geometry", "stage_strides", "layer_pairs",
           "receptive_field", "rf_extent", "pca_rgb", "upsample_nearest", "layer_view", "plot_layer_view"]


def one_backbone(model, what: str):
    """``model`` when it has one backbone; for an ensemble, a ``TypeError`` naming the
    members to choose from (``what`` shows one backbone's insides)."""
    if len(model.members) == 1:
        return model
    names = " + ".join(m.config.backbone for m in model.members)
    raise TypeError(f"{what} looks inside one backbone, and this model is an ensemble of {names}: "
                    f"pass one member, e.g. model.members[0] ({model.members[0].config.backbone})")


def _input(model, image) -> torch.Tensor:
    if model.preprocess is None:
        raise RuntimeError("fit the model first: its preprocessing is chosen from the training images")
    return model.preprocess(image)[None].to(model.device)


def feature_maps(model, image) -> dict[str, torch.Tensor]:
    """The backbone's raw feature maps of one image: ``{layer: [C, h, w]}`` (CPU)."""
    model = one_backbone(model, "feature_maps")
    return {k: v[0].float().cpu() for k, v in model.extractor(_input(model, image)).items()}


def layer_geometry(model, image) -> list[dict]:
    """Per layer: channels, grid and stride (input pixels per feature-map cell)."""
    size = model.config.image_size
    return [{"layer": k, "channels": v.shape[0], "grid": tuple(v.shape[1:]), "stride": size // v.shape[1]}
            for k, v in feature_maps(model, image).items()]


def stage_strides(backbone: str = "efficientnet_lite0", size: int = 224) -> dict[str, int]:
    """Every stage of a backbone (stem left out) with its stride, measured by
    running a blank image through it."""
    net = _efficientnet_lite(backbone) if backbone.startswith("efficientnet_lite") else _torchvision(backbone)
    names = tuple(n for n, _ in _stages(net))[1:]
    out = FeatureExtractor(net, names)(torch.zeros(1, 3, size, size))
    return {k: size // v.shape[-1] for k, v in out.items()}


def layer_pairs(strides: dict[str, int], pairs=((4, 8), (8, 16), (16, 32))) -> dict[str, tuple[str, str]]:
    """For each pair of strides, the two stages PatchCore would take: the
    deepest stage at each stride (``stage_strides`` gives ``strides``).
    Returns ``{"stride 8 + 16": ("blocks.2", "blocks.4"), ...}``; a pair the
    backbone lacks is left out."""
    deepest = {}
    for name, stride in strides.items():  # stages come in order, so the last one wins
        deepest[stride] = name
    return {f"stride {a} + {b}": (deepest[a], deepest[b]) for a, b in pairs if a in deepest and b in deepest}


def receptive_field(model, image, layer: str, neighbourhood: int = 1,
                    row: int | None = None, col: int | None = None) -> np.ndarray:
    """Which input pixels influence one feature vector: ``|d feature / d pixel|``.

    Backpropagates the squared norm of the feature at ``(row, col)`` (the
    grid centre by default) of ``layer``, after ``neighbourhood x
    neighbourhood`` local aggregation, to the input. Returns ``[H, W]``
    gradient magnitudes scaled to a maximum of 1: the *effective*
    receptive field (its nonzero extent is the theoretical one).
    """
    model = one_backbone(model, "receptive_field")
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
    scaled between its ``clip`` and ``100 - clip`` percentiles. scikit-learn's
    PCA fixes each component's sign, so the colours are deterministic.
    """
    f = np.asarray(torch.as_tensor(features).float().cpu(), dtype=np.float64)
    lead = f.shape[:-1]
    proj = PCA(n_components=3, svd_solver="full").fit_transform(f.reshape(-1, f.shape[-1]))
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
    model = one_backbone(model, "layer_view")
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
