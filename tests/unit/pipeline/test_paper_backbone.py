"""The paper's backbone, WideResNet-50-2, run through the whole pipeline offline.

A user with the real ImageNet weights gets exactly this path: torchvision
finds ``wide_resnet50_2-<hash>.pth`` in ``$TORCH_HOME/hub/checkpoints`` and
loads it. Here that file holds a randomly initialised network (the real
weights cannot be downloaded in the test), so the scores mean nothing; what
is checked is that every step runs with the paper's shapes: layer2 + layer3,
1024-d patch features, fit, predict, save and load.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import patchcore_core
from patchcore_core import PatchCore


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    import torchvision

    home = tmp_path_factory.mktemp("torch_home")
    weights = torchvision.models.get_model_weights("wide_resnet50_2").DEFAULT
    name = weights.url.rsplit("/", 1)[-1]  # the exact file name torchvision looks for
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    net = torchvision.models.wide_resnet50_2(weights=None)
    torch.save(net.state_dict(), home / "hub" / "checkpoints" / name)
    return home, name


@pytest.mark.slow
def test_wide_resnet50_2_whole_pipeline_offline(torch_home, brick, tmp_path, monkeypatch):
    home, name = torch_home
    assert name.startswith("wide_resnet50_2-") and name.endswith(".pth")
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_download(*args, **kwargs):
        raise AssertionError("the weights were downloaded instead of read from TORCH_HOME")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    model = PatchCore(backbone="wide_resnet50_2", device="cpu", image_size=64, batch_size=4,
                      coreset_ratio=0.1)
    model.fit(brick.train[:6], progress=False)

    assert model.layers == ("layer2", "layer3")
    assert model.embedding.channels == [512, 1024]         # layer2 and layer3 of WideResNet-50-2
    assert model.stats["feature_dim"] == 1024 == model.bank.features.shape[1]
    assert model.grid == (8, 8)                             # stride 8 on a 64 px crop
    assert model.threshold is not None and len(model.calibration_scores) == 6  # leave-one-out

    test = [t.path for t in brick.test[:3]]
    preds = model.predict(test)
    assert all(np.isfinite(p.score) and p.anomaly_map.shape == (64, 64) for p in preds)

    path = patchcore_core.save(model, tmp_path / "wrn.safetensors")
    loaded = patchcore_core.load(path, device="cpu")
    assert loaded.config.backbone == "wide_resnet50_2" and loaded.threshold == model.threshold
    again = loaded.predict(test)
    assert [p.score for p in again] == pytest.approx([p.score for p in preds], rel=1e-5)
