"""The ``patchcore`` command: fit, predict, evaluate, data.

    patchcore data                                   # write the built-in dataset
    patchcore evaluate --category all                # built-in data, every category
    patchcore evaluate --data ~/mvtec --category bottle --json results.json
    patchcore fit --images good/ --out model.safetensors
    patchcore predict --model model.safetensors test/*.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .atomic import atomic_path

__all__ = ["main"]


def _config_args(p: argparse.ArgumentParser):
    from .backbones import BACKBONES
    from .features import AGGREGATIONS
    from .scoring import UPSAMPLE_MODES

    g = p.add_argument_group("model settings")
    g.add_argument("--backbone", default="efficientnet_lite0", choices=list(BACKBONES),
                   help="feature extractor (default: %(default)s, works offline; "
                        "wide_resnet50_2 is the paper's and downloads its weights once)")
    g.add_argument("--coreset-ratio", type=float, default=0.1,
                   help="share of patches kept in the memory bank, in (0, 1] (default: %(default)s)")
    g.add_argument("--coreset", default="greedy", choices=["greedy", "random", "none"],
                   help="how the memory bank is subsampled (default: %(default)s)")
    g.add_argument("--image-size", type=int, default=224,
                   help="centre-crop size in pixels after resizing to --resize (default: %(default)s)")
    g.add_argument("--resize", type=int, default=None,
                   help="resize before cropping (default: image size x 256/224)")
    g.add_argument("--crop-mode", default="auto", choices=["auto", "crop", "squash"],
                   help="auto: crop square images as the paper, squash elongated ones so "
                        "their borders stay in view (default: %(default)s)")
    g.add_argument("--neighbourhood", type=int, default=3,
                   help="local aggregation size p (odd; default: %(default)s)")
    g.add_argument("--aggregation", default="mean", choices=AGGREGATIONS,
                   help="mean: average each p x p neighbourhood (the paper); unfold: keep its "
                        "values side by side, as the paper's code does with narrow layers "
                        "(default: %(default)s)")
    g.add_argument("--reweight", type=int, default=0, metavar="B",
                   help="reweight the image score with B neighbours (paper's Eq. 7); 0 = off")
    g.add_argument("--upsample", default="bilinear", choices=UPSAMPLE_MODES,
                   help="how patch scores become pixels before the Gaussian (default: %(default)s)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="seed for the coreset and splits")


def _config(args) -> dict:
    resize = args.resize or round(args.image_size * 256 / 224)
    return dict(backbone=args.backbone, coreset_ratio=args.coreset_ratio, coreset=args.coreset,
                image_size=args.image_size, resize=resize, crop_mode=args.crop_mode,
                neighbourhood=args.neighbourhood, aggregation=args.aggregation,
                reweight_neighbours=args.reweight,
                upsample=args.upsample, seed=args.seed)


def _data_root(args) -> Path:
    if args.data:
        return Path(args.data)
    from .builtin_data import builtin_root

    return builtin_root()


def cmd_data(args) -> int:
    from .builtin_data import builtin_root, write_builtin_dataset

    root = write_builtin_dataset(Path(args.out), seed=args.seed) if args.out else builtin_root(args.seed)
    print(root)
    return 0


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def _table(rows: list[dict], keys: list[str]) -> str:
    cells = [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda vals: "  ".join(v.rjust(w) if i else v.ljust(w)  # noqa: E731
                                  for i, (v, w) in enumerate(zip(vals, widths)))
    return "\n".join([line(keys), line(["-" * w for w in widths])] + [line(c) for c in cells])


def _strict(data):
    """``data`` with every NaN or infinity as None: JSON has no NaN, and strict parsers refuse it."""
    if isinstance(data, dict):
        return {k: _strict(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_strict(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def _write_json_atomic(path: Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_strict(data), indent=2, allow_nan=False))


def cmd_evaluate(args) -> int:
    from .data import list_categories
    from .evaluation import evaluate_category
    from .outputs import check_output_file

    if args.json:
        check_output_file(args.json, "--json")  # before minutes of work, not after
    root = _data_root(args)
    cats = list_categories(root) if args.category == "all" else [args.category]
    if not cats:
        print(f"error: {root} holds no category (no <category>/train/good folder)", file=sys.stderr)
        return 2
    rows = []
    for cat in cats:
        print(f"== {cat}", file=sys.stderr)
        res = evaluate_category(root, cat, shots=args.shots, device=args.device,
                                progress=not args.quiet, mask_protocol=args.mask_protocol,
                                **_config(args))
        if res.missing_masks:
            names = ", ".join(Path(p).name for p in res.missing_masks[:3])
            more = f" and {len(res.missing_masks) - 3} more" if len(res.missing_masks) > 3 else ""
            print(f"note: {cat}: {len(res.missing_masks)} defective test image(s) have no mask "
                  f"({names}{more}); they are left out of pixel_auroc and aupro", file=sys.stderr)
        rows.append(res.metrics)
    keys = ["category", "image_auroc", "pixel_auroc", "aupro", "f1_max", "n_train", "n_test",
            "memory_bank_size", "fit_seconds", "predict_seconds_per_image", "peak_rss_mb"]
    if any(r.get("n_missing_masks") for r in rows):
        keys.insert(keys.index("n_test") + 1, "n_missing_masks")
    print(_table(rows, keys))
    if args.json:
        _write_json_atomic(Path(args.json), {r["category"]: r for r in rows})
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def cmd_fit(args) -> int:
    from .data import MVTecCategory, few_shot, image_folder
    from .model import PatchCore
    from .outputs import check_output_file

    # bad settings or an unwritable --out: refused before any image is read
    check_output_file(args.out, "--out", suffix=".safetensors")
    model = PatchCore(device=args.device, **_config(args))
    if args.images:
        train = image_folder(args.images, on_skip=_note)
    else:
        if not args.category:
            print("error: give --images DIR, or --category CAT (with --data ROOT or the built-in data)",
                  file=sys.stderr)
            return 2
        train = MVTecCategory(_data_root(args), args.category).train
    train = few_shot(train, args.shots, seed=args.seed)
    model.fit(train, progress=not args.quiet)
    model.save(args.out)
    card = model.summary()
    print(f"saved {args.out}: {card['n_train']} images, memory bank {card['memory_bank_size']} patches, "
          f"threshold {_fmt(card['threshold'])}, fit {card['fit_seconds']:.1f} s")
    return 0


def cmd_predict(args) -> int:
    from .data import image_folder
    from .model import PatchCore
    from .outputs import check_output_file, check_output_folder

    if args.heatmaps:
        check_output_folder(args.heatmaps, "--heatmaps")
    if args.json:
        check_output_file(args.json, "--json")
    model = PatchCore.load(args.model, device=args.device)
    paths = []
    for item in map(Path, args.images):
        paths += image_folder(item, on_skip=_note) if item.is_dir() else [item]
    results = _predict_each(model, paths, progress=not args.quiet)
    good = [(p, r) for p, r in zip(paths, results) if not isinstance(r, str)]
    failed = [(p, r) for p, r in zip(paths, results) if isinstance(r, str)]
    rows = [{"image": str(p), "score": r.score, "normalised": r.normalised_score, "verdict": r.verdict}
            if not isinstance(r, str) else
            {"image": str(p), "score": None, "normalised": None, "verdict": "error", "error": r}
            for p, r in zip(paths, results)]
    print(_table(rows, ["image", "score", "normalised", "verdict"]))
    if args.heatmaps and good:
        from PIL import Image

        from .viz import overlay_heatmap

        out = Path(args.heatmaps)
        out.mkdir(parents=True, exist_ok=True)
        vmax = max(model.threshold or 0, *(r.anomaly_map.max() for _, r in good))
        for p, r in good:
            img = overlay_heatmap(model.display(p), r.anomaly_map, vmin=0, vmax=vmax)
            Image.fromarray(img).save(out / f"{p.stem}_heatmap.png")
        print(f"wrote {len(good)} heatmaps to {out}", file=sys.stderr)
    if args.json:
        _write_json_atomic(Path(args.json), rows)
    if failed:  # the others were scored; the command still says something went wrong
        for _, msg in failed:
            print(f"error: {msg}", file=sys.stderr)
        print(f"error: {len(failed)} of {len(paths)} images could not be read (verdict 'error' above)",
              file=sys.stderr)
        return 1
    return 0


def _note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


def _predict_each(model, paths: list, progress: bool, chunk: int = 32) -> list:
    """A prediction per path, or the message of a file that cannot be read:
    one bad file does not cost the others their scores."""
    from tqdm.auto import tqdm

    from .data import DataError

    out = []
    with tqdm(total=len(paths), desc="predict", disable=not progress) as bar:
        for start in range(0, len(paths), chunk):
            part = paths[start:start + chunk]
            try:
                out += model.predict(part)
            except DataError:
                for p in part:  # find the bad one(s)
                    try:
                        out += model.predict([p])
                    except DataError as exc:
                        out.append(str(exc))
            bar.update(len(part))
    return out


def build_parser() -> argparse.ArgumentParser:
    from .data import MASK_PROTOCOLS

    p = argparse.ArgumentParser(
        prog="patchcore",
        description="PatchCore anomaly detection (Roth et al., CVPR 2022): learn 'normal' from "
                    "defect-free images, then score and localise defects.",
        epilog="Without --data, the built-in dataset (scikit-image textures with generated defects) "
               "is used. Run 'patchcore COMMAND --help' for a command's options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("data", help="write the built-in dataset and print its folder")
    d.add_argument("--out", help="folder to write it to (default: the cache folder)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_data)

    e = sub.add_parser("evaluate", help="fit on train/good and measure on test (MVTec layout)")
    e.add_argument("--data", help="MVTec-layout root (default: the built-in dataset)")
    e.add_argument("--category", default="all", help="a category, or 'all' (default: %(default)s)")
    e.add_argument("--shots", type=int, help="use only this many training images (few-shot)")
    e.add_argument("--json", help="also write the results to this JSON file")
    e.add_argument("--mask-protocol", default="nearest", choices=MASK_PROTOCOLS,
                   help="how masks are resized to the model's resolution: 'nearest' pixel, or 'strict' "
                        "(only pixels wholly inside a defect, as the PatchCore reference code scores "
                        "them; use it to compare with that code's figures) (default: %(default)s)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    _config_args(e)
    e.set_defaults(func=cmd_evaluate)

    f = sub.add_parser("fit", help="fit on good images and save the model (.safetensors)")
    src = f.add_argument_group("training images (one of)")
    src.add_argument("--images", help="a folder of defect-free images")
    src.add_argument("--category", help="a category's train/good of --data (or the built-in data)")
    f.add_argument("--data", help="MVTec-layout root for --category")
    f.add_argument("--out", required=True, help="model file to write, ending in .safetensors")
    f.add_argument("--shots", type=int, help="use only this many training images")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    _config_args(f)
    f.set_defaults(func=cmd_fit)

    r = sub.add_parser("predict", help="score images with a saved model")
    r.add_argument("--model", required=True, help="a .safetensors file written by 'patchcore fit'")
    r.add_argument("images", nargs="+", help="image files or folders")
    r.add_argument("--heatmaps", metavar="DIR", help="write heatmap overlays here")
    r.add_argument("--json", help="also write the scores to this JSON file")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_predict)
    return p


def main(argv: list[str] | None = None) -> int:
    from .backbones import BackboneError
    from .data import DataError
    from .serialization import ModelFileError

    for stream in (sys.stdout, sys.stderr):
        # a file name the terminal cannot encode is printed escaped, not turned into an
        # encoding error that hides which file it was
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ModelFileError, BackboneError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
