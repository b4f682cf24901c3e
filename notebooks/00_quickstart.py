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
# - the problem: one-class (cold-start) anomaly detection, on objects and on textures
# - how to fit PatchCore on a folder of defect-free images and predict new ones
# - what a prediction holds: an image score, a verdict against a threshold, a heatmap
# - which notebook explains which step of the paper
#
#
# Everything runs on a laptop CPU with the built-in data (real textures with generated defects,
# written once to a cache folder). To use MVTec AD instead, give its folder and a category to
# `teaching.notebook_setup` in the setup cell, or set the environment variables
# `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`.
#
# **Prerequisites**: none: Python, NumPy, and a first idea of what a CNN is (a stack of convolutions that turns an image into feature maps).
#
# **Time**: about 30 minutes to read it, run it and do the exercises.

# %% [markdown]
# PatchCore (Roth et al., CVPR 2022) never sees a defect while it learns. It stores what normal
# *patches* of the training images look like (as features of a pretrained CNN) in a **memory bank**,
# shrinks that bank with a **coreset**, and scores a new image by how far its most unusual patch is from
# everything in the bank.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from patchcore_core import PatchCore, teaching
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
# ## The problem: find defects you have never seen
#
# On a production line almost every part is good. Defects are rare, and they come in forms nobody can list
# in advance: a new scratch, a new stain, a part that was never seen broken that way. So a detector cannot
# be trained on examples of every defect; often, when a new product starts (the **cold start**), there is
# not a single defective example. What there is: images of good parts. This is **one-class** anomaly
# detection:
#
# - **fit** on good images only;
# - for a new image, give an **image score** (is it defective?) and an **anomaly map** (where?).
#
# The test set's labels and masks are used only to measure how well that works, never to fit.
#
# **Objects and textures.** The benchmark of the paper, MVTec AD (Bergmann et al., CVPR 2019), has 15
# categories: 5 **textures** (carpet, grid, leather, tile, wood), where the same pattern fills the image
# and a defect is anything that breaks it, wherever it is; and 10 **objects** (bottle, cable, capsule,
# hazelnut, metal nut, pill, screw, toothbrush, transistor, zipper), one item per image, roughly in place,
# where a defect may also be a missing or misplaced part. PatchCore treats both alike: it compares small
# patches with normal patches. (The built-in data are three textures; `hazelnut_toy` in the real sets is
# an object. Notebook 10 shows what a patch view cannot see.)
#
# Here is the data, before any model: a few good test images, and at most two of each defect type with
# the ground-truth mask drawn as a green contour.

# %% slideshow={"slide_type": "subslide"}
kinds = {k: sum(t.defect == k for t in cat.test) for k in ["good"] + cat.defects}
display(Markdown(markdown_table([{"split": "train (good only)", "images": len(cat.train)}] +
                                [{"split": f"test: {k}", "images": n} for k, n in kinds.items()])))
shown, ncols = teaching.problem.overview_items(cat, per_defect=2)
fig = teaching.problem.plot_overview(shown, ncols, title=f"'{CATEGORY}' as it is on disk: good (blue) and defective (red), ground truth in green")
plt.show()
assert all(t.mask_path is None for t in shown if not t.is_anomalous), "good images have no mask"
assert sum(t.is_anomalous for t in shown) <= 2 * len(cat.defects), "at most two per defect type"

# %% [markdown]
# Look at how small and faint some defects are against the normal variation of the good images: that
# variation is what the model has to learn, from good images alone.
#
# ## Fit and predict
#
# These are the ten lines. `fit` learns from good images only; `predict` returns one `Prediction` per image.

# %% tags=["show-code"]
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
index = [cat.test.index(t) for t in shown]                 # the images shown above
fig = teaching.evaluation_plots.plot_predictions(model, [test_paths[i] for i in index], [preds[i] for i in index],
                                           titles=[cat.test[i].defect for i in index], ncols=ncols,
                                           masks=[cat.load_mask(cat.test[i], model.preprocess) for i in index])
fig.suptitle(f"PatchCore on '{CATEGORY}': heatmaps and scores (red title = flagged anomalous; ground truth in green)", fontsize=14)
plt.show()

# %% [markdown]
# The heatmap lights up where the defects are, although the model never saw one. Look at the good images too: some may sit just above 1.0x the threshold. The threshold is the highest score of a few held-out good training images (the next cell prints how many), so it can be tight; notebook 04 shows how it is set and what it costs. A notebook that runs is also a test: the cells below check the key results.

# %% [markdown] tags=["notes"]
# *Teacher's notes.* Say it twice: the model never saw a defect. **Demo moment (5 min):** `make demo`, Inspect tab, a defective example; click the defect, then normal texture, and show the nearest normal patch. Ask: *where does the threshold come from, if no defect was ever seen?* (Held-out good images: notebook 04.)

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
# | **09 baselines** | SPADE and a PaDiM-style Gaussian on the same features, against PatchCore | Sec. 4.2, Table 1-2 |
# | **10 limits** | a logical anomaly made only of normal patches: what PatchCore cannot see | |
#
# Reference: Roth, Pemula, Zepeda, Schölkopf, Brox, Gehler: *Towards Total Recall in Industrial Anomaly Detection*, CVPR 2022 ([arXiv:2106.08265](https://arxiv.org/abs/2106.08265)).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - The problem is one-class: fit on good images only (a cold start has no defects to learn from), then score and locate anything unlike them, on textures and on objects.
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
exercises.check_exercise("00.1", caught, preds, labels)

# %% [markdown] tags=["solution"]
# *Answer.* The fraction the check computes, `(scores[labels] > model.threshold).mean()`. Which types are
# missed? `teaching.evaluation_plots.per_defect_table(...)` (notebook 04) prints the share flagged per defect
# type; a missed defect's patches resemble the normal variation of the good images.

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
exercises.check_exercise("00.2", train_score, model, cat.train[0])

# %% [markdown] tags=["solution"]
# *Answer.* Below 1 as a rule (well below on the built-in data): the image's own patches are in the memory bank, or close to a coreset patch
# (within the covering radius, notebook 02), so each patch finds a near-identical normal match.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 3. Quiz: where the threshold comes from
#
# Where does the threshold come from, if PatchCore never saw a defect? Set `quiz_3` to one letter; the check explains the option you chose.
#
# - **a.** The score that best separates the good and the defective test images.
# - **b.** The highest score of a few good training images, each scored against a memory bank built without it.
# - **c.** Always 1.0: an image is anomalous when its score is above 1.
# - **d.** It is learned by training the backbone on the good images.

# %% tags=["exercise"]
quiz_3 = ...  # one letter: "a", "b", "c" or "d"

# %% tags=["solution"]
quiz_3 = "b"

# %% tags=["check"]
teaching.quiz.check(quiz_3, "00.3", what="`quiz_3`")

# %% [markdown] tags=["solution"]
# *Answer.* **b.** The cell under the heatmaps prints it. The held-out good images show how high a normal image's score goes; a score above the highest of them is called anomalous, so `normalised_score = score / threshold` above 1 means anomalous.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Further reading
#
# - P. Bergmann, M. Fauser, D. Sattlegger, C. Steger. *MVTec AD: A Comprehensive Real-World Dataset for Unsupervised Anomaly Detection*. CVPR 2019, pp. 9592-9600. [doi:10.1109/CVPR.2019.00982](https://doi.org/10.1109/CVPR.2019.00982). The benchmark and its textures and objects.
# - K. Roth, L. Pemula, J. Zepeda, B. Schölkopf, T. Brox, P. Gehler. *Towards Total Recall in Industrial Anomaly Detection*. CVPR 2022, pp. 14318-14328. [arXiv:2106.08265](https://arxiv.org/abs/2106.08265). The paper this course follows; sections 3.1-3.3 are notebooks 01-03.
#
# **Next**: notebook **01 Patch features**: how a pretrained CNN turns every patch of an image into a vector.
