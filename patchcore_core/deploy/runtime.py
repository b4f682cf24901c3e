"""Score images from an exported folder (``patchcore export``) without PyTorch.

    >>> from patchcore_core.deploy.runtime import Runtime
    >>> rt = Runtime("brick_export")                          # doctest: +SKIP
    >>> pred = rt.predict(["test.png"])[0]                    # doctest: +SKIP
    >>> pred.score, pred.normalised_score, pred.verdict       # doctest: +SKIP

Each step is the PyTorch pipeline's, in numpy: the paper's resize and crop
(PIL), the ONNX graph for the backbone and patch features (onnxruntime), an
exact L2 nearest-neighbour search (a second ONNX graph, the bank its input),
the image score (max patch score, or Eq. 7), the anomaly map (upsample, then
a Gaussian of ``sigma`` pixels with scipy). ``patchcore export`` checks the whole path against PyTorch
before it writes a folder. Needs: ``pip install 'patchcore-core[runtime]'``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from patchcore_core.util.images import read_image
from patchcore_core.util.numbers import is_number

__all__ = ["EXPORT_FORMAT", "ExportError", "Runtime", "RuntimePrediction", "PreparedImage", "is_export",
           "SETTINGS_FILE", "PROVENANCE_FILE", "BANK_FILE", "MODEL_FILES", "SEARCH_FILE", "bilinear_matrix",
           "anomaly_maps"]

EXPORT_FORMAT = "patchcore-export/2"  # 2: search.onnx answers the search (1: faiss)
SETTINGS_FILE = "settings.json"      # everything scoring needs, the threshold included
PROVENANCE_FILE = "provenance.json"  # where the export came from and what its checks measured
BANK_FILE = "bank.npy"               # float32 [M, D] memory bank (np.load without pickle)
MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
SEARCH_FILE = "search.onnx"          # exact kNN: queries, bank -> distances, indices
# Queries are searched a block at a time: the [rows, M] distance block of one call about fits a
# core's cache (2-8 MB measured fastest: 4.3 -> 3.3 ms per image at batch 8 against one 48 MB block),
# but at least SEARCH_MIN_ROWS rows (each call costs a little), and never over SEARCH_MAX_BYTES.
SEARCH_BLOCK_BYTES = 4 << 20
SEARCH_MIN_ROWS = 256
SEARCH_MAX_BYTES = 128 << 20


class ExportError(ValueError):
    """An exported folder that cannot be used, or an export refused: the message names the
    folder or file and the field."""


def is_export(path) -> bool:
    """Whether ``path`` is a folder written by ``patchcore export``."""
    return Path(path).is_dir() and (Path(path) / SETTINGS_FILE).is_file()


@dataclass
class RuntimePrediction:
    """One image's result, with the fields of :class:`patchcore_core.Prediction`."""

    score: float
    normalised_score: float | None
    is_anomalous: bool | None
    anomaly_map: np.ndarray   # [H, W] float32
    patch_scores: np.ndarray  # [h, w] float32

    @property
    def verdict(self) -> str:
        return {True: "anomalous", False: "normal", None: "uncalibrated"}[self.is_anomalous]


@dataclass(frozen=True)
class PreparedImage:
    """An image decoded, resized, cropped and normalised by :meth:`Runtime.prepare_input`: what
    ``patchcore predict`` prepares in its background threads while the runtime scores others."""

    pixels: np.ndarray  # float32 [3, H, W]
    made_for: tuple     # the preprocessing settings it was made with


def bilinear_matrix(n_in: int, n_out: int, mode: str = "bilinear") -> np.ndarray:
    """``[n_out, n_in]`` matrix of 1-D resampling as ``torch.nn.functional.interpolate``
    does it (``bilinear`` with ``align_corners=False``, or ``nearest-exact``)."""
    scale = n_in / n_out
    out = np.zeros((n_out, n_in), dtype=np.float64)
    dst = np.arange(n_out)
    if mode == "nearest":
        out[dst, np.minimum(np.floor((dst + 0.5) * scale).astype(int), n_in - 1)] = 1.0
        return out
    src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(src.astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    np.add.at(out, (dst, i0), 1.0 - w1)
    np.add.at(out, (dst, i1), w1)
    return out


def anomaly_maps(patch_scores: np.ndarray, size: tuple[int, int], sigma: float = 4.0,
                 upsample: str = "bilinear") -> np.ndarray:
    """``[B, h, w]`` patch scores -> ``[B, H, W]`` maps, as the PyTorch pipeline's
    :func:`patchcore_core.pipeline.scoring.anomaly_map`: upsampled, then a Gaussian truncated
    at 4 sigma with mirrored borders (torchvision's ``reflect`` is scipy's ``mirror``)."""
    from scipy.ndimage import gaussian_filter

    b, h, w = patch_scores.shape
    rows = bilinear_matrix(h, size[0], upsample).astype(np.float32)
    cols = bilinear_matrix(w, size[1], upsample).astype(np.float32)
    maps = rows @ patch_scores.astype(np.float32) @ cols.T
    if sigma > 0:
        radius = int(4.0 * sigma + 0.5)
        maps = gaussian_filter(maps, sigma, mode="mirror", truncate=radius / sigma, axes=(1, 2))
    return maps.astype(np.float32)


def _field(settings: dict, name: str, kind, where: Path, check=None):
    """``settings[name]`` when it is a ``kind`` (numbers finite, lists of numbers) passing ``check``;
    else an :class:`ExportError` naming the file and the field."""
    value = settings.get(name)
    if kind is float:
        ok = is_number(value)
    elif kind is list:
        ok = isinstance(value, list) and all(is_number(v) for v in value)
    else:
        ok = isinstance(value, kind) and not isinstance(value, bool)
    if not (ok and (check is None or check(value))):
        raise ExportError(f"{where}: field {name!r} is {value!r}, not a valid {kind.__name__} for it")
    return float(value) if kind is float else value


class Runtime:
    """An exported model, ready to score images with onnxruntime.

    Args:
        folder: written by ``patchcore export``.
        precision: ``"fp32"`` or ``"int8"`` (the folder must hold it); default: the
            export's own choice (int8 when it was exported with ``--int8``).
        threads: onnxruntime's threads (default: one per core).
        device: ``"cpu"``, or ``"cuda"`` (needs onnxruntime-gpu).
    """

    def __init__(self, folder, precision: str | None = None, threads: int | None = None,
                 device: str = "cpu"):
        import onnxruntime as ort

        self.folder = Path(folder)
        if not is_export(self.folder):
            raise ExportError(f"{self.folder}: not an exported model folder (no {SETTINGS_FILE}); "
                              "write one with 'patchcore export'")
        where = self.folder / SETTINGS_FILE
        try:
            s = json.loads(where.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ExportError(f"{where}: not readable JSON ({exc})") from None
        if not isinstance(s, dict) or s.get("format") != EXPORT_FORMAT:
            found = s.get("format") if isinstance(s, dict) else s
            raise ExportError(f"{where}: field 'format' is {found!r}, this runtime reads {EXPORT_FORMAT!r}; "
                              "export the .safetensors model again with this version's 'patchcore export'")
        self.settings = s
        positive = lambda v: v > 0  # noqa: E731
        self.resize = _field(s, "resize", int, where, positive)
        self.image_size = _field(s, "image_size", int, where, lambda v: 0 < v <= self.resize)
        self.crop_mode = _field(s, "crop_mode", str, where, lambda v: v in ("crop", "squash"))
        self.mean = np.array(_field(s, "mean", list, where, lambda v: len(v) == 3), dtype=np.float32)
        self.std = np.array(_field(s, "std", list, where, lambda v: len(v) == 3 and min(v) > 0),
                            dtype=np.float32)
        self.grid = tuple(_field(s, "grid", list, where, lambda v: len(v) == 2 and min(v) > 0))
        self.sigma = _field(s, "sigma", float, where, lambda v: v >= 0)
        self.upsample = _field(s, "upsample", str, where, lambda v: v in ("bilinear", "nearest"))
        self.reweight_neighbours = _field(s, "reweight_neighbours", int, where, lambda v: v >= 0)
        self.batch_size = _field(s, "batch_size", int, where, positive)
        threshold = s.get("threshold")
        self.threshold = None if threshold is None else _field(s, "threshold", float, where, positive)
        precision = precision or _field(s, "precision", str, where, lambda v: v in MODEL_FILES)
        if precision == "int8" and "int8_threshold" in s:  # recalibrated with int8 features at export
            self.threshold = _field(s, "int8_threshold", float, where, positive)
        if precision not in MODEL_FILES:
            raise ExportError(f"precision must be one of {', '.join(MODEL_FILES)}, not {precision!r}")
        self.precision = precision
        model_file = self.folder / MODEL_FILES[precision]
        if not model_file.is_file():
            raise ExportError(f"{model_file}: missing ({precision} was not exported to {self.folder})")

        bank_file = self.folder / BANK_FILE
        try:
            bank = np.load(bank_file, allow_pickle=False)  # never a pickle
        except (OSError, ValueError) as exc:
            raise ExportError(f"{bank_file}: not a readable .npy array ({exc})") from None
        dim = _field(s, "feature_dim", int, where, positive)
        if bank.dtype != np.float32 or bank.ndim != 2 or bank.shape[1] != dim or len(bank) == 0:
            raise ExportError(f"{bank_file}: holds {bank.dtype} {bank.shape}, expected float32 [M, {dim}]")
        if not np.isfinite(bank).all():
            raise ExportError(f"{bank_file}: holds NaN or infinite values")
        self.bank = np.ascontiguousarray(bank)

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: spinning ones hold the cores that the
        # decoding threads and the next step need (measured, 2 cores, batch 8: backbone then
        # search 12.4 -> 8.6 ms per image).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ExportError("device 'cuda' needs onnxruntime-gpu (pip install onnxruntime-gpu); this "
                                  f"onnxruntime offers {', '.join(ort.get_available_providers())}")
            providers.insert(0, "CUDAExecutionProvider")
        elif device != "cpu":
            raise ExportError(f"device must be 'cpu' or 'cuda', not {device!r}")
        self.session = ort.InferenceSession(str(model_file), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        search_file = self.folder / SEARCH_FILE
        if not search_file.is_file():
            raise ExportError(f"{search_file}: missing (every export writes it; export again)")
        self.search_session = ort.InferenceSession(str(search_file), options, providers=providers)
        self._bank_inputs = self._search_inputs(self.bank)

    # ------------------------------------------------------------ steps
    def _geometry(self, img: Image.Image) -> Image.Image:
        if self.crop_mode == "squash":
            return img.resize((self.image_size, self.image_size), Image.BILINEAR)
        img = img.resize((self.resize, self.resize), Image.BILINEAR)
        off = (self.resize - self.image_size) // 2
        return img.crop((off, off, off + self.image_size, off + self.image_size))

    def display(self, image) -> np.ndarray:
        """The RGB pixels the model sees, ``uint8 [H, W, 3]`` (for overlays)."""
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        return np.asarray(self._geometry(read_image(image)))

    def preprocess(self, image) -> np.ndarray:
        """Image (path, PIL or array) -> normalised ``float32 [3, H, W]``, as :class:`Preprocess`."""
        if isinstance(image, PreparedImage):
            if image.made_for != self._preprocessing:
                raise ValueError(f"an image prepared for {image.made_for} given to a runtime that "
                                 f"prepares {self._preprocessing}")
            return image.pixels
        x = self.display(image).astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    @property
    def _preprocessing(self) -> tuple:
        return (self.resize, self.image_size, self.crop_mode, tuple(self.mean.tolist()),
                tuple(self.std.tolist()))

    def prepare_input(self, image) -> PreparedImage:
        """:meth:`preprocess` ahead of scoring, in any thread (PIL's resize and numpy release
        the GIL): ``predict`` takes the result like an image path and skips those steps."""
        return PreparedImage(self.preprocess(image), self._preprocessing)

    def features(self, batch: np.ndarray) -> np.ndarray:
        """Normalised images ``[B, 3, H, W]`` -> compact patch features ``[B, h, w, D]``."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    @staticmethod
    def _search_inputs(bank: np.ndarray) -> dict:
        bank = np.asarray(bank, dtype=np.float32)
        return {"bank_t_x_minus_2": np.ascontiguousarray(bank.T * np.float32(-2.0)),
                "bank_sq": np.square(bank).sum(axis=1)[None]}

    def search(self, feats: np.ndarray, k: int = 1, bank: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Exact L2 distances to, and rows of, the ``k`` nearest rows of ``bank`` (default: the
        memory bank): ``[Q, k]`` each, nearest first (``search.onnx``)."""
        inputs = self._bank_inputs if bank is None else self._search_inputs(bank)
        m = inputs["bank_sq"].shape[1]
        k = np.array([min(k, m)], dtype=np.int64)
        feats = np.asarray(feats, dtype=np.float32)
        row_bytes = 4 * m
        rows = max(SEARCH_MIN_ROWS, SEARCH_BLOCK_BYTES // row_bytes)
        rows = max(1, min(rows, SEARCH_MAX_BYTES // row_bytes))
        parts = [self.search_session.run(None, {"queries": np.ascontiguousarray(feats[i:i + rows]), "k": k,
                                                **inputs})
                 for i in range(0, len(feats), rows)]
        return np.concatenate([d for d, _ in parts]), np.concatenate([i for _, i in parts])

    def image_scores(self, feats: np.ndarray, patch: np.ndarray, nearest: np.ndarray) -> np.ndarray:
        """``[B]`` image scores: the largest patch score, or Eq. 7 (see
        :func:`patchcore_core.pipeline.scoring.reweighted_image_scores`)."""
        b = len(patch)
        patch, nearest = patch.reshape(b, -1), nearest.reshape(b, -1)
        if self.reweight_neighbours == 0:
            return patch.max(axis=1)
        rows = np.arange(b)
        i = patch.argmax(axis=1)
        s_star, m_star = patch[rows, i], nearest[rows, i]
        m_test = feats.reshape(b, -1, feats.shape[-1])[rows, i]
        _, support = self.search(self.bank[m_star], self.reweight_neighbours)
        dists = np.linalg.norm(self.bank[support] - m_test[:, None], axis=2)
        soft = np.exp(dists - dists.max(axis=1, keepdims=True))
        soft /= soft.sum(axis=1, keepdims=True)
        return ((1.0 - soft[:, 0]) * s_star).astype(np.float32)

    def score_batch(self, batch: np.ndarray):
        """Normalised images -> (scores ``[B]``, maps ``[B, H, W]``, patch scores ``[B, h, w]``)."""
        feats = self.features(batch)
        b, h, w, d = feats.shape
        dist, idx = self.search(feats.reshape(-1, d))
        patch = dist[:, 0].reshape(b, h, w)
        scores = self.image_scores(feats, patch, idx[:, 0].reshape(b, h, w))
        maps = anomaly_maps(patch, (self.image_size, self.image_size), self.sigma, self.upsample)
        return scores, maps, patch

    def score(self, images):
        """Images (paths, PIL images or arrays) -> (scores, maps, patch scores), as numpy arrays."""
        images = list(images)
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = np.stack([self.preprocess(im) for im in images[start:start + self.batch_size]])
            out.append(self.score_batch(batch))
        return tuple(np.concatenate(parts) for parts in zip(*out))

    def predict(self, images, progress: bool = False) -> list[RuntimePrediction]:
        """Score images: one :class:`RuntimePrediction` each."""
        if isinstance(images, (str, bytes)) or hasattr(images, "__fspath__") or hasattr(images, "size"):
            images = [images]
        scores, maps, patch = self.score(images)
        preds = []
        for s, m, p in zip(scores.tolist(), maps, patch):
            norm = s / self.threshold if self.threshold else None
            preds.append(RuntimePrediction(s, norm, None if norm is None else norm > 1.0,
                                           m.astype(np.float32), p.astype(np.float32)))
        return preds

    def __repr__(self) -> str:
        m, d = self.bank.shape
        return (f"Runtime({str(self.folder)!r}, {self.precision}, bank={m}x{d}, "
                f"backbone={self.settings.get('backbone')!r})")
