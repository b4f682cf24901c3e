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
# # 00 PatchCore in ten lines
#
# > Fit on good images only, then find and locate defects: the whole method, before the details.
#
# **You will learn**
#
# - how to fit PatchCore on a folder of defect-free images and predict new ones
# - what a prediction holds: an image score, a verdict against a threshold, a heatmap
# - which notebook explains which step of the paper
#
#
# Everything runs on a laptop CPU with the built-in data (real textures with generated defects,
# written once to a cache folder). To use MVTec AD instead, set `DATA_ROOT` and `CATEGORY` in
# the setup cell, or the environment variables `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`.

# %% [markdown]
# PatchCore (Roth et al., CVPR 2022) never sees a defect while it learns. It stores what normal
# *patches* of the training images look like (as features of a pretrained CNN) in a **memory bank**,
# shrinks that bank with a **coreset**, and scores a new image by how far its most unusual patch is from
# everything in the bank.

# %% slideshow={"slide_type": "skip"}
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from patchcore_core import PatchCore, teaching
from patchcore_core.builtin_data import builtin_root
from patchcore_core.data import MVTecCategory
from patchcore_core.tables import markdown_table
from patchcore_core.teaching import checks

SEED = 0
torch.manual_seed(SEED)
np.random.seed(SEED)
DEVICE = os.environ.get("PATCHCORE_DEVICE", "auto")  # "auto": a GPU when there is one, else the CPU
FAST = bool(os.environ.get("CI"))                    # smaller sweeps when run by CI
# Built-in data by default. For MVTec AD: DATA_ROOT = Path("~/mvtec_anomaly_detection").expanduser()
DATA_ROOT = Path(os.environ.get("PATCHCORE_DATA_ROOT") or builtin_root())
CATEGORY = os.environ.get("PATCHCORE_CATEGORY", "brick")  # MVTec AD: "bottle", "screw", "carpet", ...

plt.rcParams.update({"figure.dpi": 80, "font.size": 12, "axes.titlesize": 13})
cat = MVTecCategory(DATA_ROOT, CATEGORY)
print(f"{CATEGORY}: {len(cat.train)} good training images, {len(cat.test)} test images "
      f"(defects: {', '.join(cat.defects)}); FAST={FAST}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Fit and predict
#
# These are the ten lines. `fit` learns from good images only; `predict` returns one `Prediction` per image.

# %%
model = PatchCore(device=DEVICE).fit(cat.train, progress=False)   # good images only
test_paths = [t.path for t in cat.test]
preds = model.predict(test_paths)
for t, p in list(zip(cat.test, preds))[::3]:
    print(f"{t.defect:8s} score {p.score:6.1f}  normalised {p.normalised_score:4.2f}  -> {p.verdict}")
display(model)  # the model and its settings

# %% [markdown]
# The **score** is a distance in feature space: how far the image's most unusual patch is from its nearest
# normal patch. The **threshold** comes from normal images only (a few good training images are held out
# and scored, notebook 04); `normalised_score` is `score / threshold`, so above 1 means anomalous.

# %% slideshow={"slide_type": "subslide"}
fig = teaching.evaluation.plot_predictions(model, test_paths, preds, titles=[t.defect for t in cat.test], ncols=7)
fig.suptitle(f"PatchCore on '{CATEGORY}': heatmaps and scores (red title = flagged anomalous)", fontsize=14)
plt.show()

# %% [markdown]
# The heatmap lights up where the defects are, although the model never saw one. Look at the good images too: some may sit just above 1.0x the threshold. The threshold is the highest score of a few held-out good training images (the next cell prints how many), so it can be tight; notebook 04 shows how it is set and what it costs. A notebook that runs is also a test: the cells below check the key results.

# %%
labels = np.array([t.is_anomalous for t in cat.test])
scores = np.array([p.score for p in preds])
print(f"mean score: normal {scores[~labels].mean():.1f}, defective {scores[labels].mean():.1f}")
print(f"threshold {model.threshold:.1f}: the highest score of {len(model.calibration_scores)} held-out good "
      f"images (of {len(cat.train)} training images)")
assert scores[labels].mean() > scores[~labels].mean(), (
    f"on {CATEGORY}, defective images score {scores[labels].mean():.1f} on average and normal ones "
    f"{scores[~labels].mean():.1f}: PatchCore should score defects higher; check DATA_ROOT and the images")
assert model.threshold is not None and all(p.anomaly_map.shape == (224, 224) for p in preds)

# %% [markdown]
# The model card: sizes, threshold and timings.

# %%
card = model.summary()
display(Markdown(markdown_table([{k: card[k] for k in
    ["backbone", "n_train", "n_patches", "memory_bank_size", "memory_bank_mb", "threshold", "fit_seconds"]}])))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The map of this course
#
# | notebook | the idea | the paper |
# |---|---|---|
# | **01 patch features** | a pretrained CNN's mid-level feature maps, locally aggregated, one vector per patch | Sec. 3.1 |
# | **02 memory bank and coreset** | store every normal patch; keep a greedy k-center coreset | Sec. 3.2, Alg. 1 |
# | **03 kNN scoring and heatmaps** | distance to the nearest normal patch; Eq. 7; explain by example | Sec. 3.3 |
# | **04 evaluation** | AUROC, pixel AUROC, PRO/AUPRO, F1-max, a threshold from normal images | Sec. 4 |
# | **05 experiments** | ablations: coreset size, sampling, backbone, image size, neighbourhood (mean or unfold), few-shot | Sec. 4.4-4.5 |
# | **06 your own data** | fit on your folder, save, use the CLI and the demo; GPU notes | |
#
# Reference: Roth, Pemula, Zepeda, Schölkopf, Brox, Gehler: *Towards Total Recall in Industrial Anomaly Detection*, CVPR 2022 ([arXiv:2106.08265](https://arxiv.org/abs/2106.08265)).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - `PatchCore().fit(good_images)` then `.predict(images)`: a score, a verdict and a heatmap per image.
# - Nothing is trained: a frozen ImageNet CNN supplies features, and the memory bank *is* the model.
# - Defects score high because their patches are far from every normal patch.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Write your answer in the cell under each question, then run the check below it: it prints
# "correct" or a hint.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 1. How many defects are caught?
#
# What fraction of the *defective* test images does the model flag as anomalous? Set `caught` to a number
# between 0 and 1. *Hint:* `preds[i].verdict` and `labels[i]` (True = defective) belong to `cat.test[i]`.

# %% tags=["exercise"]
caught = ...  # your code: a fraction between 0 and 1

# %% tags=["solution"]
caught = np.mean([p.verdict == "anomalous" for p, bad in zip(preds, labels) if bad])

# %% tags=["check"]
checks.check_number(caught, (scores[labels] > model.threshold).mean(), rel=1e-6, what="`caught`",
                    hint="count the defective images flagged 'anomalous', divided by the number of defective images.")

# %% [markdown] tags=["solution"]
# *Answer.* The fraction printed above. The misses are mostly the pale stains (the overview figure shows
# them with black titles): their patches resemble normal variation of the texture.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2. A training image
#
# Predict the first training image, `cat.train[0]`, and set `train_score` to its **normalised** score.
# Is it below 1? *Hint:* `model.predict([...])` takes paths; `.normalised_score` of its first result.

# %% tags=["exercise"]
train_score = ...  # your code

# %% tags=["solution"]
train_score = model.predict([cat.train[0]])[0].normalised_score

# %% tags=["check"]
checks.check_number(train_score, model.predict([cat.train[0]])[0].score / model.threshold, rel=1e-4,
                    what="`train_score`", hint="use the normalised score (score / threshold) of cat.train[0].")

# %% [markdown] tags=["solution"]
# *Answer.* Well below 1: the image's own patches are in the memory bank, or close to a coreset patch
# (within the covering radius, notebook 02), so each patch finds a near-identical normal match.
