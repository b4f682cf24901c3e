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
# # 03 kNN scoring and heatmaps
#
# > How far is each test patch from normal? From distances to an image score and a heatmap.
#
# **You will learn**
#
# - patch scores: the distance to the nearest memory-bank patch
# - the image score, and the paper's reweighting (Eq. 7) with real numbers
# - from 28x28 patch scores to a 224x224 anomaly map (upsampling, Gaussian sigma)
# - explaining a score by the nearest normal patch and its training image
#
#
# Everything runs on a laptop CPU with the built-in data (real textures with generated defects,
# written once to a cache folder). To use MVTec AD instead, give its folder and a category to
# `teaching.notebook_setup` in the setup cell, or set the environment variables
# `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`.
#
# **Prerequisites**: notebooks 01 (patch features) and 02 (the memory bank and the coreset).
#
# **Time**: about 45 minutes to read it, run it and do the exercises.

# %% slideshow={"slide_type": "skip"}
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from patchcore_core import PatchCore, teaching
from patchcore_core.pipeline.scoring import anomaly_map
from patchcore_core.teaching import exercises

# Built-in data unless PATCHCORE_DATA_ROOT and PATCHCORE_CATEGORY say otherwise. For MVTec AD:
# teaching.notebook_setup("~/mvtec_anomaly_detection", "bottle")  ("screw", "carpet", ...)
setup = teaching.notebook_setup(default_category="brick")  # also seeds torch and numpy, styles the plots
SEED = setup.seed
DEVICE = setup.device  # PATCHCORE_DEVICE, else "auto": a GPU when there is one, else the CPU
FAST = setup.fast      # smaller sweeps when run by CI
DATA_ROOT, CATEGORY, cat = setup.data_root, setup.category, setup.cat
print(setup)

# %%
model = PatchCore(device=DEVICE).fit(cat.train, progress=False)
bad = [t for t in cat.test if t.is_anomalous]
good = [t for t in cat.test if not t.is_anomalous]
item = bad[0]
print(f"memory bank {tuple(model.bank.features.shape)}; test image: {item.path.name} ({item.defect})")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Patch scores: nearest-neighbour distances
#
# For each test patch `m_test`, the **patch score** is `s = min over bank patches m of ||m_test - m||_2`.
# `model.score` returns them on the patch grid, with the index of the nearest bank patch. We check them
# against brute force:
#
# *Squared or not?* The paper writes the L2 distance. Its reference code (patchcore-inspection) keeps
# faiss's answers as they come, and faiss returns **squared** L2 distances, so its patch scores, image
# scores and maps are squared distances. This package takes the square root (`memory_bank.knn_search`),
# so its scores are the paper's. Squaring keeps the order of the image scores (image AUROC is the same),
# but not of the smoothed maps' pixels, so pixel metrics can differ a little, and thresholds are on
# another scale.

# %% slideshow={"slide_type": "subslide"}
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

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The image score and Eq. 7
#
# The image score is the largest patch score, `s* = max_i s_i`, at the most anomalous patch `m_test,*`
# whose nearest bank patch is `m*`. **This is what runs by default**: the package's
# `reweight_neighbours=0`, like the paper's reference code, which has no Eq. 7 at all. The paper's text
# adds a reweighting (Eq. 7), which `PatchCore(reweight_neighbours=b)` turns on:
#
# $$ s = \Big(1 - \frac{\exp \lVert m^{test,*} - m^* \rVert_2}{\sum_{m \in \mathcal{N}_b(m^*)} \exp \lVert m^{test,*} - m \rVert_2}\Big) \cdot s^* $$
#
# `N_b(m*)` are the `b` bank patches nearest to `m*` (including itself). Since `m*` is the bank patch
# *nearest* to `m_test,*`, its distance is the smallest in the sum, so its softmax share is the smallest,
# at most `1/b`, and the weight `1 - share` lies in `[1 - 1/b, 1)`:
#
# - `m*` **isolated**, a rare normal patch: its neighbours are much farther from the test patch, its share
#   is near 0 and the weight near 1. The score is **kept**: the closest normal evidence is itself rare, so a
#   large distance is taken at face value.
# - `m*` in a **dense** neighbourhood: its neighbours are about as close as `m*`, its share is near `1/b`
#   and the score is **discounted** towards `(1 - 1/b) s*`.
#
# So Eq. 7 never raises a score above `s*`. The paper says "we increase the anomaly score" when `m*` is
# itself unusual: that is relative, an isolated `m*` keeps up to `b / (b - 1)` times the score that a dense
# one with the same `s*` keeps, as the cell below derives.
#
# The same with made-up distances, then worked through with real numbers (`teaching.scoring_plots.eq7_breakdown`, b = 3):

# %% slideshow={"slide_type": "subslide"} tags=["show-code"]
b = 3
weights = {}
for kind, d in [("dense", [10.0, 10.5, 11.0]), ("isolated", [10.0, 30.0, 40.0])]:
    share = float(torch.softmax(torch.tensor(d, dtype=torch.float64), dim=0)[0])  # m* first
    weights[kind] = 1 - share
    print(f"m* {kind:8s}: distances to N_b(m*) {d}: share of m* {share:.3f}, weight {weights[kind]:.3f}")
assert 1 - 1 / b <= weights["dense"] < weights["isolated"] <= 1, "the weight lies in [1 - 1/b, 1)"
# the paper's "increase", relative: the same s* keeps more of itself when m* is isolated
gain = weights["isolated"] / weights["dense"]
print(f"isolated / dense: {gain:.3f} (at most b / (b - 1) = {b / (b - 1):.3f}, when the dense share is 1/b)")
assert 1 < gain <= b / (b - 1) + 1e-12

# %%
eq = teaching.scoring_plots.eq7_breakdown(model, item.path, b=b)
print(f"most anomalous patch m_test,* at (row {eq['row']}, col {eq['col']}): s* = {eq['s_star']:.2f}")
print(f"nearest bank patch m* = row {eq['m_star']} of the bank; N_b(m*) = {eq['neighbours']}")
for j, d, p in zip(eq["neighbours"], eq["distances"], eq["softmax"]):
    print(f"  ||m_test,* - m[{j}]|| = {d:7.2f}   exp(.)/sum = {p:.3g}")
print(f"weight 1 - {eq['softmax'][0]:.3g} = {eq['weight']:.4f};  s = {eq['weight']:.4f} x {eq['s_star']:.2f} = {eq['score']:.2f}")
assert abs(eq["weight"] * eq["s_star"] - eq["score"]) < 1e-3 * eq["score"]  # the package's Eq. 7, as printed

# %% [markdown]
# When the distances differ by several units, `exp` is extreme: the softmax share of the nearest
# (smallest) distance is tiny and the weight is almost exactly 1. Eq. 7 only changes scores noticeably
# when `m*`'s neighbours are almost equally close (a gap of a unit or less). Is that the case at the
# package's distance scale? Measured over the test images (all of them but in `FAST` mode on large sets),
# with the image AUROC with and without Eq. 7:

# %% [markdown] tags=["notes"]
# *Teacher's notes.* Work Eq. 7 on the board with the two printed cases (a dense and an isolated neighbourhood): the weight is near 1 for an isolated nearest patch, near 1 - 1/b for a dense one.

# %% slideshow={"slide_type": "subslide"}
eq7_items = cat.test[::max(1, len(cat.test) // 40)] if FAST else cat.test  # FAST: about 40 images on large sets
rows = [teaching.scoring_plots.eq7_breakdown(model, t.path, b=b) for t in eq7_items]
fig, ax = plt.subplots(figsize=(7, 5))
colours = ["crimson" if t.is_anomalous else "tab:blue" for t in eq7_items]
ax.scatter([r["s_star"] for r in rows], [r["score"] for r in rows], c=colours, s=50)
lim = [0, max(r["s_star"] for r in rows) * 1.05]
ax.plot(lim, lim, "k--", lw=1, label="no change")
ax.set_xlabel("s* = max patch score"); ax.set_ylabel("reweighted score s (Eq. 7, b = 3)")
ax.set_title("Eq. 7 against s* (red: defective, blue: normal)"); ax.legend()
plt.show()
weights_all = [r["weight"] for r in rows]
print(f"Eq. 7 weights over the {len(rows)} test images: {min(weights_all):.4f} to {max(weights_all):.4f} "
      f"(the bound 1 - 1/b = {1 - 1 / b:.3f})")
from patchcore_core.evaluation.metrics import image_auroc

labels = [t.is_anomalous for t in eq7_items]
if 0 < sum(labels) < len(labels):
    auroc_max = image_auroc(labels, [r["s_star"] for r in rows])
    auroc_eq7 = image_auroc(labels, [r["score"] for r in rows])
    print(f"image AUROC on these images: {auroc_max:.4f} with s* (the default), {auroc_eq7:.4f} with Eq. 7")
assert all(r["score"] <= r["s_star"] + 1e-6 for r in rows), "the weight is below 1, so Eq. 7 never raises a score"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## From patch scores to the anomaly map
#
# 28x28 scores become a 224x224 map: upsample (bilinear) and smooth with a Gaussian of `sigma = 4` pixels
# (`scoring.anomaly_map`). Blocky nearest-neighbour upsampling is shown for comparison:

# %% slideshow={"slide_type": "subslide"}
stages = teaching.scoring_plots.map_stages(patch[0], 224, sigma=model.config.sigma)
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

# %% slideshow={"slide_type": "subslide"}
sigmas = [0, 2, 4, 8, 16]
fig, axes = plt.subplots(1, len(sigmas), figsize=(4 * len(sigmas), 4))
for ax, s in zip(axes, sigmas):
    m = anomaly_map(patch, 224, s)[0]
    ax.imshow(m, cmap="inferno"); ax.contour(mask, colors="lime", linewidths=1)
    ax.set_title(f"sigma = {s}: peak {float(m.max()):.0f}"); ax.set_xlabel("x"); ax.set_ylabel("y")
plt.suptitle("more smoothing: smoother maps, lower peaks, blurrier borders (ground truth in green)")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Explain by example
#
# Each bank row remembers where it came from (training image, row, column). So every test patch can be
# explained by *the normal patch it resembles most*. Small distance: the test patch looks like that normal
# patch. Large distance: even the closest normal patch looks different, which is what a defect is.

# %% slideshow={"slide_type": "subslide"}
ex = model.explain(item.path)   # the most anomalous patch by default
print(ex)
fig = teaching.scoring_plots.plot_explanation(model, item.path)
plt.show()
assert ex.distance == float(patch[0].max()) and 0 <= ex.train_index < len(cat.train)

# %% [markdown]
# Choose an image and a location: the widget calls `teaching.scoring_plots.plot_explanation`. A patch outside the defect finds a close normal twin; a patch on the defect does not.

# %% slideshow={"slide_type": "subslide"}
test_items = bad + good

def explain_at(image=0, row=14, col=14):
    teaching.scoring_plots.plot_explanation(model, test_items[image].path, row, col, vmax=float(patch.max()))
    plt.show()
    return model.explain(test_items[image].path, row, col)

normal_spot = explain_at(len(bad), 14, 14)
defect_spot = explain_at(0, ex.row, ex.col)
assert defect_spot.distance > normal_spot.distance, (
    f"the most anomalous patch of {test_items[0].path.name} ({defect_spot.distance:.1f}) should be farther from "
    f"normal than the centre of a good image ({normal_spot.distance:.1f})")
widgets.interactive(explain_at, **{name: widgets.IntSlider(value, 0, top, continuous_update=False)  # draw on release
                                   for name, value, top in [("image", 0, len(test_items) - 1),
                                                            ("row", 14, model.grid[0] - 1),
                                                            ("col", 14, model.grid[1] - 1)]})

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - A patch score is the L2 distance from a test patch to its nearest memory-bank patch (the reference code
#   scores its square).
# - The image score is the maximum patch score (the default, as in the reference code). Eq. 7, off by
#   default, keeps it when the matched bank patch `m*` is rare (isolated) and discounts it towards
#   `(1 - 1/b) s*` when `m*` sits among equally close neighbours; at the package's distance scale its weights
#   are close to 1 (measured above: how close, on your data).
# - Anomaly maps are the patch scores upsampled bilinearly and smoothed with a Gaussian (sigma = 4).
# - Every score has a witness: the nearest normal patch and the training image it came from.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Write your answer in the cell under each question, then run the check below it: it prints
# "correct" or a hint. A function you are asked to write is checked with the package's own
# implementation switched off: build it from numpy, torch or scipy, not by calling the function it rewrites.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 1. Scores from a distance matrix
#
# `D[i, j]` is the distance from test patch `i` to bank patch `j`. Write `my_patch_scores(D)` (one score per
# test patch: the distance to its nearest bank patch) and `my_image_score(D)` (the image score `s*`, without
# Eq. 7). The check compares them with what the fitted model computes, `model.score`, on real test images
# (and with the package's kNN search on random points).

# %% tags=["exercise"]
def my_patch_scores(D):
    raise NotImplementedError  # your code: [P, M] -> [P]

def my_image_score(D):
    raise NotImplementedError  # your code: [P, M] -> one number

# %% tags=["solution"]
def my_patch_scores(D):
    return D.min(dim=1).values

def my_image_score(D):
    return my_patch_scores(D).max()

# %% tags=["check"]
exercises.check_exercise("03.1", my_patch_scores, my_image_score, model, [t.path for t in (bad[0], good[0])], SEED)

# %% [markdown] tags=["solution"]
# *Answer.* A min over the bank, then a max over the image's patches: the whole of PatchCore's scoring
# before Eq. 7 and the smoothing of the map.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2. Eq. 7's weight
#
# `rows[k]["distances"]` holds, for test image `k`, the distances from its most anomalous patch `m^test,*` to
# `m*` (first) and to `m*`'s other neighbours in the bank. Write `my_eq7_weight(d)` that returns the weight
# Eq. 7 puts on `s*`. *Hint:* `1 - exp(d[0]) / sum(exp(d))`; `torch.softmax` computes it without overflow.

# %% tags=["exercise"]
def my_eq7_weight(d):
    raise NotImplementedError  # your code: a tensor of b distances -> one number

# %% tags=["solution"]
def my_eq7_weight(d):
    return 1 - torch.softmax(d, dim=0)[0]

# %% tags=["check"]
exercises.check_exercise("03.2", my_eq7_weight, rows)

# %% [markdown] tags=["solution"]
# *Answer.* `d[0]` is the smallest distance, so its softmax share is the smallest and the weight lies in
# `[1 - 1/b, 1)`. It is near 1 when `m*`'s neighbours are much farther than `m*` (a rare, isolated bank
# patch) and near `1 - 1/b` when they are about as close (a dense neighbourhood). At these distance scales
# the softmax is very peaked, so the weights printed above are all close to 1.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 3. Quiz: Eq. 7, and what runs by default
#
# What does Eq. 7 do, and does it run when PatchCore is used with the package's defaults? Set `quiz_3` to one letter; the check explains the option you chose. *Hint:* `model.config` holds the model's settings; Eq. 7 is `reweight_neighbours`.
#
# - **a.** It multiplies `s*` by a weight near 1 when `m*` is an isolated bank patch and near `1 - 1/b` when `m*`'s neighbours are about as close; with the package's defaults it does not run, and the image score is `s*`.
# - **b.** It raises the score of an image whose nearest bank patch `m*` is isolated, so that rare defects stand out; it runs by default.
# - **c.** It replaces the largest patch score by the mean of the `b` largest patch scores, which is steadier.
# - **d.** The package always computes it with `b = 3`: the `score` of every prediction is the reweighted `s`.

# %% tags=["exercise"]
quiz_3 = ...  # one letter: "a", "b", "c" or "d"

# %% tags=["solution"]
quiz_3 = "a"

# %% tags=["check"]
teaching.quiz.check(quiz_3, "03.3", what="`quiz_3`")

# %% [markdown] tags=["solution"]
# *Answer.* **a.** The weight is 1 minus the softmax share of `m*`, in `[1 - 1/b, 1)` (worked above). The default `model.config.reweight_neighbours` is 0, which keeps the largest patch score `s*`; set it to `b` to turn Eq. 7 on.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Further reading
#
# - K. Roth, L. Pemula, J. Zepeda, B. Schölkopf, T. Brox, P. Gehler. *Towards Total Recall in Industrial Anomaly Detection*. CVPR 2022, pp. 14318-14328. [arXiv:2106.08265](https://arxiv.org/abs/2106.08265). Section 3.3, Eq. 6-7.
# - N. Cohen, Y. Hoshen. *Sub-Image Anomaly Detection with Deep Pyramid Correspondences* (SPADE). arXiv preprint, 2020. [arXiv:2005.02357](https://arxiv.org/abs/2005.02357). The same nearest-neighbour patch scores, within the nearest training images.
#
# **Next**: notebook **04 Evaluation**: how good these scores and maps are, in the benchmark's metrics.
