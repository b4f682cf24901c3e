# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 12 Deploy: from notebook to factory
#
# > The same scores without PyTorch: an ONNX graph, a memory bank and a JSON file, proven equal before they ship.
#
# **You will learn**
#
# - what `patchcore export` writes: the feature graph as ONNX, the memory bank, the threshold and settings
# - why the export checks itself: the exported model scores images beside the PyTorch one, and a gap over 1e-4 (relative) or a changed verdict refuses the export
# - where the time of one image goes (decode, preprocess, backbone, search, map), measured here for PyTorch, onnxruntime and int8
# - what int8 quantisation changes: scores, verdicts, the anomaly map
#
# Everything runs on a laptop CPU with the built-in data. `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`
# point the notebook at other data.
#
# **Prerequisites**: notebooks 00 (quickstart), 03 (scores and maps) and 04 (evaluation: AUROC and the
# threshold).
#
# **Time**: about 40 minutes to read it, run it and do the exercises.

# %% slideshow={"slide_type": "skip"}
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from patchcore_core import PatchCore, save, teaching
from patchcore_core.deploy.export import compare, export_model
from patchcore_core.deploy.runtime import Runtime, anomaly_maps
from patchcore_core.evaluation.metrics import image_auroc
from patchcore_core.pipeline.scoring import anomaly_map
from patchcore_core.teaching import exercises
from patchcore_core.util.images import read_image
from patchcore_core.util.tables import markdown_table

# The built-in brick unless PATCHCORE_DATA_ROOT and PATCHCORE_CATEGORY say otherwise. For other data:
# teaching.notebook_setup("~/mvtec", "bottle")
setup = teaching.notebook_setup()  # also seeds, styles plots
SEED = setup.seed
DEVICE = "cpu"         # a deployment target without a GPU; PATCHCORE_DEVICE is not used here
FAST = setup.fast      # fewer timing repeats when run by CI
DATA_ROOT, CATEGORY, cat = setup.data_root, setup.category, setup.cat
THREADS = 2            # the latency below is measured on 2 threads, a small industrial PC
torch.set_num_threads(THREADS)
faiss.omp_set_num_threads(THREADS)
WORK = Path(tempfile.mkdtemp(prefix="12_deploy-"))
print(setup)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## A model to ship
#
# A PatchCore model is three things: a frozen backbone with the paper's local aggregation (Sec. 3.1),
# a memory bank of normal patch features reduced by the coreset (Sec. 3.2), and a threshold on the image
# score, the largest distance of a test patch to its nearest bank patch (Sec. 3.3). Fit one and save it.

# %% slideshow={"slide_type": "subslide"}
train = [str(p) for p in cat.train]
test = [str(t.path) for t in cat.test]
labels = np.array([t.is_anomalous for t in cat.test])
model = PatchCore(device=DEVICE).fit(train, progress=False)
model_file = save(model, WORK / f"{CATEGORY}.safetensors")
print(f"fitted on {len(train)} good images; memory bank {tuple(model.bank.features.shape)}; "
      f"threshold {model.threshold:.2f}; saved to {model_file.name}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Export: a graph, a bank, a JSON file
#
# `patchcore export --model M --out DIR --int8` does what the next cell does (by default it checks parity
# on the model's held-out training images; `--check-images DIR` names others).
# The ONNX graph takes normalised images and returns the compact patch features: the backbone's stages,
# the 3x3 neighbourhood average, the layers brought to one grid and the projection, all in one graph.
# The nearest-neighbour search is a second, tiny graph, `search.onnx`: the squared distance
# $\lVert q - m \rVert^2 = \lVert q \rVert^2 - 2\, q \cdot m + \lVert m \rVert^2$ for every test patch $q$
# and bank row $m$ as one matrix product, then TopK; the memory bank is its input, so it is stored once, in
# `bank.npy`.
# The search stays exact; the PyTorch model asks faiss's flat index the same question (it computes the same
# expansion), and "Where the time goes" below times the two. With `int8`, onnxruntime's static quantisation
# turns the convolutions' weights and activations into 8-bit integers, with activation ranges calibrated on
# the training images; the stem, the first convolution, which reads the image, stays float: quantised, it
# cost up to 0.03 image AUROC on the real sets, and float it costs almost no time (the README measures
# both).

# %% slideshow={"slide_type": "subslide"}
t0 = time.perf_counter()
report = export_model(model_file, WORK / "export", int8=True)  # checked on the held-out training images
export_seconds = time.perf_counter() - t0
files = sorted((WORK / "export").iterdir())
display(Markdown(markdown_table([{"file": f.name, "size (kB)": f.stat().st_size / 1024} for f in files],
                                digits=1)))
print(f"exported in {export_seconds:.1f} s")
settings = json.loads((WORK / "export" / "settings.json").read_text())
print({k: settings[k] for k in ("backbone", "layers", "image_size", "grid", "feature_dim", "threshold",
                                "int8_threshold") if k in settings})

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Parity, proven
#
# An exported model that scores differently is worse than none: it ships with the old model's validation
# figures. So the export scores the check images with both and refuses to write the folder when a score
# differs by more than 1e-4 (relative) or a verdict differs. Here the same comparison, by hand, on the
# test images.

# %% slideshow={"slide_type": "subslide"}
torch_scores, torch_maps, _, _ = model.score(test)
torch_scores, torch_maps = torch_scores.numpy(), torch_maps.numpy()
fp32 = Runtime(WORK / "export", precision="fp32", threads=THREADS)
fp32_scores, fp32_maps, _ = fp32.score(test)
parity = compare(torch_scores, fp32_scores, model.threshold)
print(f"largest score difference: {parity['max_relative']:.2e} relative "
      f"({parity['max_absolute']:.2e} absolute); verdicts that differ: {parity['verdicts_flipped']}")
print(f"largest anomaly-map difference: {np.abs(fp32_maps - torch_maps).max():.2e} "
      f"(score units; the maps reach {torch_maps.max():.1f})")
assert parity["max_relative"] <= 1e-4 and parity["verdicts_flipped"] == 0

# %% [markdown] slideshow={"slide_type": "subslide"}
# The differences are float rounding: the ONNX graph adds and multiplies in another order than PyTorch.
# The maps differ a little more than the scores because the Gaussian blur is scipy's on one side and
# torchvision's on the other (the same kernel, truncated at 4 sigma, with mirrored borders).
#
# **Without torch.** The folder needs only onnxruntime, numpy, pillow and scipy
# (`pip install --no-deps patchcore-core`, then the `runtime` extra's packages). The next cell proves it
# in a fresh Python where importing torch fails.

# %% slideshow={"slide_type": "subslide"}
code = ("import sys, json; sys.modules['torch'] = None\n"
        "from patchcore_core.deploy.runtime import Runtime\n"
        "preds = Runtime(sys.argv[1], precision='fp32').predict(sys.argv[2:])\n"
        "print(json.dumps([p.score for p in preds]))")
done = subprocess.run([sys.executable, "-c", code, str(WORK / "export"), *test[:3]], capture_output=True,
                      text=True, timeout=300)
assert done.returncode == 0, done.stderr
no_torch_scores = json.loads(done.stdout.splitlines()[-1])
print("scores without torch:", np.round(no_torch_scores, 3), " with PyTorch:", np.round(torch_scores[:3], 3))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Where the time goes
#
# One image passes five stages: **decode** the file, **preprocess** (resize, crop, normalise), the
# **backbone** (the feature graph), the **search** (nearest bank patch of each of the grid's patches) and
# the **map** (upsample and blur the patch scores). Measured here, in batches of 8, on this machine's
# CPU with 2 threads (other programs running at the same time change the figures).

# %% slideshow={"slide_type": "subslide"}
int8 = Runtime(WORK / "export", precision="int8", threads=THREADS)


def torch_stages():
    c = model.config
    return {"preprocess": lambda ims: torch.stack([model.preprocess(im) for im in ims]),
            "backbone": model.features,
            "search": lambda f: model._score_features(f, model.bank)[1],
            "map": lambda p: anomaly_map(p, c.image_size, c.sigma, c.upsample)}


def runtime_stages(rt):
    def search(f):
        dist, _ = rt.search(f.reshape(-1, f.shape[-1]))
        return dist[:, 0].reshape(f.shape[:3])
    return {"preprocess": lambda ims: np.stack([rt.preprocess(im) for im in ims]),
            "backbone": rt.features, "search": search,
            "map": lambda p: anomaly_maps(p, (rt.image_size, rt.image_size), rt.sigma, rt.upsample)}


@torch.inference_mode()
def time_stages(stages, paths, batch=8, repeat=2):
    """ms per image of each stage (the best of ``repeat`` runs)."""
    best = {}
    for _ in range(repeat):
        spent = dict.fromkeys(["decode", *stages], 0.0)
        for start in range(0, len(paths), batch):
            t = time.perf_counter()
            x = [read_image(p) for p in paths[start:start + batch]]
            spent["decode"] += time.perf_counter() - t
            for name, step in stages.items():
                t = time.perf_counter()
                x = step(x)
                spent[name] += time.perf_counter() - t
        best = {k: min(best.get(k, np.inf), 1000 * v / len(paths)) for k, v in spent.items()}
    return best


timed = test if not FAST else test[:16]
rows = []
for name, stages in [("PyTorch eager", torch_stages()), ("onnxruntime fp32", runtime_stages(fp32)),
                     ("onnxruntime int8", runtime_stages(int8))]:
    ms = time_stages(stages, timed, repeat=1 if FAST else 3)
    rows.append({"path": name, **ms, "total": sum(ms.values())})
latency = {r["path"]: r for r in rows}
display(Markdown(markdown_table(rows, digits=1)))
print(f"ms per image, {len(timed)} images of {read_image(timed[0]).size[0]} px, {THREADS} threads")

# %% slideshow={"slide_type": "subslide"}
for r in rows:
    stage = max(["decode", "preprocess", "backbone", "search", "map"], key=r.get)
    print(f"{r['path']}: largest stage {stage} ({r[stage]:.1f} of {r['total']:.1f} ms)")
print(f"int8 backbone / fp32 backbone: {latency['onnxruntime int8']['backbone'] / latency['onnxruntime fp32']['backbone']:.2f}; "
      f"fp32 total / PyTorch total: {latency['onnxruntime fp32']['total'] / latency['PyTorch eager']['total']:.2f}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Which search?** The export answers the search with `search.onnx`, not faiss: in the README's benchmark
# (2 cores, 1024 px images) it took less than half of faiss's time for one image's patches and about the
# same for eight images', and the target machine needs one library less. Measure it here: the same queries
# against faiss's flat index, which the PyTorch model searches. If faiss wins at eight images here, read
# the first row too: one image at a time, as on a line, is where the graph gains, and the end-to-end time
# (the README's table) is what decides.

# %% slideshow={"slide_type": "subslide"}
index = faiss.IndexFlatL2(fp32.bank.shape[1])
index.add(fp32.bank)
search_rows = []
for b in (1, 8):
    f = fp32.features(np.stack([fp32.preprocess(p) for p in timed[:b]]))
    queries = np.ascontiguousarray(f.reshape(-1, f.shape[-1]))
    row = {"images": b, "queries": len(queries)}
    for name, search in [("faiss IndexFlatL2", lambda q: index.search(q, 1)),
                         ("search.onnx", lambda q: fp32.search(q, 1))]:
        search(queries)
        times = []
        for _ in range(3 if FAST else 9):
            t = time.perf_counter()
            search(queries)
            times.append(time.perf_counter() - t)
        row[f"{name} (ms per image)"] = 1000 * np.median(times) / b
    search_rows.append(row)
display(Markdown(markdown_table(search_rows, digits=2)))
same = (index.search(queries, 1)[1] == fp32.search(queries, 1)[1]).mean()
print(f"bank {fp32.bank.shape}; both find the same nearest bank row for {same:.2%} of the {len(queries)} patches")
for r in search_rows:
    ratio = r["faiss IndexFlatL2 (ms per image)"] / r["search.onnx (ms per image)"]
    print(f"{r['images']} image(s): search.onnx takes {1 / ratio:.2f} of faiss's time")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Which stage dominates depends on the image size and on the machine (and on what else it runs at the
# same time: measure on the target). On large images (MVTec's 700 to 1024 px PNGs) decoding becomes a
# large part: `patchcore predict` over a folder decodes the next images in background threads while the
# current ones are scored (a prefetching reader), so decoding overlaps the backbone instead of adding to
# it (on 2 cores it still takes CPU time from it). `benchmarks/bench_deploy.py` measures all of it on
# real 1024 px PNGs; the README has its table.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## What int8 changes
#
# Quantisation rounds every activation of the backbone after the stem to one of 256 levels, so every
# distance shifts a little. The export recalibrates the threshold with int8 features the way `fit` does (the held-out
# training images), and reports how many verdicts flip. Here: the scores, the detection quality, and the
# anomaly map of the image whose score changed most.

# %% slideshow={"slide_type": "subslide"}
int8_scores, int8_maps, _ = int8.score(test)
quality = [{"model": "PyTorch", "image AUROC": image_auroc(labels, torch_scores), "threshold": model.threshold},
           {"model": "onnxruntime fp32", "image AUROC": image_auroc(labels, fp32_scores),
            "threshold": fp32.threshold},
           {"model": "onnxruntime int8", "image AUROC": image_auroc(labels, int8_scores),
            "threshold": int8.threshold}]
display(Markdown(markdown_table(quality)))
change = np.abs(int8_scores - fp32_scores) / fp32_scores
print(f"int8 vs fp32: scores change by {np.median(change):.1%} (median), {change.max():.1%} (largest)")

# %% slideshow={"slide_type": "subslide"}
most_changed = int(np.argmax(change))
defective = np.flatnonzero(labels)
clearest = int(defective[np.argmax(fp32_scores[defective])]) if len(defective) else most_changed
fig, axes = plt.subplots(2, 4, figsize=(13, 6.6), squeeze=False)
for row, i in zip(axes, [most_changed, clearest]):
    vmax = max(fp32_maps[i].max(), int8_maps[i].max())
    diff = int8_maps[i] - fp32_maps[i]
    row[0].imshow(fp32.display(test[i]))
    row[0].set_title(f"{Path(test[i]).parent.name}/{Path(test[i]).name}")
    for ax, m, title in [(row[1], fp32_maps[i], f"fp32 map (score {fp32_scores[i]:.1f})"),
                         (row[2], int8_maps[i], f"int8 map (score {int8_scores[i]:.1f})")]:
        ax.imshow(m, cmap="inferno", vmin=0, vmax=vmax)
        ax.set_title(title)
    lim = np.abs(diff).max()
    im = row[3].imshow(diff, cmap="coolwarm", vmin=-lim, vmax=lim)
    row[3].set_title("difference: int8 - fp32")
    fig.colorbar(im, ax=row[3], fraction=0.046, pad=0.04, label="score units")
    for ax in row:
        ax.set_xticks([])
        ax.set_yticks([])
fig.suptitle("top: the image whose score changed most; bottom: the clearest defect (maps on one scale per row)")
fig.tight_layout()
plt.show()
shift = (int8_maps - fp32_maps).reshape(len(test), -1)
print(f"int8 - fp32 over all test maps: mean {shift.mean():+.1f} score units, {np.mean(shift > 0):.0%} of "
      f"pixels higher; per image the mean shift ranges {shift.mean(axis=1).min():+.1f} to "
      f"{shift.mean(axis=1).max():+.1f}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Read the difference images with the line printed under them: where most pixels move the same way,
# int8 has shifted the whole map, and that shift is what its recalibrated threshold absorbs; what is
# left over (the spots in the difference image) is what can flip a verdict or move a defect's outline.
# The verdicts and the AUROC above are measured on this data; the README reports int8's image and pixel
# AUROC against fp32 on each real set.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - `patchcore export` writes an ONNX feature graph, an ONNX search graph (exact: a matrix product and TopK), the memory bank as `.npy` and the settings and threshold as JSON.
# - The export proves parity on check images before it writes anything: a score gap over 1e-4 (relative) or a changed verdict refuses it. The fp32 gap printed above is float rounding.
# - The exported folder runs with onnxruntime, numpy, pillow and scipy only: no PyTorch, no faiss on the target machine.
# - Time per image splits into decode, preprocess, backbone, search and map; the backbone dominates on small images, and decoding on large PNGs unless it is prefetched.
# - int8 shifts every score (on the built-in data most of the map moves up); its own recalibrated threshold absorbs the shift, and the flipped verdicts and the AUROC above say what is left, on this data. Whether it is faster depends on the machine: measure it there.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Write your answer in the cell under each question, then run the check below it: it prints
# "correct" or a hint.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 1. The parity check by hand
#
# Set `largest_relative` to the largest relative score difference between the fp32 export and PyTorch on
# the test images: the largest `|fp32 - torch| / |torch|`. *Hint:* `fp32_scores` and `torch_scores`.

# %% tags=["exercise"]
largest_relative = ...  # your code

# %% tags=["solution"]
largest_relative = float(np.max(np.abs(fp32_scores - torch_scores) / np.abs(torch_scores)))

# %% tags=["check"]
exercises.check_exercise("12.1", largest_relative, torch_scores, fp32_scores)

# %% [markdown] tags=["solution"]
# *Answer.* A few parts in ten million on the built-in data: float rounding, far under the 1e-4 the export
# allows. A wrong layer, pooling or normalisation would give differences of percents.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2. Verdicts that int8 flips
#
# How many test images does the int8 model judge differently from PyTorch, each with its own threshold
# (`model.threshold` for PyTorch, `int8.threshold` for int8)? Set `flips`. Then: how many would flip if
# int8 kept PyTorch's threshold?

# %% tags=["exercise"]
flips = ...  # your code

# %% tags=["solution"]
flips = int(((torch_scores > model.threshold) != (int8_scores > int8.threshold)).sum())
kept = int(((torch_scores > model.threshold) != (int8_scores > model.threshold)).sum())
print(f"{flips} flips with the recalibrated threshold, {kept} with PyTorch's")

# %% tags=["check"]
exercises.check_exercise("12.2", flips, torch_scores, int8_scores, model.threshold, int8.threshold)

# %% [markdown] tags=["solution"]
# *Answer.* Quantisation moves every distance in the same direction on average, so the old threshold
# would sit in the wrong place; the recalibrated one is set the way `fit` sets it, from held-out good
# images scored with the int8 features.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 3. Quiz: what int8 changes
#
# The fp32 export's scores match PyTorch's to about one part in a million; the int8 export flips a few
# verdicts. Why? Set `quiz_3` to one letter; the check explains the option you chose.
#
# - **a.** The export runs another algorithm than PyTorch, so some gap is expected either way.
# - **b.** int8 rounds the backbone's weights and activations to 8-bit integers, so every patch feature moves a little; the recalibrated threshold absorbs the average shift, but images scored near the threshold can land on the other side.
# - **c.** int8 makes the nearest-neighbour search approximate, so some patches find a farther bank patch.
# - **d.** The flips mean the parity check failed, so the int8 folder was not written.

# %% tags=["exercise"]
quiz_3 = ...  # one letter: "a", "b", "c" or "d"

# %% tags=["solution"]
quiz_3 = "b"

# %% tags=["check"]
teaching.quiz.check(quiz_3, "12.3", what="`quiz_3`")

# %% [markdown] tags=["solution"]
# *Answer.* **b.** Quantisation changes the features, not the method: the search over the bank stays
# exact, and the difference image above shows the map moving everywhere a little.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Further reading
#
# - ONNX Runtime. *Quantize ONNX models* (static quantisation, calibration). [onnxruntime.ai/docs/performance/model-optimizations/quantization.html](https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
# - B. Jacob et al. *Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference*. CVPR 2018. [arXiv:1712.05877](https://arxiv.org/abs/1712.05877).
# - K. Batzner, L. Heckler, R. König. *EfficientAD: Accurate Visual Anomaly Detection at Millisecond-Level Latencies*. WACV 2024. [arXiv:2303.14535](https://arxiv.org/abs/2303.14535). What a detector built for latency gives up and keeps.
# - J. Johnson, M. Douze, H. Jégou. *Billion-scale similarity search with GPUs* (faiss). IEEE Transactions on Big Data, 2019. [arXiv:1702.08734](https://arxiv.org/abs/1702.08734).
#
# **Next**: the course ends here; `docs/teaching.md` lists projects to try, and the package's
# `patchcore_core/pipeline/` is the paper in ten files.
