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

# %% [markdown]
# # 04 Evaluation
#
# > How good is a detector that never saw a defect? The metrics of MVTec AD, one by one.
#
# **You will learn**
#
# - image ROC and AUROC: ranking defective images above good ones
# - pixel AUROC, and the PRO curve with AUPRO up to 30% false positive rate
# - F1-max, and a threshold chosen from normal images only
# - a per-defect-type breakdown and a gallery of the worst failures
#
#
# Everything runs on a laptop CPU with the built-in data (real textures with generated defects,
# written once to a cache folder). To use MVTec AD instead, set `DATA_ROOT` and `CATEGORY` in
# the setup cell, or the environment variables `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from patchcore_core import explore
from patchcore_core.builtin_data import builtin_root
from patchcore_core.data import MVTecCategory
from patchcore_core.evaluation import evaluate_category
from patchcore_core.metrics import aupro, f1_max, image_auroc, image_roc, pixel_auroc, pro_curve
from patchcore_core.viz import overlay_heatmap

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

# %% [markdown]
# `evaluate_category` fits on `train/good`, scores every test image and computes all metrics at once; below we recompute each from the raw `labels`, `scores`, `masks` and `maps` it returns.

# %%
res = evaluate_category(DATA_ROOT, CATEGORY, device=DEVICE, progress=False)
labels, scores, masks, maps, model = res.labels, res.scores, res.masks, res.maps, res.model
display(Markdown(explore.markdown_table([{k: res.metrics[k] for k in
    ["image_auroc", "pixel_auroc", "aupro", "f1_max", "n_train", "n_test", "fit_seconds"]}])))

# %% [markdown]
# ## Image ROC and AUROC
#
# Sweep a threshold over the image scores: each threshold flags some defective images (true positive rate)
# and some good ones (false positive rate). The **ROC curve** traces both; the area under it (**AUROC**) is
# the probability that a random defective image scores above a random good one. 1.0 = perfect ranking, 0.5
# = chance. It needs no threshold, which is why papers report it.

# %%
fpr, tpr, _ = image_roc(labels, scores)
auc = image_auroc(labels, scores)
fig, ax = plt.subplots(figsize=(5.5, 5))
ax.plot(fpr, tpr, lw=2.5, label=f"PatchCore (AUROC {auc:.3f})"); ax.plot([0, 1], [0, 1], "k--", label="chance")
ax.set_xlabel("false positive rate (good images flagged)"); ax.set_ylabel("true positive rate (defects found)")
ax.set_title(f"image ROC, {CATEGORY}"); ax.legend(loc="lower right")
plt.show()
assert auc > 0.5 and abs(auc - res.metrics["image_auroc"]) < 1e-9

# %% [markdown]
# ## Pixel AUROC
#
# The same for every pixel of every anomaly map against the ground-truth masks: does the map rank defective
# pixels above normal ones? Normal pixels vastly outnumber defective ones, and large defects contribute
# most of the defective pixels, so pixel AUROC is dominated by big defects.

# %%
pix = pixel_auroc(masks, maps)
fig, ax = plt.subplots(figsize=(8, 4.5))
ax.hist(maps[~masks].ravel(), bins=80, density=True, alpha=0.6, label=f"normal pixels ({(~masks).sum():,})")
ax.hist(maps[masks].ravel(), bins=80, density=True, alpha=0.6, color="crimson", label=f"defective pixels ({masks.sum():,})")
ax.set_xlabel("anomaly map value"); ax.set_ylabel("density"); ax.legend()
ax.set_title(f"pixel scores, pixel AUROC {pix:.3f}")
plt.show()
assert maps[masks].mean() > maps[~masks].mean()

# %% [markdown]
# **Compare like with like.** The masks must be brought to the model's 224 px, and how that is done moves
# the figures. The official PatchCore code resizes them bilinearly and counts only the pixels wholly inside
# a defect (`evaluate_category(..., mask_protocol="strict")`). That leaves out the defect borders, where
# maps are least sure, and raises pixel AUROC (by 0.006 on MVTec grid). The built-in images are already
# 256 px, so both ways agree here. Published figures compare only when measured alike (README, *Results*).

# %% [markdown]
# ## The PRO curve and AUPRO
#
# The **per-region overlap** (Bergmann et al.) gives each connected defect region the same weight: at a
# threshold, each region's overlap is the share of its pixels above the threshold, and PRO is the mean
# over regions. Plotted against the false positive rate of normal pixels, integrated up to 30% FPR and
# divided by 0.3, it gives **AUPRO** (1 = perfect). A small scratch counts as much as a large hole.

# %%
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

# %% [markdown]
# ## F1-max and a threshold from normal images only
#
# AUROC ignores the threshold, but a factory needs one. **F1-max** is the best F1 over all thresholds:
# an upper bound, because it picks the threshold *using the defects*. PatchCore cannot do that in
# practice, as it has no defects. The package instead holds out some good training images, scores them
# against a bank of the others, and takes the highest score as threshold (`patchcore_core.calibration`).

# %%
thr = model.threshold
pred = scores > thr
tp, fp = int((pred & (labels == 1)).sum()), int((pred & (labels == 0)).sum())
fn, tn = int((~pred & (labels == 1)).sum()), int((~pred & (labels == 0)).sum())
f1_thr = 2 * tp / max(1, 2 * tp + fp + fn)
print(f"threshold {thr:.2f} from {len(model.calibration_scores)} held-out good images")
print(f"confusion: TP {tp}  FN {fn}  FP {fp}  TN {tn};  F1 at this threshold {f1_thr:.3f}, F1-max {f1_max(labels, scores):.3f}")
assert thr == max(model.calibration_scores) and f1_thr <= f1_max(labels, scores) + 1e-9

# %%
kinds = sorted(set(res.defects), key=lambda k: (k != "good", k))
fig, ax = plt.subplots(figsize=(9, 4.5))
for i, k in enumerate(kinds):
    s = scores[[d == k for d in res.defects]]
    ax.scatter(np.full(len(s), i) + np.random.default_rng(i).uniform(-0.15, 0.15, len(s)), s, s=60,
               c="tab:blue" if k == "good" else "crimson")
ax.scatter(np.full(len(model.calibration_scores), -1), model.calibration_scores, s=60, c="tab:green")
ax.axhline(thr, color="k", ls="--", label=f"threshold {thr:.1f} (max of held-out good)")
ax.set_xticks(range(-1, len(kinds)), ["held-out\ngood (train)"] + kinds)
ax.set_xlabel("test images by type"); ax.set_ylabel("image score"); ax.legend(loc="upper left")
ax.set_title("scores by defect type against the calibrated threshold")
plt.show()

# %% [markdown]
# ## Per-defect-type breakdown

# %%
table = explore.per_defect_table(res.defects, scores, thr)
display(Markdown(explore.markdown_table(table)))
good_row = next(r for r in table if r["defect"] == "good")
assert all(r["mean score"] > good_row["mean score"] for r in table if r["defect"] != "good")

# %% [markdown]
# ## The worst failures
#
# Which images does the threshold get wrong, or nearly wrong? `margin` is how far an image is on the wrong
# side (positive = misclassified). Looking at them is the fastest way to learn what a model does not know.

# %%
worst = explore.worst_failures(labels, scores, thr, n=4)
fig, axes = plt.subplots(1, len(worst), figsize=(4.4 * len(worst), 4.8))
for ax, w in zip(axes, worst):
    i = w["index"]
    ax.imshow(overlay_heatmap(model.display(res.paths[i]), maps[i], 0.5, 0, float(maps.max())))
    if masks[i].any():
        ax.contour(masks[i], colors="lime", linewidths=1)
    ax.set_title(f"{w['kind']}: {res.defects[i]}\nscore {w['score']:.1f} (margin {w['margin']:+.1f})")
    ax.set_xlabel("x"); ax.set_ylabel("y")
plt.suptitle("closest calls and errors (green: ground truth)"); plt.tight_layout(); plt.show()
assert worst[0]["margin"] >= worst[-1]["margin"]

# %% [markdown]
# ## Summary
#
# - Image AUROC ranks images, pixel AUROC ranks pixels, AUPRO weighs every defect region equally (up to 30% FPR).
# - F1-max picks its threshold with hindsight; PatchCore's threshold comes from held-out normal images.
# - Per-defect tables and failure galleries show *what* a model misses, which a single number hides.

# %% [markdown]
# ## Exercises
#
# 1. Compute AUPRO up to 5% FPR instead of 30%. Why might a factory care?
#    *Hint:* `aupro(masks, maps, 0.05)`.
# 2. How does the calibrated threshold change with `calibration_fraction=0.3`?
#    *Hint:* `PatchCore(calibration_fraction=0.3).fit(cat.train)` and compare `threshold`.
# 3. Replace the threshold by the 99th percentile of held-out scores plus a margin. What are the trade-offs?
#    *Hint:* Compare false positive and false negative counts on the test set.
#
# <details>
# <summary>Solutions (click to open)</summary>
#
# **1.** Lower, as only the strictest thresholds count. A line that cannot afford false alarms operates there.
#
# **2.** More held-out images usually raise the maximum (a higher threshold, fewer false alarms, more misses) but build the calibration bank from fewer images, which also raises held-out scores.
#
# **3.** With only a few held-out images the max is already a high quantile; percentile rules need more normal images to be stable. A margin trades misses for fewer false alarms.
#
# </details>
