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
# written once to a cache folder). To use MVTec AD instead, give its folder and a category to
# `teaching.notebook_setup` in the setup cell, or set the environment variables
# `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`.
#
# **Prerequisites**: notebooks 00 (the threshold) and 03 (image scores and anomaly maps).
#
# **Time**: about 45 minutes to read it, run it and do the exercises.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from patchcore_core import teaching
from patchcore_core.data.builtin import builtin_root
from patchcore_core.evaluation.category import evaluate_category
from patchcore_core.evaluation.metrics import aupro, f1_max, image_auroc, image_roc, pixel_auroc, pro_curve
from patchcore_core.teaching import exercises
from patchcore_core.util.tables import markdown_table
from patchcore_core.util.viz import overlay_heatmap

# Built-in data unless PATCHCORE_DATA_ROOT and PATCHCORE_CATEGORY say otherwise. For MVTec AD:
# teaching.notebook_setup("~/mvtec_anomaly_detection", "bottle")  ("screw", "carpet", ...)
setup = teaching.notebook_setup(default_category="brick")  # also seeds torch and numpy, styles the plots
SEED = setup.seed
DEVICE = setup.device  # PATCHCORE_DEVICE, else "auto": a GPU when there is one, else the CPU
FAST = setup.fast      # smaller sweeps when run by CI
DATA_ROOT, CATEGORY, cat = setup.data_root, setup.category, setup.cat
print(setup)

# %% [markdown]
# `evaluate_category` fits on `train/good`, scores every test image and computes all metrics at once; below we recompute each from the raw `labels`, `scores`, `masks` and `maps` it returns.

# %% tags=["show-code"]
res = evaluate_category(DATA_ROOT, CATEGORY, device=DEVICE, progress=False)
labels, scores, masks, maps, model = res.labels, res.scores, res.masks, res.maps, res.model
display(Markdown(markdown_table([{k: res.metrics[k] for k in
    ["image_auroc", "pixel_auroc", "aupro", "f1_max", "n_train", "n_test", "fit_seconds"]}])))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Image ROC and AUROC
#
# Sweep a threshold over the image scores: each threshold flags some defective images (true positive rate)
# and some good ones (false positive rate). The **ROC curve** traces both; the area under it (**AUROC**) is
# the probability that a random defective image scores above a random good one. 1.0 = perfect ranking, 0.5
# = chance. It needs no threshold, which is why papers report it.

# %% slideshow={"slide_type": "subslide"}
fpr, tpr, _ = image_roc(labels, scores)
auc = image_auroc(labels, scores)
fig, ax = plt.subplots(figsize=(5.5, 5))
ax.plot(fpr, tpr, lw=2.5, label=f"PatchCore (AUROC {auc:.3f})"); ax.plot([0, 1], [0, 1], "k--", label="chance")
ax.set_xlabel("false positive rate (good images flagged)"); ax.set_ylabel("true positive rate (defects found)")
ax.set_title(f"image ROC, {CATEGORY}"); ax.legend(loc="lower right")
plt.show()
assert abs(auc - res.metrics["image_auroc"]) < 1e-9, "the same AUROC as evaluate_category's"
assert auc > 0.5, f"on {CATEGORY}, image AUROC {auc:.3f} is no better than chance: check DATA_ROOT and the labels"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Pixel AUROC
#
# The same for every pixel of every anomaly map against the ground-truth masks: does the map rank defective
# pixels above normal ones? Normal pixels vastly outnumber defective ones, and large defects contribute
# most of the defective pixels, so pixel AUROC is dominated by big defects.

# %% slideshow={"slide_type": "subslide"}
pix = pixel_auroc(masks, maps)
fig, ax = plt.subplots(figsize=(8, 4.5))
ax.hist(maps[~masks].ravel(), bins=80, density=True, alpha=0.6, label=f"normal pixels ({(~masks).sum():,})")
ax.hist(maps[masks].ravel(), bins=80, density=True, alpha=0.6, color="crimson", label=f"defective pixels ({masks.sum():,})")
ax.set_xlabel("anomaly map value"); ax.set_ylabel("density"); ax.legend()
ax.set_title(f"pixel scores, pixel AUROC {pix:.3f}")
plt.show()
assert maps[masks].mean() > maps[~masks].mean(), (
    f"on {CATEGORY}, defective pixels should score higher on average than normal ones "
    f"({maps[masks].mean():.2f} against {maps[~masks].mean():.2f}); check the masks")

# %% [markdown]
# **Compare like with like.** The masks must be brought to the model's 224 px, and how that is done moves
# the figures. The official PatchCore code resizes them bilinearly and counts only the pixels wholly inside
# a defect (`evaluate_category(..., mask_protocol="strict")`). That leaves out the defect borders, where
# maps are least sure, and raises pixel AUROC (by 0.006 on MVTec grid). The built-in images are already
# 256 px, so both ways agree here. Published figures compare only when measured alike (README, *Results*).

# %% [markdown] tags=["notes"]
# *Teacher's notes.* Ask: *which number would you report to a plant manager?* Pixel AUROC is dominated by large defects; PRO weighs each defect region alike.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The PRO curve and AUPRO
#
# The **per-region overlap** (Bergmann et al.) gives each connected defect region the same weight: at a
# threshold, each region's overlap is the share of its pixels above the threshold, and PRO is the mean
# over regions. Plotted against the false positive rate of normal pixels, integrated up to 30% FPR and
# divided by 0.3, it gives **AUPRO** (1 = perfect). A small scratch counts as much as a large hole.

# %% slideshow={"slide_type": "subslide"}
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

# %% [markdown] slideshow={"slide_type": "slide"}
# ## F1-max and a threshold from normal images only
#
# AUROC ignores the threshold, but a factory needs one. **F1-max** is the best F1 over all thresholds:
# an upper bound, because it picks the threshold *using the defects*. PatchCore cannot do that in
# practice, as it has no defects. The package instead holds out some good training images, scores them
# against a bank of the others, and takes the highest score as threshold (`patchcore_core.pipeline.calibration`).

# %%
thr = model.threshold
pred = scores > thr
tp, fp = int((pred & (labels == 1)).sum()), int((pred & (labels == 0)).sum())
fn, tn = int((~pred & (labels == 1)).sum()), int((~pred & (labels == 0)).sum())
f1_thr = 2 * tp / max(1, 2 * tp + fp + fn)
print(f"threshold {thr:.2f} from {len(model.calibration_scores)} held-out good images")
print(f"F1-max {f1_max(labels, scores):.3f} (the errors and F1 at this threshold: exercises 1 and 2)")
assert thr == max(model.calibration_scores) and f1_thr <= f1_max(labels, scores) + 1e-9

# %% slideshow={"slide_type": "subslide"}
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

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Per-defect-type breakdown

# %%
table = teaching.evaluation_plots.per_defect_table(res.defects, scores, thr)
display(Markdown(markdown_table(table)))
good_row = next(r for r in table if r["defect"] == "good")
below = [r["defect"] for r in table if r["defect"] != "good" and r["mean score"] <= good_row["mean score"]]
print("defect types scoring no higher than good images on average:", ", ".join(below) or "none")
if DATA_ROOT == builtin_root():  # on the built-in data every defect type is visible; real data may differ
    assert not below, f"on the built-in {CATEGORY}, every defect type should score above good images: {below}"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The worst failures
#
# Which images does the threshold get wrong, or nearly wrong? `margin` is how far an image is on the wrong
# side (positive = misclassified). Looking at them is the fastest way to learn what a model does not know.

# %% slideshow={"slide_type": "subslide"}
worst = teaching.evaluation_plots.worst_failures(labels, scores, thr, n=4)
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

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - Image AUROC ranks images, pixel AUROC ranks pixels, AUPRO weighs every defect region equally (up to 30% FPR).
# - F1-max picks its threshold with hindsight; PatchCore's threshold comes from held-out normal images.
# - Per-defect tables and failure galleries show *what* a model misses, which a single number hides.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Write your answer in the cell under each question, then run the check below it: it prints
# "correct" or a hint. A function you are asked to write is checked with the package's own
# implementation switched off: build it from numpy, torch or scipy, not by calling the function it rewrites.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 1. Errors at the calibrated threshold
#
# With the threshold `thr` (from held-out good images), count the false positives (good images flagged)
# and false negatives (defective images missed) on the test set. Set `fp` and `fn`.
# *Hint:* `labels` (1 = defective) and `scores` are arrays over the test images; flagged means `score > thr`.

# %% tags=["exercise"]
fp = ...  # your code
fn = ...  # your code

# %% tags=["solution"]
flagged = scores > thr
fp = int(np.sum(flagged & (labels == 0)))
fn = int(np.sum(~flagged & (labels == 1)))

# %% tags=["check"]
exercises.check_exercise("04.1", fp, fn, labels, scores, thr)

# %% [markdown] tags=["solution"]
# *Answer.* The threshold is the highest held-out good score, so it is strict about false alarms on images
# like the training ones; the misses are the defects that score below it (see the failure gallery).

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2. F1 at the threshold against F1-max
#
# F1-max picks the best threshold *with hindsight*. Compute the F1 score of the calibrated threshold
# `thr` and set `f1_at_thr`. Is it below `res.metrics["f1_max"]`? *Hint:* `sklearn.metrics.f1_score`.

# %% tags=["exercise"]
f1_at_thr = ...  # your code

# %% tags=["solution"]
from sklearn.metrics import f1_score

f1_at_thr = f1_score(labels, scores > thr)

# %% tags=["check"]
exercises.check_exercise("04.2", f1_at_thr, labels, scores, thr)

# %% [markdown] tags=["solution"]
# *Answer.* Never above F1-max, which is the best F1 over every threshold; the gap is what choosing the
# threshold from normal images alone costs on this test set.

# %% [markdown]
# ### 3. PRO at one threshold, yourself
#
# Write `my_pro_at(masks, maps, t)` returning `[fpr, pro]` for one threshold `t`: a pixel is flagged when
# its map value is `>= t`; `fpr` is the share of normal pixels (mask False) flagged; `pro` is the mean, over
# every connected defect region of every image (8-connectivity), of the share of that region's pixels
# flagged. The check compares it with the point of `pro_curve` at the same threshold.
# *Hint:* `scipy.ndimage.label(mask, structure=np.ones((3, 3)))` numbers the regions of one image.

# %% tags=["exercise"]
def my_pro_at(masks, maps, t):
    raise NotImplementedError  # your code: [fpr, pro]

# %% tags=["solution"]
from scipy import ndimage


def my_pro_at(masks, maps, t):
    flagged = maps >= t
    overlaps = []
    for mask, flag in zip(masks, flagged):
        regions, n = ndimage.label(mask, structure=np.ones((3, 3)))
        overlaps += [flag[regions == r].mean() for r in range(1, n + 1)]
    return np.array([flagged[~masks].mean(), np.mean(overlaps)])

# %% tags=["check"]
exercises.check_exercise("04.3", my_pro_at, masks, maps, SEED)

# %% [markdown] tags=["solution"]
# *Answer.* Averaging over regions, not pixels, is what makes PRO fair to small defects: a 20-pixel
# scratch weighs as much as a 2,000-pixel stain. The curve sweeps `t` from high to low; AUPRO is its area
# up to 30% FPR.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 4. Quiz: which metric sees a small missed defect
#
# A test image has a large stain (about 2,000 defective pixels) that its anomaly map finds, and a small scratch (about 20 pixels) that the map misses. Which metric does the missed scratch pull down most? Set `quiz_4` to one letter; the check explains the option you chose.
#
# - **a.** Pixel AUROC, because it counts every defective pixel.
# - **b.** Image AUROC.
# - **c.** AUPRO, because each defect region weighs the same, whatever its size.
# - **d.** F1-max, because the scratch is a missed defect.

# %% tags=["exercise"]
quiz_4 = ...  # one letter: "a", "b", "c" or "d"

# %% tags=["solution"]
quiz_4 = "c"

# %% tags=["check"]
teaching.quiz.check(quiz_4, "04.4", what="`quiz_4`")

# %% [markdown] tags=["solution"]
# *Answer.* **c.** PRO averages the overlap over connected defect regions, each counted once, so the missed 20-pixel scratch costs as much as a missed 2,000-pixel stain would. That is what makes PRO fair to small defects.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Further reading
#
# - P. Bergmann, M. Fauser, D. Sattlegger, C. Steger. *MVTec AD: A Comprehensive Real-World Dataset for Unsupervised Anomaly Detection*. CVPR 2019, pp. 9592-9600. [doi:10.1109/CVPR.2019.00982](https://doi.org/10.1109/CVPR.2019.00982). Image and pixel AUROC on the benchmark.
# - P. Bergmann, M. Fauser, D. Sattlegger, C. Steger. *Uninformed Students: Student-Teacher Anomaly Detection with Discriminative Latent Embeddings*. CVPR 2020, pp. 4183-4192 (the PRO metric). [arXiv:1911.02357](https://arxiv.org/abs/1911.02357). The per-region overlap (PRO).
# - P. Bergmann, K. Batzner, M. Fauser, D. Sattlegger, C. Steger. *The MVTec Anomaly Detection Dataset: A Comprehensive Real-World Dataset for Unsupervised Anomaly Detection*. IJCV 129(4):1038-1059, 2021 (AUPRO up to 30% FPR). [doi:10.1007/s11263-020-01400-4](https://doi.org/10.1007/s11263-020-01400-4). AUPRO up to 30% false positive rate, the protocol used here.
#
# **Next**: notebook **05 Experiments**: what each design choice buys, in these metrics.
