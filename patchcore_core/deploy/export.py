"""A fitted model -> a folder that :class:`~patchcore_core.deploy.runtime.Runtime` scores
without PyTorch, written only when its scores match PyTorch's.

    >>> from patchcore_core.deploy.export import export_model
    >>> report = export_model("brick.safetensors", "brick_export")   # doctest: +SKIP

The folder: ``model.onnx`` (normalised images -> compact patch features: the
backbone, the 3x3 aggregation, the layers on one grid and the pooling as one
matrix), ``search.onnx`` (exact nearest neighbours), ``bank.npy`` (the memory
bank), ``settings.json`` (threshold and every setting scoring needs),
``provenance.json`` (the source model, the versions, and what the parity check
measured); with ``int8``, also
``model.int8.onnx``: onnxruntime's static quantisation of the backbone's
convolutions but the stem, calibrated on the training images (see ``_quantise``).

The exact nearest-neighbour search is a second, bank-free graph,
``search.onnx`` (``||q - m||^2`` as one matrix product, then TopK; the bank is
an input): onnxruntime answers it 2.4x faster than faiss's flat index for one
image and about as fast for eight (README, "CPU latency"), and the runtime
needs no faiss.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from patchcore_core._version import __version__
from patchcore_core.data.mvtec import image_folder
from patchcore_core.io.save_load import load
from patchcore_core.pipeline.calibration import calibration_folds, threshold_from_scores
from patchcore_core.pipeline.features import aggregate_layers
from patchcore_core.pipeline.patchcore import PatchCore
from patchcore_core.util.atomic import _umask, move_into_place, scratch_dir
from patchcore_core.util.images import DataError

from . import runtime as rt
from .runtime import ExportError, Runtime, is_export

__all__ = ["RELATIVE_TOLERANCE", "ExportReport", "FeatureGraph", "export_model", "default_check_images",
           "check_image_paths", "compare", "search_graph"]

RELATIVE_TOLERANCE = 1e-4  # the largest relative score difference an export may have (issue 25)
MAX_DEFAULT_CHECK_IMAGES = 16
MAX_CALIBRATION_IMAGES = 32
OPSET = 17
SEARCH_IR_VERSION = 8  # what opset 17 needs: onnxruntime releases back to 1.14 read it


class FeatureGraph(nn.Module):
    """``PatchCore.features`` as one traceable module: normalised images ``[B, 3, H, W]`` ->
    compact patch features ``[B, h, w, D]``. The same stages, aggregation and matrix; only
    the channels-last layout and inference mode of the eager path are left out."""

    def __init__(self, model: PatchCore):
        super().__init__()
        extractor = model.extractor
        self.stage_names, self.stages, self.layers = extractor.stage_names, extractor.stages, extractor.layers
        self.neighbourhood, self.aggregation = model.config.neighbourhood, model.config.aggregation
        emb = model.embedding
        self.register_buffer("projection", (emb.L if emb.L is not None else emb.P).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = []
        for name, stage in zip(self.stage_names, self.stages):
            x = stage(x)
            if name in self.layers:
                maps.append(x)
        layers, _ = aggregate_layers(maps, self.neighbourhood, self.aggregation)
        r = torch.cat(layers, dim=1).permute(0, 2, 3, 1)  # [B, h, w, sum C]: PatchEmbedding.concat's rows
        return r @ self.projection


@dataclass
class ExportReport:
    """What an export measured: the largest differences to PyTorch on the check images."""

    folder: Path | None
    n_check: int
    max_relative: float               # largest |score_onnx - score_torch| / |score_torch|
    max_absolute: float
    max_map_difference: float         # largest |map_onnx - map_torch|, in score units
    verdicts_differ: int
    int8: dict = field(default_factory=dict)  # flips and score changes of int8 vs PyTorch

    def lines(self) -> list[str]:
        out = [f"parity (fp32 onnxruntime vs PyTorch, {self.n_check} check images): largest score "
               f"difference {self.max_relative:.2e} relative ({self.max_absolute:.2e} absolute), "
               f"anomaly maps {self.max_map_difference:.2e}, verdicts that differ: {self.verdicts_differ}"]
        if self.int8:
            q = self.int8
            out.append(f"int8: {q['verdicts_flipped']} of {self.n_check} verdicts flip; largest score "
                       f"change {q['max_relative']:.2%} relative ({q['max_absolute']:.4g} "
                       "absolute)")
        return out


def _existing(names: list[str]) -> list[Path]:
    return [Path(n) for n in names if Path(n).is_file()]


def default_check_images(model: PatchCore) -> list[Path]:
    """The model's held-out good images (those that set its threshold), where its training
    images are still on disk; else any training images; at most a few."""
    names = model.train_names
    folds = calibration_folds(len(names), model.config.calibration_fraction, model.config.seed)
    held = sorted({i for _, h in folds for i in h})
    found = _existing([names[i] for i in held]) or _existing(names)
    return found[:MAX_DEFAULT_CHECK_IMAGES]


def check_image_paths(given) -> list[Path]:
    """``--check-images``: a folder (its images and its subfolders', e.g. an MVTec ``test/``),
    one image, or a list of images."""
    if isinstance(given, (list, tuple)):
        return [Path(p) for p in given]
    given = Path(given)
    if not given.is_dir():
        return [given]
    folders = [given, *sorted(d for d in given.rglob("*") if d.is_dir())]
    found = []
    for folder in folders:
        try:
            found += image_folder(folder)
        except DataError:  # a folder of folders (test/) holds no images itself
            pass
    if not found:
        raise ExportError(f"--check-images {given}: no images in it or its subfolders")
    return found


def compare(reference: np.ndarray, other: np.ndarray, threshold: float | None,
            other_threshold: float | None = None) -> dict:
    """Largest relative and absolute score differences, and how many verdicts differ
    (``other`` judged by ``other_threshold`` when given)."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    absolute = np.abs(other - reference)
    relative = absolute / np.maximum(np.abs(reference), 1e-12)
    other_threshold = threshold if other_threshold is None else other_threshold
    flips = 0 if threshold is None else int(((reference > threshold) != (other > other_threshold)).sum())
    return {"max_relative": float(relative.max()), "max_absolute": float(absolute.max()),
            "verdicts_flipped": flips}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _settings(model: PatchCore, precision: str) -> dict:
    c, p = model.config, model.preprocess
    return {
        "format": rt.EXPORT_FORMAT,
        "precision": precision,
        "backbone": c.backbone, "layers": list(model.layers),
        "resize": p.resize, "image_size": p.crop, "crop_mode": p.mode,
        "mean": [float(v) for v in p.mean], "std": [float(v) for v in p.std],
        "grid": list(model.grid), "feature_dim": int(model.embedding.compact_dim),
        "sigma": float(c.sigma), "upsample": c.upsample, "reweight_neighbours": c.reweight_neighbours,
        "batch_size": c.batch_size,
        "threshold": None if model.threshold is None else float(model.threshold),
        "config": c.to_dict(),
    }


def _write_onnx(model: PatchCore, path: Path) -> None:
    graph = FeatureGraph(model).eval()
    size = model.preprocess.crop
    dummy = torch.zeros(1, 3, size, size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes are fixed: the image size is
        torch.onnx.export(graph, (dummy,), str(path), input_names=["image"], output_names=["features"],
                          dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)


def search_graph(dim: int):
    """Exact L2 k-nearest-neighbour search as an ONNX graph (no weights of its own):

    inputs ``queries [N, D]``, ``bank_t_x_minus_2 [D, M]`` (the bank transposed, times -2),
    ``bank_sq [1, M]`` (each bank row's squared norm) and ``k [1]``; outputs ``distances
    [N, k]`` ascending and ``indices [N, k]``, from ``||q - m||^2 = ||q||^2 - 2 q.m + ||m||^2``:
    one matrix product for all pairs, as faiss's flat index and the PyTorch backend compute it.
    The runtime folds the -2 into the bank once, and ``||q||^2`` is added after TopK (it is the
    same for every ``m`` of a query): each saves a pass over the ``[N, M]`` block."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node
    graph = helper.make_graph(
        [node("MatMul", ["queries", "bank_t_x_minus_2"], ["minus_2_q_dot_m"]),
         node("Add", ["minus_2_q_dot_m", "bank_sq"], ["d2_minus_q_sq"]),
         node("TopK", ["d2_minus_q_sq", "k"], ["nearest_minus_q_sq", "indices"], axis=1, largest=0, sorted=1),
         node("ReduceSumSquare", ["queries"], ["q_sq"], axes=[1], keepdims=1),
         node("Add", ["nearest_minus_q_sq", "q_sq"], ["d2"]),
         node("Relu", ["d2"], ["d2_clamped"]),  # rounding can make a tiny d2 negative
         node("Sqrt", ["d2_clamped"], ["distances"])],
        "patchcore_exact_knn",
        [helper.make_tensor_value_info("queries", TensorProto.FLOAT, ["N", dim]),
         helper.make_tensor_value_info("bank_t_x_minus_2", TensorProto.FLOAT, [dim, "M"]),
         helper.make_tensor_value_info("bank_sq", TensorProto.FLOAT, [1, "M"]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("distances", TensorProto.FLOAT, ["N", "k"]),
         helper.make_tensor_value_info("indices", TensorProto.INT64, ["N", "k"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=SEARCH_IR_VERSION, producer_name="patchcore_core")
    onnx.checker.check_model(model)
    return model


def _stem_convolutions(model_path: Path) -> list[str]:
    """The names of the backbone's stem: the convolutions no other convolution feeds (they read
    the image, perhaps through a padding), found in the graph's topological node order."""
    import onnx

    after_conv: set[str] = set()  # tensors that some convolution's output flows into
    stem = []
    for node in onnx.load(str(model_path)).graph.node:
        fed = any(name in after_conv for name in node.input)
        if node.op_type == "Conv" and not fed:
            stem.append(node.name)
        if node.op_type == "Conv" or fed:
            after_conv.update(node.output)
    return stem


def _quantise(fp32: Path, int8: Path, runtime: Runtime, images: list[Path]) -> None:
    """onnxruntime static quantisation (QDQ, per-channel int8 weights, MinMax activation ranges)
    of the convolutions, calibrated on ``images``; the aggregation and the pooling matrix stay
    float, and so does the stem, the convolution that reads the image.

    Why the stem stays float: quantised too (the normalised image rounded to one uint8 scale),
    image AUROC fell by more than the 0.01 issue 25 allows (grid 0.909 -> 0.879, magnetic_tile
    0.839 -> 0.825); float, both keep fp32's AUROC at no measurable cost in speed. The recipes
    measured and not enough (other calibrations, more images, an int8 bank) are in the README,
    "Parity and int8 on the real sets"."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(images)

        def get_next(self):
            image = next(self.items, None)
            return None if image is None else {runtime.input_name: runtime.preprocess(image)[None]}

    prepared = int8.with_name("prepared.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv"],
                    nodes_to_exclude=_stem_convolutions(prepared))
    prepared.unlink()


def _int8_threshold(model: PatchCore, runtime: Runtime) -> float | None:
    """The threshold the fit's own procedure gives with int8 features: each held-out training
    image scored against the bank rows of the images kept beside it. Quantisation shifts every
    distance a little, so the fp32 threshold would call good images anomalous. None where the
    training images are gone or the score is reweighted (the fp32 threshold is kept)."""
    names, c = model.train_names, model.config
    if c.reweight_neighbours or not all(Path(n).is_file() for n in names):
        return None
    origin = model.bank.origin[:, 0].numpy()
    scores = []
    for kept, held in calibration_folds(len(names), c.calibration_fraction, c.seed):
        feats = runtime.features(np.stack([runtime.preprocess(names[i]) for i in held]))
        dist, _ = runtime.search(feats.reshape(-1, feats.shape[-1]), bank=runtime.bank[np.isin(origin, kept)])
        scores += dist[:, 0].reshape(len(held), -1).max(axis=1).tolist()
    return threshold_from_scores(scores, c.false_alarm_rate or None)


def export_model(model_path, out, check_images=None, int8: bool = False, log=print) -> ExportReport:
    """Export the model file ``model_path`` to the folder ``out`` (written whole or not at all).

    Raises :class:`ExportError` when the exported model's scores differ from PyTorch's by
    more than :data:`RELATIVE_TOLERANCE` (relative) or a verdict differs: nothing is written.
    """
    model_path, out = Path(model_path), Path(out)
    if out.exists() and not is_export(out) and (not out.is_dir() or any(out.iterdir())):
        # an export replaces an earlier export, never a folder of other things
        raise ExportError(f"--out {out}: exists and is not an exported model folder; give a new or empty "
                          "folder, or an earlier export to replace")
    model = load(model_path, device="cpu")
    if not isinstance(model, PatchCore):
        raise ExportError(f"{model_path}: an ensemble of {len(model.members)} backbones; export takes one "
                          "backbone (fit one with a single --backbone)")
    if model.bank.is_approximate:
        raise ExportError(f"{model_path}: knn_backend {model.config.knn_backend!r} is an approximate search; "
                          "the export searches exactly (refit with --knn-backend faiss)")
    if check_images is not None:
        checks = check_image_paths(check_images)
    else:
        checks = default_check_images(model)
        if not checks:
            raise ExportError(f"{model_path}: its training images are not on this machine; "
                              "give --check-images DIR to prove parity on")
    log(f"checking parity on {len(checks)} image(s)" +
        ("" if check_images is not None else " (the model's own held-out training images)"))
    torch_scores, torch_maps, _, _ = model.score(checks)
    torch_scores, torch_maps = torch_scores.numpy(), torch_maps.numpy()

    with scratch_dir(out) as tmp:
        _write_onnx(model, tmp / rt.MODEL_FILES["fp32"])
        (tmp / rt.SEARCH_FILE).write_bytes(search_graph(int(model.embedding.compact_dim)).SerializeToString())
        np.save(tmp / rt.BANK_FILE, model.bank.features.detach().float().cpu().numpy(), allow_pickle=False)
        settings = _settings(model, "int8" if int8 else "fp32")
        (tmp / rt.SETTINGS_FILE).write_text(json.dumps({**settings, "precision": "fp32"}, indent=2))
        runtime = Runtime(tmp, precision="fp32")
        scores, maps, _ = runtime.score(checks)
        parity = compare(torch_scores, scores, model.threshold)
        report = ExportReport(out, len(checks), parity["max_relative"], parity["max_absolute"],
                              float(np.abs(maps - torch_maps).max()), parity["verdicts_flipped"])
        for line in report.lines():
            log(line)
        if report.max_relative > RELATIVE_TOLERANCE or report.verdicts_differ:
            raise ExportError(f"refused: the exported model's scores differ from PyTorch's by "
                              f"{report.max_relative:.2e} relative (limit {RELATIVE_TOLERANCE:g}) and "
                              f"{report.verdicts_differ} verdict(s) differ; nothing written to {out}")
        if int8:
            calibration = _existing(model.train_names)[:MAX_CALIBRATION_IMAGES]
            if not calibration:
                raise ExportError(f"{model_path}: --int8 is calibrated on the training images, which are not "
                                  "on this machine")
            log(f"quantising to int8, calibrated on {len(calibration)} training image(s)")
            _quantise(tmp / rt.MODEL_FILES["fp32"], tmp / rt.MODEL_FILES["int8"], runtime, calibration)
            quantised = Runtime(tmp, precision="int8")
            threshold = _int8_threshold(model, quantised)
            if threshold is not None:
                settings["int8_threshold"] = threshold
                log(f"int8 threshold, recalibrated on the held-out training images: {threshold:.4g} "
                    f"(fp32: {model.threshold:.4g})")
            q_scores, q_maps, _ = quantised.score(checks)
            report.int8 = {**compare(torch_scores, q_scores, model.threshold, threshold or model.threshold),
                           "threshold": threshold,
                           "max_map_difference": float(np.abs(q_maps - torch_maps).max()),
                           "calibration_images": len(calibration)}
            log(report.lines()[-1])
        (tmp / rt.SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
        provenance = {
            "source": {"file": str(model_path.resolve()), "sha256": _sha256(model_path),
                       "n_train": len(model.train_names), "stats": model.stats},
            "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": {"patchcore_core": __version__, "torch": torch.__version__,
                         "onnx_opset": OPSET, **_versions(), "python": platform.python_version()},
            "parity": {"check_images": [str(p) for p in checks], "relative_tolerance": RELATIVE_TOLERANCE,
                       **{k: v for k, v in vars(report).items() if k not in ("folder", "int8")}},
            **({"int8": report.int8} if int8 else {}),
        }
        (tmp / rt.PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, default=str))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 -> what mkdir would give
        move_into_place(tmp, out)
    return report


def _versions() -> dict:
    out = {}
    for name in ("onnx", "onnxruntime"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "?")
    return out
