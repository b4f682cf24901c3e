"""``python -m demo``: serve the PatchCore demo (default http://127.0.0.1:7860)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

CATEGORIES = ("brick", "grass", "gravel")  # the built-in dataset's (kept here: --help stays instant)


def build_parser(prog: str = "python -m demo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="PatchCore anomaly detection demo (Gradio). Without --model it fits a model on the "
                    "built-in data once (about 10-30 s on a laptop CPU) and caches it for later starts.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; "
                   "0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    p.add_argument("--model", metavar="FILE", help="a model saved by `patchcore fit` (.safetensors) "
                   "instead of the built-in one, or a folder written by `patchcore export` (scored with "
                   "onnxruntime; Explain needs the .safetensors model)")
    p.add_argument("--category", default="brick", choices=CATEGORIES,
                   help="built-in category for the default model and the examples (default: %(default)s)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when present), cpu or cuda (default: %(default)s)")
    p.add_argument("--examples", metavar="DIR", help="a folder of images the loaded model can judge, "
                   "shown as examples; only its image files are served (default: the built-in ones; with "
                   "--model, a few of its own training images found in --train-images, else none)")
    p.add_argument("--train-images", metavar="DIR", action="append", default=[],
                   help="a folder holding the --model's training images (any depth; repeatable): "
                   "Explain shows their nearest patches. The paths a model file names are never opened "
                   "as they are, since a model file is untrusted input")
    p.add_argument("--concurrency", type=int, default=2, metavar="N",
                   help="requests of one kind served at once; fits run one at a time (default: %(default)s; "
                   "see demo/README.md, 'Thirty visitors')")
    p.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m demo") -> int:
    args = build_parser(prog).parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("demo").setLevel(logging.INFO)
    say = lambda msg: print(msg, flush=True)  # noqa: E731

    from patchcore_core.data.builtin import builtin_root
    from patchcore_core.data.mvtec import MVTecCategory
    from patchcore_core.util.device import resolve_device

    try:
        resolve_device(args.device)  # before a model is fitted or loaded for it
    except ValueError as exc:
        print(f"error: --device: {exc}", file=sys.stderr)
        return 2

    for folder in args.train_images:  # before a model is loaded: a typo fails at once
        if not os.path.isdir(folder):
            print(f"error: --train-images: {folder}: no such folder", file=sys.stderr)
            return 2

    from patchcore_core.deploy.runtime import ExportError, is_export

    from . import models

    if args.model and is_export(args.model):
        from .exported import ExportedModel

        try:
            model = ExportedModel(args.model)
        except ExportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        label = f"{os.path.basename(os.path.normpath(args.model))} (exported, onnxruntime " \
                f"{model.runtime.precision})"
    elif args.model:
        from patchcore_core import load
        from patchcore_core.io.model_file import ModelFileError

        try:
            model = load(args.model, device=args.device)  # one backbone or an ensemble
        except ModelFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        label = os.path.basename(args.model)
    else:
        model = models.load_or_build_default(args.category, device=args.device, say=say)
        label = f"built-in {args.category}"
    # the folders the operator named: the only places besides the built-in data that a model's
    # training images are read from (a model file naming /etc/passwd widens nothing)
    folders = [f for f in [args.examples, *args.train_images] if f]
    from .training_images import TrainingImages

    try:
        if args.model or args.examples:  # brick examples mean nothing to a bottle model
            examples = models.model_examples(model, args.examples, training_images=TrainingImages(folders))
        else:
            examples = models.builtin_examples(args.category)
    except models.UserError as exc:
        print(f"error: --examples: {exc}", file=sys.stderr)
        return 2
    fit_examples = [str(p) for p in MVTecCategory(builtin_root(), args.category).train[:8]]

    from .app import build_demo, launch

    demo = build_demo(model, examples=examples, model_label=label, fit_examples=fit_examples,
                      category=None if args.model else args.category, concurrency=args.concurrency,
                      image_folders=folders)
    say(f"serving the demo at http://{args.host}:{args.port} (Ctrl+C to stop)")
    # `kill`, `docker stop` and systemd send SIGTERM, which would end Python without its
    # exit handlers; exiting normally lets them remove the visitors' files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    launch(demo, server_name=args.host, server_port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
