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
# # 09 Baselines: SPADE and PaDiM
#
# > What PatchCore improved on: the same features scored the way its two main predecessors score them.
#
# **You will learn**
#
# - SPADE: nearest training images first, then nearest patches within them
# - PaDiM: one Gaussian per patch position, scored by the Mahalanobis distance
# - how the three compare on the same features: metrics, memory, time
# - why PaDiM's fixed positions hurt when an image moves by a few pixels
#
#
# Everything runs on a laptop CPU with the built-in data (real textures with generated defects,
# written once to a cache folder). To use MVTec AD instead, give its folder and a category to
# `teaching.notebook_setup` in the setup cell, or set the environment variables
# `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`.
#
# **Prerequisites**: notebooks 01-04 (features, bank, scores, metrics).
#
# **Time**: about 35 minutes to read it, run it and do the exercises.

# %% slideshow={"slide_type": "skip"}
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from PIL import Image

from patchcore_core import PatchCore, teaching
from patchcore_core.data.mvtec import MVTecCategory
from patchcore_core.evaluation.metrics import aupro, image_auroc, pixel_auroc
from patchcore_core.pipeline.scoring import anomaly_map
from patchcore_core.teaching import baselines, exercises
from patchcore_core.teaching.logical import CATEGORY as ASSEMBLY
from patchcore_core.teaching.logical import logical_root
from patchcore_core.util.images import read_image
from patchcore_core.util.tables import markdown_table

# Built-in data unless PATCHCORE_DATA_ROOT and PATCHCORE_CATEGORY say otherwise. For MVTec AD:
# teaching.notebook_setup("~/mvtec_anomaly_detection", "bottle")  ("screw", "carpet", ...)
setup = teaching.notebook_setup(default_category="brick")  # also seeds torch and numpy, styles the plots
SEED = setup.seed
DEVICE = setup.device  # PATCHCORE_DEVICE, else "auto": a GPU when there is one, else the CPU
FAST = setup.fast      # smaller sweeps when run by CI
DATA_ROOT, CATEGORY, cat = setup.data_root, setup.category, setup.cat
print(setup)

# %% [markdown]
# PatchCore's paper compares itself above all with two methods that use the same kind of features, a
# pretrained CNN's patch features, and score them differently. Here all three score **the same features**:
# `model.extract` gives every patch of every image (before any coreset), and each method is a short
# function in `patchcore_core.teaching.baselines`. The anomaly maps are smoothed alike (`scoring.anomaly_map`,
# sigma = 4), so only the scoring differs.

# %% tags=["show-code"]
model = PatchCore(device=DEVICE, calibration_fraction=0.0).fit(cat.train[:2], progress=False)  # sets the preprocessing
t0 = time.perf_counter()
train_feats = model.extract(cat.train)                                      # [N, 28, 28, D]
test_feats = model.extract([t.path for t in cat.test])                      # [T, 28, 28, D]
extract_s = time.perf_counter() - t0
labels = np.array([t.is_anomalous for t in cat.test], dtype=int)
masks = np.stack([cat.load_mask(t, model.preprocess) for t in cat.test])
print(f"features: train {tuple(train_feats.shape)}, test {tuple(test_feats.shape)} in {extract_s:.0f} s")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Three ways to score a patch
#
# - **PatchCore**: the distance from a test patch to its nearest patch in a coreset of *all* training
#   patches, from any image and any position.
# - **SPADE** (Cohen & Hoshen, 2020): first find the test image's `K` nearest training images by a global
#   feature (their distance is the image score); then a test patch's score is its distance to the nearest
#   patch *of those `K` images*. SPADE's global feature is a WideResNet's pooled last layer; here it is the
#   mean patch feature, so that nothing but the scoring differs. SPADE used `K = 50` of a few hundred
#   training images; we take a fifth of ours.
# - **PaDiM** (Defard et al., 2021): at each grid position `(i, j)`, a Gaussian `N(mu_ij, Sigma_ij)` fitted
#   to the training images' patches *at that position*; a test patch's score is its Mahalanobis distance
#   `sqrt((x - mu)^T Sigma^-1 (x - mu))` to the Gaussian of its own position. Each covariance gets
#   `0.01 I` added so that it can be inverted, as in PaDiM's code.

# %%
def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


k_images = max(1, len(cat.train) // 5)
bank, pc_fit = timed(baselines.patchcore_fit, train_feats, model.config.coreset_ratio, seed=SEED)
padim, pd_fit = timed(baselines.padim_fit, train_feats, seed=SEED)
runs = {"PatchCore": timed(baselines.patchcore_scores, bank, test_feats) + (pc_fit, bank.nbytes),
        "SPADE": timed(baselines.spade_scores, train_feats, test_feats, k_images=k_images) + (0.0, train_feats.numel() * 4),
        "PaDiM": timed(baselines.padim_scores, padim, test_feats) + (pd_fit, baselines.padim_nbytes(padim))}
rows, maps = [], {}
for name, ((image, patches), score_s, fit_s, nbytes) in runs.items():
    maps[name] = anomaly_map(patches, masks.shape[-1], model.config.sigma).numpy()
    rows.append({"method": name, "image AUROC": image_auroc(labels, image.numpy()),
                 "pixel AUROC": pixel_auroc(masks, maps[name]), "AUPRO": aupro(masks, maps[name]),
                 "memory MB": nbytes / 2**20, "fit s": fit_s, "score ms / image": 1000 * score_s / len(cat.test)})
display(Markdown(markdown_table(rows)))
by = {r["method"]: r for r in rows}
assert all(0 <= r["image AUROC"] <= 1 for r in rows)

# %% [markdown]
# Memory: SPADE keeps every training patch (it has no coreset), PatchCore a tenth of them, PaDiM a mean and
# a `D x D` inverse covariance per position, whatever the number of training images. Time: the shared
# feature extraction (printed above) is not counted. Which is best here is printed below, from this run:

# %% [markdown] tags=["notes"]
# *Teacher's notes.* Ask: *a part is always clamped in the same place; another comes down a conveyor belt. Which method for which?* The shift experiment answers it.

# %%
best = {m: max(rows, key=lambda r: r[m])["method"] for m in ["image AUROC", "pixel AUROC", "AUPRO"]}
n_train, dims = len(cat.train), train_feats.shape[-1]
covariance = ("fewer samples than dimensions, so each covariance is singular and the added `0.01 I` decides the rest"
              if n_train <= dims else  # a sample covariance of n points has rank at most n - 1
              f"more samples than dimensions, but few per dimension ({n_train / dims:.1f}), so the estimate is noisy")
display(Markdown("On this data, best " + "; ".join(f"{m}: **{b}**" for m, b in best.items()) +
                 f". PaDiM fits one Gaussian per position from {n_train} images in {dims} dimensions: {covariance}. "
                 "PaDiM is meant for hundreds of training images."))

# %% slideshow={"slide_type": "subslide"}
show = [int(np.flatnonzero(labels == 0)[0])] + [next(i for i, t in enumerate(cat.test) if t.defect == k) for k in cat.defects][:5]
fig, axes = plt.subplots(4, len(show), figsize=(3.1 * len(show), 3.2 * 4), squeeze=False)
for c, i in enumerate(show):
    axes[0, c].imshow(model.display(cat.test[i].path))
    if masks[i].any():
        axes[0, c].contour(masks[i], levels=[0.5], colors="lime")
    axes[0, c].set_title(cat.test[i].defect)
    for r, name in enumerate(maps, 1):
        m = maps[name]
        axes[r, c].imshow(m[i], cmap="inferno", vmin=float(m.min()), vmax=float(m.max()))
        axes[r, c].set_title(name, fontsize=11)
for ax in axes.flat:
    ax.set_xticks([]); ax.set_yticks([])
for r, name in enumerate(["image (ground truth in green)"] + list(maps)):
    axes[r, 0].set_ylabel(name)
plt.suptitle("one image per kind; rows: the three methods' maps, each on its own scale (min to max over the test set)")
plt.tight_layout(); plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Why fixed positions hurt: an image moved by a few pixels
#
# PaDiM compares a patch only with the patches that were at *the same position* in training. That is
# strong on aligned objects (a screw always in the same place) and fragile when they move. The built-in
# textures are random crops, so no position is special and a shift changes nothing. We use the built-in
# **assembly** (notebook 10): three parts in a fixture, aligned within 3 pixels. One good test image is
# moved right by 0 to 16 pixels (the uncovered border mirrors the plate beside it) and scored by all three, each
# score divided by the highest score that method gives the unshifted good test images.

# %%
asm = MVTecCategory(logical_root(), ASSEMBLY)
asm_model = PatchCore(device=DEVICE, calibration_fraction=0.0).fit(asm.train[:2], progress=False)
asm_train = asm_model.extract(asm.train)
asm_good = [t.path for t in asm.test if not t.is_anomalous]
asm_good_feats = asm_model.extract(asm_good)
shifts = [0, 4, 8, 12, 16]
moved = [Image.fromarray(baselines.shifted(np.asarray(read_image(asm_good[0])), dx)) for dx in shifts]
moved_feats = asm_model.extract(moved)
asm_bank, asm_padim = baselines.patchcore_fit(asm_train, seed=SEED), baselines.padim_fit(asm_train, seed=SEED)
score = {"PatchCore": lambda f: baselines.patchcore_scores(asm_bank, f),
         "SPADE": lambda f: baselines.spade_scores(asm_train, f, k_images=max(1, len(asm.train) // 5)),
         "PaDiM": lambda f: baselines.padim_scores(asm_padim, f)}
relative = {name: (fn(moved_feats)[0] / fn(asm_good_feats)[0].max()).numpy() for name, fn in score.items()}
display(Markdown(markdown_table([{"shift (px)": dx, **{n: float(v[k]) for n, v in relative.items()}}
                                 for k, dx in enumerate(shifts)])))

# %% slideshow={"slide_type": "subslide"}
fig, (a, b) = plt.subplots(1, 2, figsize=(14, 4.6), gridspec_kw={"width_ratios": [1, 1.4]})
a.imshow(np.concatenate([np.asarray(moved[0]), np.full((256, 8, 3), 255, np.uint8), np.asarray(moved[-1])], axis=1))
a.set_title(f"the good image, and moved {shifts[-1]} px right"); a.axis("off")
for name, v in relative.items():
    b.plot(shifts, v, "o-", lw=2, label=name)
b.axhline(1, color="k", ls="--", lw=1, label="highest score of the unshifted good images")
b.set_xlabel("shift (pixels)"); b.set_ylabel("image score / highest good score"); b.legend(); b.grid(alpha=0.3)
b.set_title("a good image, moved: PaDiM's score climbs, patch-kNN scores stay near 1")
plt.tight_layout(); plt.show()
assert relative["PaDiM"][-1] > relative["PatchCore"][-1], (
    f"moved {shifts[-1]} px, PaDiM's relative score {relative['PaDiM'][-1]:.2f} should exceed PatchCore's "
    f"{relative['PatchCore'][-1]:.2f}: PaDiM models each position, PatchCore does not")

# %% [markdown]
# PatchCore and SPADE look for the nearest normal patch wherever it was, so a moved part still finds its
# twin. PaDiM's Gaussian at each position has seen only plate there (or only a part), so a part that moved
# onto the plate's positions looks anomalous although nothing is wrong. The PaDiM paper itself evaluates
# on a shifted and rotated version of MVTec AD for this reason. The same position-awareness lets PaDiM
# see some *logical* anomalies that PatchCore misses (notebook 10).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - SPADE scores patches against the patches of the `K` nearest training images; PaDiM against a Gaussian per position; PatchCore against a coreset of all patches, from any image and position.
# - On the same features, the methods differ in what a patch is compared with: that decides their memory (SPADE keeps everything, PaDiM `D x D` per position, PatchCore a coreset) and their robustness.
# - PaDiM needs aligned images and many of them (a covariance per position); a few pixels of shift raise its scores on good images.
# - PatchCore's coreset keeps SPADE's "nearest normal patch" idea at a fraction of the memory, without SPADE's first step, so a patch may match any training image.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Write your answer in the cell under each question, then run the check below it: it prints
# "correct" or a hint. A function you are asked to write is checked with the package's own
# implementation switched off: build it from numpy, torch or scipy, not by calling the function it rewrites.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 1. PaDiM's score at one position
#
# `x` is a `[T, D]` tensor of test patches at one grid position, `mu` `[D]` and `inv_cov` `[D, D]` that
# position's mean and inverse covariance. Write `my_mahalanobis(x, mu, inv_cov)` returning the `[T]`
# Mahalanobis distances. The check compares it with `baselines.padim_scores` at a few positions.
# *Hint:* `d = x - mu`, then `(d @ inv_cov * d).sum(1)`, then the square root.

# %% tags=["exercise"]
def my_mahalanobis(x, mu, inv_cov):
    raise NotImplementedError  # your code: [T, D] -> [T]

# %% tags=["solution"]
def my_mahalanobis(x, mu, inv_cov):
    d = x - mu
    return ((d @ inv_cov) * d).sum(dim=1).sqrt()

# %% tags=["check"]
exercises.check_exercise("09.1", my_mahalanobis, padim, test_feats, model.grid)

# %% [markdown] tags=["solution"]
# *Answer.* One line per patch; PaDiM computes it for every position with one `einsum`. The Gaussian at a
# position knows nothing of the patches at other positions: the source of both its shift problem and its
# sense of where things belong.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2. Memory
#
# How many times more memory do PaDiM's Gaussians take than PatchCore's memory bank here? Set
# `padim_over_patchcore` from the table above (its `memory MB` column, or `by[...]`).

# %% tags=["exercise"]
padim_over_patchcore = ...  # your code

# %% tags=["solution"]
padim_over_patchcore = by["PaDiM"]["memory MB"] / by["PatchCore"]["memory MB"]

# %% tags=["check"]
exercises.check_exercise("09.2", padim_over_patchcore, padim, bank)

# %% [markdown] tags=["solution"]
# *Answer.* PaDiM stores `h x w x D x D` numbers, whatever the number of training images; PatchCore's bank
# grows with the training set but a coreset keeps it small. With the paper's 1024-d features PaDiM's
# covariances would take `784 x 1024^2 x 4` bytes, about 3 GB, which is why PaDiM keeps a random subset
# of 100-550 channels.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 3. Quiz: a part moved by a few pixels
#
# A good assembly image is moved a few pixels to the right. Why does PaDiM's score climb while PatchCore's stays near the unshifted good images'? Set `quiz_3` to one letter; the check explains the option you chose.
#
# - **a.** PaDiM's covariances are singular with few training images, so its scores are noisy.
# - **b.** The mirrored border is a defect that only PaDiM is sensitive enough to see.
# - **c.** PaDiM compares each patch only with the Gaussian of its own grid position, fitted to what was there in training; PatchCore looks for the nearest normal patch from any position.
# - **d.** PatchCore's coreset happens to contain shifted copies of the parts.

# %% tags=["exercise"]
quiz_3 = ...  # one letter: "a", "b", "c" or "d"

# %% tags=["solution"]
quiz_3 = "c"

# %% tags=["check"]
teaching.quiz.check(quiz_3, "09.3", what="`quiz_3`")

# %% [markdown] tags=["solution"]
# *Answer.* **c.** A part moved onto positions where training only ever showed plate is far from those positions' Gaussians, although nothing is wrong. PatchCore and SPADE find the part's twin wherever it was.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Further reading
#
# - N. Cohen, Y. Hoshen. *Sub-Image Anomaly Detection with Deep Pyramid Correspondences* (SPADE). arXiv preprint, 2020. [arXiv:2005.02357](https://arxiv.org/abs/2005.02357). SPADE.
# - T. Defard, A. Setkov, A. Loesch, R. Audigier. *PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection and Localization*. ICPR 2020 Workshops, LNCS 12664, pp. 475-489, 2021. [arXiv:2011.08785](https://arxiv.org/abs/2011.08785). PaDiM, and its evaluation on shifted and rotated images.
# - K. Roth, L. Pemula, J. Zepeda, B. Schölkopf, T. Brox, P. Gehler. *Towards Total Recall in Industrial Anomaly Detection*. CVPR 2022, pp. 14318-14328. [arXiv:2106.08265](https://arxiv.org/abs/2106.08265). Section 4.2, the comparison with both.
#
# **Next**: notebook **10 Limits**: what no patch-by-patch method can see.
