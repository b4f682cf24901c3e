"""``patchcore predict``: score images with a saved model (one backbone or an ensemble), or with
a folder written by ``patchcore export``. That folder's path imports no torch (the runtime extra):
the model file loader and the heatmaps' matplotlib are imported only when used."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from patchcore_core.data.mvtec import image_folder
from patchcore_core.deploy.runtime import Runtime, is_export
from patchcore_core.util.atomic import atomic_path
from patchcore_core.util.images import DataError, read_image
from patchcore_core.util.prefetch import prefetched
from patchcore_core.util.tables import format_table

from .options import add_device_option, add_quiet_option, note
from .outputs import check_output_file, check_output_folder, distinct_names, refuse_overwriting, write_json

__all__ = ["add_parser", "run", "predict_each"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    r = subparsers.add_parser("predict", help="score images with a saved model")
    r.add_argument("--model", required=True,
                   help="a .safetensors file written by 'patchcore fit', or a folder written by "
                        "'patchcore export' (run with onnxruntime)")
    r.add_argument("images", nargs="+", help="image files or folders")
    r.add_argument("--heatmaps", metavar="DIR", help="write heatmap overlays here")
    r.add_argument("--json", help="also write the scores to this JSON file")
    add_device_option(r)
    add_quiet_option(r)
    return r


def run(args) -> int:
    if args.heatmaps:
        check_output_folder(args.heatmaps, "--heatmaps")
    if args.json:
        check_output_file(args.json, "--json")
    paths = []
    for item in map(Path, args.images):
        paths += image_folder(item, on_skip=note) if item.is_dir() else [item]
    # one heatmap per image, even where two images share a file name (good/000.png, hole/000.png)
    heatmaps = ([Path(args.heatmaps) / n for n in distinct_names(paths, "_heatmap.png")]
                if args.heatmaps else [None] * len(paths))
    refuse_overwriting({"--json": [args.json] if args.json else [],
                        "--heatmaps": heatmaps if args.heatmaps else []},
                       inputs=[args.model, *paths])  # before the model is loaded, not after
    if args.heatmaps:
        _require("matplotlib", "--heatmaps")
    # a model file (one backbone or an ensemble), or an export folder run by onnxruntime
    if is_export(args.model):
        model = Runtime(args.model)
    else:
        _require("torch", f"--model {args.model} (a model file; an export folder runs without it)")
        from patchcore_core.io.save_load import load

        model = load(args.model, device=args.device)
    results = predict_each(model, paths, progress=not args.quiet)
    good = [(p, r, h) for p, r, h in zip(paths, results, heatmaps) if not isinstance(r, str)]
    failed = [(p, r) for p, r in zip(paths, results) if isinstance(r, str)]
    rows = [{"image": str(p), "score": r.score, "normalised": r.normalised_score, "verdict": r.verdict,
             **({"heatmap": str(h)} if h else {})}
            if not isinstance(r, str) else
            {"image": str(p), "score": None, "normalised": None, "verdict": "error", "error": r}
            for p, r, h in zip(paths, results, heatmaps)]
    print(format_table(rows, ["image", "score", "normalised", "verdict"]))
    if args.heatmaps and good:
        _write_heatmaps(model, good, Path(args.heatmaps))
    if args.json:
        write_json(args.json, rows)
    if failed:  # the others were scored; the command still says something went wrong
        for _, msg in failed:
            print(f"error: {msg}", file=sys.stderr)
        print(f"error: {len(failed)} of {len(paths)} images could not be read (verdict 'error' above)",
              file=sys.stderr)
        return 1
    return 0


def _require(package: str, what: str) -> None:
    """A clear error where ``package`` (not in the runtime extra) is not installed."""
    try:
        __import__(package)
    except ImportError:
        raise ValueError(f"{what} needs {package}, which is not installed here; "
                         f"pip install {package}") from None


def predict_each(model, paths: list, progress: bool = False, chunk: int | None = None) -> list:
    """A prediction per path, or the message of a file that cannot be read: one bad file
    does not cost the others their scores. The files are decoded ahead, in background
    threads, while the model scores the ones before them (:func:`~patchcore_core.util.prefetch.prefetched`);
    ``chunk`` images (default: the model's batch size) go to the model at a time."""
    chunk = chunk or _batch_size(model)
    out: list = []
    batch: list = []  # (index in out, decoded image)

    def score(batch):
        try:
            preds = model.predict([image for _, image in batch])
        except DataError:  # find the bad one(s)
            preds = []
            for _, image in batch:
                try:
                    preds += model.predict([image])
                except DataError as exc:
                    preds.append(str(exc))
        for (i, _), pred in zip(batch, preds):
            out[i] = pred

    # a model that can (the exported runtime) also resizes and normalises in those threads
    load = getattr(model, "prepare_input", read_image)
    with tqdm(total=len(paths), desc="predict", disable=not progress) as bar:
        # decoded images wait in memory: one batch being filled, one decoding ahead
        for _, image, error in prefetched(paths, load, ahead=chunk):
            if error is not None and not isinstance(error, DataError):
                raise error
            out.append(str(error) if error is not None else None)
            if error is None:
                batch.append((len(out) - 1, image))
            if len(batch) == chunk:
                score(batch)
                bar.update(len(batch))
                batch = []
            elif error is not None:
                bar.update(1)
        if batch:
            score(batch)
            bar.update(len(batch))
    return out


def _batch_size(model) -> int:
    """The batch size the model scores with (an export's, a model file's, an ensemble's first member's)."""
    for m in (model, *getattr(model, "members", [])):
        size = getattr(m, "batch_size", None) or getattr(getattr(m, "config", None), "batch_size", None)
        if size:
            return int(size)
    return 8


def _write_heatmaps(model, good: list, out: Path) -> None:
    """Each (image, result, heatmap path) of ``good`` as an overlay, on one colour scale;
    heatmaps not named ``<image name>_heatmap.png`` are listed."""
    from patchcore_core.util.viz import overlay_heatmap

    out.mkdir(parents=True, exist_ok=True)
    vmax = max(model.threshold or 0, *(r.anomaly_map.max() for _, r, _ in good))
    for p, r, heatmap in good:
        img = overlay_heatmap(model.display(p), r.anomaly_map, vmin=0, vmax=vmax)
        with atomic_path(heatmap) as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
    print(f"wrote {len(good)} heatmaps to {out}", file=sys.stderr)
    renamed = [(p, h) for p, _, h in good if h.name != f"{p.stem}_heatmap.png"]
    if renamed:
        print(f"note: {len(renamed)} images share their file name with another image; each has its "
              "own heatmap, named after its folder:", file=sys.stderr)
        for p, h in renamed:
            print(f"  {p} -> {h.name}", file=sys.stderr)
