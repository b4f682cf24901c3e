"""Deployment latency: ms per image split into decode, preprocess, backbone, search and map, for
PyTorch eager, onnxruntime fp32 and int8 (and OpenVINO where it is installed), at each batch size;
then end to end as ``patchcore predict`` runs a folder (decoding prefetched in background threads),
against today's PyTorch ``predict`` (each image decoded, then scored), with the verdicts compared.

    python benchmarks/bench_deploy.py --threads 2 --batch 1 8      # ../shared/data/mvtec_grid_mini
    python benchmarks/bench_deploy.py --data DIR --category bottle  # an MVTec-layout set
    python benchmarks/bench_deploy.py --device cuda                 # benchmarks/gpu_check.sh

Without --data: the 1024x1024 PNGs of ../shared/data/mvtec_grid_mini (grid) where present, else the
built-in data (brick). A model is fitted on the category's train/good images (--coreset), exported
(fp32 and int8, parity checked on its test images) to a temporary folder, and every path scores the
test and training images. Search is exact on every path: faiss's flat index for PyTorch, the
export's search.onnx for onnxruntime; a second table times the two searches alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("decode", "preprocess", "backbone", "search", "map")


def pick_data(args) -> tuple[Path, str, str]:
    """(root, category, what) of the images to time."""
    if args.data:
        return Path(args.data), args.category, f"{args.data} ({args.category})"
    real = Path(args.shared) / "mvtec_grid_mini"
    if (real / "grid" / "train" / "good").is_dir():
        return real, "grid", "../shared/data/mvtec_grid_mini (grid, 1024x1024 PNG)"
    from patchcore_core.data.builtin import builtin_root

    return builtin_root(), "brick", "built-in brick (../shared/data not found)"


class TorchPath:
    """PyTorch eager, stage by stage (the steps of ``PatchCore.score``)."""

    def __init__(self, model):
        import torch

        self.torch, self.model, self.name = torch, model, f"PyTorch eager ({model.device.type})"
        self.predictor = model

    def sync(self):
        if self.model.device.type == "cuda":
            self.torch.cuda.synchronize()

    def preprocess(self, images):
        return self.torch.stack([self.model.preprocess(im) for im in images]).to(self.model.device)

    def backbone(self, batch):
        with self.torch.inference_mode():
            return self.model.features(batch)

    def search(self, feats):
        with self.torch.inference_mode():
            scores, patch, _ = self.model._score_features(feats, self.model.bank)
            return scores, patch

    def map(self, patch):
        from patchcore_core.pipeline.scoring import anomaly_map

        c = self.model.config
        with self.torch.inference_mode():
            return anomaly_map(patch, c.image_size, c.sigma, c.upsample).cpu()

    def set_batch(self, b: int):
        self.model.config = dataclasses.replace(self.model.config, batch_size=b)


class RuntimePath:
    """An export run by onnxruntime (patchcore_core.deploy.runtime.Runtime), stage by stage."""

    def __init__(self, runtime, name: str):
        self.runtime, self.name, self.predictor = runtime, name, runtime

    def sync(self):
        pass

    def preprocess(self, images):
        return np.stack([self.runtime.preprocess(im) for im in images])

    def backbone(self, batch):
        return self.runtime.features(batch)

    def search(self, feats):
        r = self.runtime
        b, h, w, d = feats.shape
        dist, idx = r.search(feats.reshape(-1, d))
        patch = dist[:, 0].reshape(b, h, w)
        return r.image_scores(feats, patch, idx[:, 0].reshape(b, h, w)), patch

    def map(self, patch):
        from patchcore_core.deploy.runtime import anomaly_maps

        r = self.runtime
        return anomaly_maps(patch, (r.image_size, r.image_size), r.sigma, r.upsample)

    def set_batch(self, b: int):
        self.runtime.batch_size = b


def openvino_runtime(folder, precision: str, threads: int):
    """The export's Runtime with OpenVINO computing the features (None: openvino not installed)."""
    try:
        import openvino as ov
    except ImportError:
        return None
    from patchcore_core.deploy.runtime import MODEL_FILES, Runtime

    runtime = Runtime(folder, precision=precision, threads=threads)
    compiled = ov.Core().compile_model(str(Path(folder) / MODEL_FILES[precision]), "CPU",
                                       {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    runtime.features = lambda batch: request.infer({0: np.ascontiguousarray(batch, np.float32)})[0].copy()
    return runtime


def time_stages(path, paths: list, batch: int, repeat: int) -> dict:
    """ms per image of each stage, run one after the other (the best of ``repeat`` runs each)."""
    from patchcore_core.util.images import read_image

    best = dict.fromkeys(STAGES, float("inf"))
    for _ in range(repeat):
        spent = dict.fromkeys(STAGES, 0.0)

        def timed(stage, step, *inputs, spent=spent):
            t = time.perf_counter()
            out = step(*inputs)
            path.sync()
            spent[stage] += time.perf_counter() - t
            return out

        for start in range(0, len(paths), batch):
            images = timed("decode", lambda c: [read_image(p) for p in c], paths[start:start + batch])
            feats = timed("backbone", path.backbone, timed("preprocess", path.preprocess, images))
            _, patch = timed("search", path.search, feats)
            timed("map", path.map, patch)
        best = {k: min(best[k], 1000 * v / len(paths)) for k, v in spent.items()}
    return best


def time_search(runtime, paths: list, batches: list[int], repeat: int) -> list[dict]:
    """ms per image of the exact search alone, faiss's flat index against the export's
    ``search.onnx`` (the same queries: one image's patches, or ``batch`` images')."""
    import faiss

    index = faiss.IndexFlatL2(runtime.bank.shape[1])
    index.add(runtime.bank)
    engines = {"faiss IndexFlatL2": lambda q: index.search(q, 1),
               "search.onnx (onnxruntime)": lambda q: runtime.search(q, 1)}
    rows = []
    for b in batches:
        feats = runtime.features(np.stack([runtime.preprocess(p) for p in paths[:b]]))
        queries = np.ascontiguousarray(feats.reshape(-1, feats.shape[-1]))
        row = {"batch": b, "queries": len(queries)}
        for name, search in engines.items():
            search(queries)  # warm-up
            times = []
            for _ in range(max(5, 3 * repeat)):
                t = time.perf_counter()
                search(queries)
                times.append(time.perf_counter() - t)
            row[name] = 1000 * float(np.median(times)) / b
        rows.append(row)
    return rows


def time_end_to_end(predictor, paths: list, batch: int, repeat: int, prefetch: bool = True):
    """(ms per image, verdicts) of scoring the folder: ``patchcore predict``'s loop (prefetched
    decoding), or without ``prefetch`` the model's own predict (decode, then score, in turn)."""
    from patchcore_core.cli.predict import predict_each

    best, preds = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        preds = predict_each(predictor, paths, chunk=batch) if prefetch else predictor.predict(paths)
        best = min(best, time.perf_counter() - t)
    return 1000 * best / len(paths), [p.verdict for p in preds]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="MVTec-layout root (default: ../shared/data/mvtec_grid_mini, else "
                    "the built-in data)")
    ap.add_argument("--category", default="grid")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"),
                    help="where the real sets are (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--coreset", type=float, default=0.1, help="coreset ratio of the fitted model")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)

    import faiss
    import torch

    from patchcore_core import PatchCore, save
    from patchcore_core.data.mvtec import MVTecCategory
    from patchcore_core.deploy.export import export_model
    from patchcore_core.deploy.runtime import ExportError, Runtime
    from patchcore_core.util.images import image_size
    from patchcore_core.util.tables import format_table

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    root, category, what = pick_data(args)
    cat = MVTecCategory(root, category)
    train = [str(p) for p in cat.train]
    test = [str(t.path) for t in cat.test]
    paths = test + train
    w, h = image_size(paths[0])
    print(f"data: {what}: {len(paths)} images ({len(test)} test + {len(train)} train), {w}x{h}; "
          f"{args.threads} threads, device {args.device}", file=sys.stderr)

    model = PatchCore(device=args.device, coreset_ratio=args.coreset).fit(train, progress=False)
    tmp = Path(tempfile.mkdtemp(prefix="bench_deploy-"))
    save(model, tmp / "model.safetensors")
    export_model(tmp / "model.safetensors", tmp / "export", check_images=test, int8=True,
                 log=lambda m: print(m, file=sys.stderr))

    torch_path = TorchPath(model)
    # today's predict: PyTorch, each image decoded then scored (batch 8, the default)
    torch_path.set_batch(8)
    time_end_to_end(model, paths[:4], 8, 1, prefetch=False)  # warm-up
    today_ms, reference = time_end_to_end(model, paths, 8, args.repeat, prefetch=False)

    backends = [torch_path]
    for precision in ("fp32", "int8"):
        try:
            rt = Runtime(tmp / "export", precision=precision, threads=args.threads, device=args.device)
        except ExportError as exc:  # cuda without onnxruntime-gpu
            print(f"note: onnxruntime {precision} skipped: {exc}", file=sys.stderr)
            continue
        backends.append(RuntimePath(rt, f"onnxruntime {precision} ({args.device})"))
    if args.device == "cpu":
        for precision in ("fp32", "int8"):
            ov = openvino_runtime(tmp / "export", precision, args.threads)
            if ov is None:
                print("note: OpenVINO not installed (pip install openvino): not measured", file=sys.stderr)
                break
            backends.append(RuntimePath(ov, f"OpenVINO {precision} (cpu)"))

    rows = [{"path": "PyTorch predict today (no prefetch)", "batch": 8, "end_to_end": today_ms,
             "speedup": 1.0, "verdicts_differ": 0}]
    for path in backends:
        for b in args.batch:
            path.set_batch(b)
            time_stages(path, paths[:max(b, 4)], b, 1)  # warm-up
            stages = time_stages(path, paths, b, args.repeat)
            e2e, verdicts = time_end_to_end(path.predictor, paths, b, args.repeat)
            rows.append({"path": path.name, "batch": b, **stages,
                         "sequential": sum(stages.values()), "end_to_end": e2e, "speedup": today_ms / e2e,
                         "verdicts_differ": sum(v != r for v, r in zip(verdicts, reference))})
            print(f"  {path.name}, batch {b}: {e2e:.1f} ms per image end to end", file=sys.stderr)
    cols = ["path", "batch", *STAGES, "sequential", "end_to_end", "speedup", "verdicts_differ"]
    print(f"ms per image; {what}; {len(paths)} images; {args.threads} threads; bank {len(model.bank)} x "
          f"{model.bank.features.shape[1]}; sequential = the stages one after the other; end_to_end = "
          "patchcore predict's loop over the folder, decoding prefetched; speedup vs today's predict")
    print(format_table([{k: (f"{v:.1f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
                       cols))
    fp32 = next((p.runtime for p in backends if isinstance(p, RuntimePath) and "fp32" in p.name), None)
    search_rows = time_search(fp32, paths, args.batch, args.repeat) if fp32 else []
    if search_rows:
        print(f"\nexact search alone, ms per image (median; bank {len(model.bank)} rows):")
        print(format_table([{k: (f"{v:.1f}" if isinstance(v, float) else v) for k, v in r.items()}
                            for r in search_rows], list(search_rows[0])))
    fastest = min(rows[1:], key=lambda r: r["end_to_end"])
    print(f"fastest: {fastest['path']} batch {fastest['batch']}: {fastest['speedup']:.2f}x today's PyTorch "
          f"predict ({today_ms:.1f} -> {fastest['end_to_end']:.1f} ms per image), "
          f"{fastest['verdicts_differ']} of {len(paths)} verdicts differ")
    if args.json:
        Path(args.json).write_text(json.dumps({"data": what, "threads": args.threads, "device": args.device,
                                               "cpu_count": os.cpu_count(), "rows": rows,
                                               "search": search_rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
