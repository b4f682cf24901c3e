"""The ``patchcore`` command: fit, predict, evaluate, benchmark, data.

    patchcore data                                   # write the built-in dataset
    patchcore data download mvtec_ad --category bottle --root ~/data   # a public data set
    patchcore evaluate --category all                # built-in data, every category
    patchcore evaluate --data ~/mvtec --category bottle --json results.json
    patchcore benchmark --data ~/mvtec --out runs/mvtec     # every category, the paper's tables
    patchcore fit --images good/ --out model.safetensors
    patchcore predict --model model.safetensors test/*.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import typing
from pathlib import Path

from patchcore_core.util.atomic import atomic_path
from patchcore_core.util.tables import format_table, format_value

__all__ = ["main"]


def _option_type(hint) -> tuple[type, str | None]:
    """(element type, nargs) for a config field's type hint, e.g. ``int | None`` -> (int, None)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    inner = args[0]
    if typing.get_origin(inner) is tuple:
        return typing.get_args(inner)[0], "+"
    return inner, None


def finite_float(text: str) -> float:
    """argparse type: a number, not nan or inf (which pass float() and every ``<`` check)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def odd_positive_int(text: str) -> int:
    """argparse type of --neighbourhood: 1, 3, 5, ... (its limit, the patch grid, is checked
    with the other settings once the backbone and image size are known)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1 or value % 2 == 0:
        raise argparse.ArgumentTypeError(f"must be a positive odd number (1, 3, 5, ...), not {text}")
    return value


_OPTION_TYPES = {float: finite_float}  # a field's type -> its argparse type
_FIELD_TYPES = {"neighbourhood": odd_positive_int}


def add_config_options(p: argparse.ArgumentParser, config_cls=None) -> None:
    """One option per field of the config, with its help, default and choices.

    Options left out keep the config's default (argparse's default is None),
    so the config alone decides every default.
    """
    from patchcore_core.pipeline.config import PatchCoreConfig

    config_cls = config_cls or PatchCoreConfig
    hints = typing.get_type_hints(config_cls)
    g = p.add_argument_group("model settings")
    for f in dataclasses.fields(config_cls):
        kind, nargs = _option_type(hints[f.name])
        flags = ["--" + f.name.replace("_", "-")] + ([f.metadata["cli"]] if "cli" in f.metadata else [])
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f.metadata.get("help", "").replace("%", "%%")
        choices = f.metadata.get("choices")
        if f.name == "backbone":  # "a+b+c" (an ensemble) is not in the list; the config checks each name
            help_text += f" One of {', '.join(choices)}, or several joined by + for an ensemble."
            choices = None
        kind = _FIELD_TYPES.get(f.name) or _OPTION_TYPES.get(kind, kind)
        g.add_argument(*flags, dest=f.name, type=kind, nargs=nargs, default=None,
                       choices=choices, metavar=None if nargs is None else "NAME",
                       help=help_text if default is None else f"{help_text} (default: {default})")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    p.set_defaults(config_cls=config_cls)


def check_settings(args) -> None:
    """Build the config from the options once, before any work: a bad combination (a
    neighbourhood wider than the patch grid at this image size) is named now, not after
    a cluster has started or the images are read. Raises ValueError."""
    if getattr(args, "config_cls", None) is not None:
        args.config_cls(**config_from_args(args, args.config_cls))


def config_from_args(args, config_cls=None) -> dict:
    """The config fields given on the command line (the rest keep their defaults)."""
    from patchcore_core.pipeline.config import PatchCoreConfig

    config_cls = config_cls or PatchCoreConfig
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
            if getattr(args, f.name, None) is not None}


def _data_root(args) -> Path:
    if args.data:
        return Path(args.data)
    from patchcore_core.data.builtin import builtin_root

    return builtin_root()


def cmd_data(args) -> int:
    from patchcore_core.data.builtin import builtin_root, write_builtin_dataset

    root = write_builtin_dataset(Path(args.out), seed=args.seed) if args.out else builtin_root(args.seed)
    print(root)
    return 0


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
    from patchcore_core.data.mvtec import MVTecCategory, list_categories
    from patchcore_core.evaluation.category import evaluate_category

    from .outputs import check_output_file

    if args.json:
        check_output_file(args.json, "--json")  # before minutes of work, not after
    root = _data_root(args)
    cats = list_categories(root) if args.category == "all" else [args.category]
    if not cats:
        print(f"error: {root} holds no category (no <category>/train/good folder)", file=sys.stderr)
        return 2
    if args.ray and len(cats) > 1:
        return _evaluate_sweep(args, root, cats)
    for cat in cats:  # a misspelt category is named now, not after a cluster has started
        MVTecCategory(root, cat)
    cluster = _cluster(args)
    rows = []
    for cat in cats:
        print(f"== {cat}", file=sys.stderr)
        res = evaluate_category(root, cat, shots=args.shots, device=args.device,
                                progress=not args.quiet, mask_protocol=args.mask_protocol,
                                work=cluster, **config_from_args(args))
        if res.missing_masks:
            names = ", ".join(Path(p).name for p in res.missing_masks[:3])
            more = f" and {len(res.missing_masks) - 3} more" if len(res.missing_masks) > 3 else ""
            print(f"note: {cat}: {len(res.missing_masks)} defective test image(s) have no mask "
                  f"({names}{more}); they are left out of pixel_auroc and aupro", file=sys.stderr)
        rows.append(res.metrics)
    keys = ["category", "image_auroc", "pixel_auroc", "aupro", "f1_max", "false_alarm_rate", "miss_rate",
            "n_train", "n_test",
            "memory_bank_size", "fit_seconds", "predict_seconds_per_image", "peak_rss_mb"]
    if any(r.get("n_missing_masks") for r in rows):
        keys.insert(keys.index("n_test") + 1, "n_missing_masks")
    keys += [k for k in ("cluster_nodes", "covering_radius", "single_machine_covering_radius")
             if any(k in r for r in rows)]
    print(format_table(rows, keys))
    if args.json:
        _write_json_atomic(Path(args.json), {r["category"]: r for r in rows})
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def cmd_benchmark(args) -> int:
    from patchcore_core.evaluation.benchmark import markdown_report, run_benchmark

    from .outputs import check_output_folder

    check_output_folder(args.out, "--out")
    config = config_from_args(args)
    seed = config.get("seed", 0)
    n_seeds = args.seeds or (3 if args.shots else 1)  # few-shot: several draws of the images
    rows = run_benchmark(args.data, args.out, categories=args.category, shots=args.shots,
                         seeds=list(range(seed, seed + n_seeds)), force=args.force, dataset=args.dataset,
                         mask_protocol=args.mask_protocol, device=args.device,
                         progress=not args.quiet, **config)
    settings = json.loads((Path(args.out) / "settings.json").read_text())
    print(markdown_report(rows, settings))
    if args.dataset == "mvtec_ad" and any(r["shots"] is None for r in rows):
        from patchcore_core.evaluation.published import comparison_figure

        png = comparison_figure(rows, Path(args.out) / "comparison.png", settings["config"])
        print(f"wrote {png}", file=sys.stderr)
    print(f"wrote {args.out}/results.csv, results.json, results.md", file=sys.stderr)
    return 0


def _cluster(args):
    """The RayCluster that ``--ray`` names (None without it). Call it after the data and settings
    are checked: joining or starting a cluster takes seconds to minutes."""
    if not getattr(args, "ray", None):
        return None
    from patchcore_core.cluster import RayCluster
    from patchcore_core.ext.ensemble import refuse_cluster
    from patchcore_core.pipeline.config import PatchCoreConfig

    refuse_cluster(PatchCoreConfig(**config_from_args(args)))  # before a cluster starts, not after

    cluster = RayCluster(args.ray, ship_images=args.ship_images,
                         single_machine_radius=args.single_machine_radius)
    print(f"ray: {cluster.n_nodes} node(s), {cluster.n_cpus} CPU(s) at {args.ray}", file=sys.stderr)
    return cluster


def _evaluate_sweep(args, root: Path, cats: list[str]) -> int:
    """``evaluate --category all --ray``: one Ray task per category, one table; a failed
    category is reported with its setting and the others still finish."""
    from patchcore_core.cluster import alive_nodes, connect, run_sweep

    connect(args.ray)
    nodes = len(alive_nodes())
    config = config_from_args(args)
    jobs = [{"root": str(root), "category": c, "shots": args.shots, "mask_protocol": args.mask_protocol,
             "config": config} for c in cats]
    rows = run_sweep(jobs, progress=not args.quiet,
                     on_row=lambda r: print(f"== {r['category']}" + (" failed" if "error" in r else ""),
                                            file=sys.stderr))
    for r in rows:
        r["cluster_nodes"] = nodes
    ok = [r for r in rows if "error" not in r]
    keys = ["category", "image_auroc", "pixel_auroc", "aupro", "f1_max", "n_train", "n_test",
            "memory_bank_size", "fit_seconds", "predict_seconds_per_image", "peak_rss_mb", "cluster_nodes",
            "covering_radius"]
    if ok:
        print(format_table(ok, keys))
    for r in rows:
        if "error" in r:
            print(f"error: {r['category']} ({r['setting']}): {r['error']}", file=sys.stderr)
    if args.json:
        _write_json_atomic(Path(args.json), {r["category"]: r for r in rows})
        print(f"wrote {args.json}", file=sys.stderr)
    return 1 if len(ok) < len(rows) else 0


def cmd_fit(args) -> int:
    from patchcore_core.data.mvtec import MVTecCategory, few_shot, image_folder
    from patchcore_core.ext.ensemble import make_model
    from patchcore_core.io.save_load import save
    from patchcore_core.pipeline.config import PatchCoreConfig

    from .outputs import check_output_file

    # bad settings or an unwritable --out: refused before any image is read
    check_output_file(args.out, "--out", suffix=".safetensors")
    config = PatchCoreConfig(**config_from_args(args))
    if args.images:
        train = image_folder(args.images, on_skip=_note)
    else:
        if not args.category:
            print("error: give --images DIR, or --category CAT (with --data ROOT or the built-in data)",
                  file=sys.stderr)
            return 2
        train = MVTecCategory(_data_root(args), args.category).train
    train = few_shot(train, args.shots, seed=config.seed)
    model = make_model(config, device=args.device, work=_cluster(args))  # a cluster starts last
    model.fit(train, progress=not args.quiet)
    save(model, args.out)
    card = model.summary()
    print(f"saved {args.out}: {card['n_train']} images, memory bank {card['memory_bank_size']} patches, "
          f"threshold {format_value(card['threshold'])}, fit {card['fit_seconds']:.1f} s")
    if "covering_radius" in card:
        print(f"cluster: {card['cluster_nodes']} node(s), covering radius {card['covering_radius']:.3f}" +
              (f" (single machine: {card['single_machine_covering_radius']:.3f})"
               if "single_machine_covering_radius" in card else ""))
    return 0


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray cluster (pip install 'patchcore-core[cluster]')")
    g.add_argument("--ray", metavar="ADDRESS",
                   help="run on a Ray cluster: 'auto' joins the one running here, 'local' starts one in "
                        "this process, HOST:PORT joins that head node. With --category all, each "
                        "category is a Ray task")
    g.add_argument("--ship-images", action="store_true",
                   help="send the images' bytes to the workers (default: paths, on a filesystem all "
                        "nodes share)")
    g.add_argument("--single-machine-radius", action="store_true",
                   help="also run the single-machine greedy coreset on the same features and report its "
                        "covering radius beside the cluster's (costs one more coreset)")


def cmd_predict(args) -> int:
    from patchcore_core.data.mvtec import image_folder

    from .outputs import check_output_file, check_output_folder, distinct_names, refuse_overwriting

    if args.heatmaps:
        check_output_folder(args.heatmaps, "--heatmaps")
    if args.json:
        check_output_file(args.json, "--json")
    paths = []
    for item in map(Path, args.images):
        paths += image_folder(item, on_skip=_note) if item.is_dir() else [item]
    # one heatmap per image, even where two images share a file name (good/000.png, hole/000.png)
    heatmaps = ([Path(args.heatmaps) / n for n in distinct_names(paths, "_heatmap.png")]
                if args.heatmaps else [None] * len(paths))
    refuse_overwriting({"--json": [args.json] if args.json else [],
                        "--heatmaps": heatmaps if args.heatmaps else []},
                       inputs=[args.model, *paths])  # before the model is loaded, not after
    model = _load_for_predict(args.model, args.device)
    results = _predict_each(model, paths, progress=not args.quiet)
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
        _write_json_atomic(Path(args.json), rows)
    if failed:  # the others were scored; the command still says something went wrong
        for _, msg in failed:
            print(f"error: {msg}", file=sys.stderr)
        print(f"error: {len(failed)} of {len(paths)} images could not be read (verdict 'error' above)",
              file=sys.stderr)
        return 1
    return 0


def _load_for_predict(path, device: str):
    """A model file (one backbone or an ensemble), or a folder written by ``patchcore export``:
    that one runs with onnxruntime, and needs no torch."""
    from patchcore_core.deploy.runtime import Runtime, is_export

    if is_export(path):
        return Runtime(path)
    from patchcore_core.io.save_load import load

    return load(path, device=device)


def _write_heatmaps(model, good: list, out: Path) -> None:
    """Each (image, result, heatmap path) of ``good`` as an overlay, on one colour scale;
    heatmaps not named ``<image name>_heatmap.png`` are listed."""
    from PIL import Image

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


def cmd_demo(args) -> int:
    # The demo (folder demo/, installed as patchcore_demo) needs gradio, an optional extra:
    # imported only when asked for, never by the library.
    from patchcore_demo.__main__ import main as demo_main

    return demo_main(args.demo_args, prog="patchcore demo")


def _note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


def _predict_each(model, paths: list, progress: bool, chunk: int = 32) -> list:
    """A prediction per path, or the message of a file that cannot be read:
    one bad file does not cost the others their scores."""
    from tqdm.auto import tqdm

    from patchcore_core.util.images import DataError

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


def add_predict_parser(sub) -> None:
    r = sub.add_parser("predict", help="score images with a saved model")
    r.add_argument("--model", required=True,
                   help="a .safetensors file written by 'patchcore fit', or a folder written by "
                        "'patchcore export' (runs without torch)")
    r.add_argument("images", nargs="+", help="image files or folders")
    r.add_argument("--heatmaps", metavar="DIR", help="write heatmap overlays here")
    r.add_argument("--json", help="also write the scores to this JSON file")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_predict)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="patchcore",
        description="PatchCore anomaly detection (Roth et al., CVPR 2022): learn 'normal' from "
                    "defect-free images, then score and localise defects.",
        epilog="Without --data, the built-in dataset (scikit-image textures with generated defects) "
               "is used. Run 'patchcore COMMAND --help' for a command's options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    try:
        import torch  # noqa: F401
    except ImportError:  # the runtime extra: predict with an exported folder is all that runs
        add_predict_parser(sub)
        return p
    from patchcore_core.pipeline.preprocess import MASK_PROTOCOLS

    d = sub.add_parser("data", help="write the built-in dataset and print its folder; "
                                    "'data download NAME' fetches a public one (mvtec_ad, visa, ...)")
    d.add_argument("--out", help="folder to write it to (default: the cache folder)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_data)
    from .data import add_data_actions

    add_data_actions(d)  # 'data download', 'data list'; plain 'data' as before

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
    add_config_options(e)
    add_cluster_options(e)
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("benchmark", help="every category of a dataset, resumable, with the paper's tables",
                       description="Evaluate every category of an MVTec-layout dataset and write "
                                   "results.csv/.json/.md (and comparison.png beside the paper's figures) "
                                   "to --out. Runs already in --out/results.csv are skipped unless --force.")
    b.add_argument("--data", required=True, help="MVTec-layout root (one folder per category)")
    b.add_argument("--out", required=True, help="folder for the results (created)")
    b.add_argument("--dataset", default="mvtec_ad", choices=["mvtec_ad", "other"],
                   help="which published figures to compare with ('other': none) (default: %(default)s)")
    b.add_argument("--category", nargs="+", help="only these categories (default: every one in --data)")
    b.add_argument("--shots", type=int, nargs="+", metavar="N",
                   help="few-shot: runs with N training images each, e.g. --shots 1 5 10 16 20 50")
    b.add_argument("--seeds", type=int,
                   help="runs per setting, seeds --seed.. (default: 3 with --shots, else 1)")
    b.add_argument("--force", action="store_true", help="run again what --out already holds")
    b.add_argument("--mask-protocol", default="nearest", choices=MASK_PROTOCOLS,
                   help="how masks are resized ('strict' as the reference code) (default: %(default)s)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_options(b)
    b.set_defaults(func=cmd_benchmark)

    f = sub.add_parser("fit", help="fit on good images and save the model (.safetensors)")
    src = f.add_argument_group("training images (one of)")
    src.add_argument("--images", help="a folder of defect-free images")
    src.add_argument("--category", help="a category's train/good of --data (or the built-in data)")
    f.add_argument("--data", help="MVTec-layout root for --category")
    f.add_argument("--out", required=True, help="model file to write, ending in .safetensors")
    f.add_argument("--shots", type=int, help="use only this many training images")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_options(f)
    add_cluster_options(f)
    f.set_defaults(func=cmd_fit)

    add_predict_parser(sub)

    from .export import add_parser as add_export_parser

    add_export_parser(sub)

    # The demo parses its own options (python -m demo --help lists them).
    m = sub.add_parser("demo", help="serve the Gradio demo (same options as python -m demo)",
                       add_help=False)
    m.set_defaults(func=cmd_demo)
    return p


def _user_errors() -> tuple[type, ...]:
    """The errors bad input causes, reported in one line. Taken from the modules already
    loaded: an error whose module was never imported cannot have been raised, and without
    torch (the runtime extra) those modules cannot be imported."""
    from patchcore_core.util.images import DataError

    defined_in = {"patchcore_core.cluster.connect": "ClusterError",
                  "patchcore_core.io.model_file": "ModelFileError",
                  "patchcore_core.pipeline.backbones": "BackboneError"}
    loaded = [getattr(sys.modules[m], name) for m, name in defined_in.items() if m in sys.modules]
    return (DataError, ValueError, *loaded)


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # a file name the terminal cannot encode is printed escaped, not turned into an
        # encoding error that hides which file it was
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args, rest = build_parser().parse_known_args(argv)
    if args.command == "demo":
        args.demo_args = rest
    elif rest:
        build_parser().parse_args(argv)  # the usual error for unknown options
    joined_before = _ray_connected()  # a caller's own connection (tests, notebooks) is left alone
    try:
        check_settings(args)
        return args.func(args)
    except _user_errors() as exc:  # evaluated only when an exception is raised
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if not joined_before and _ray_connected():
            # Ray's processes stopped in order now, not by the interpreter's exit (which can crash)
            from patchcore_core.cluster.connect import disconnect

            disconnect()


def _ray_connected() -> bool:
    ray = sys.modules.get("ray")  # never imported here: the rest works without the cluster extra
    return ray is not None and ray.is_initialized()


if __name__ == "__main__":
    sys.exit(main())
