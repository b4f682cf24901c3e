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
# # 06 Your own data
#
# > Bring a folder of good images: fit, inspect, save, and use the model from the CLI and the demo.
#
# **You will learn**
#
# - how to fit PatchCore on your own folder of good images
# - how to check the result with a few defective images
# - how to save and reload a model, and use it from the `patchcore` CLI and the web demo
# - what to change on a GPU, and what to watch out for with real data
#
#
# Everything runs on a laptop CPU with the built-in data (real textures with generated defects,
# written once to a cache folder). To use MVTec AD instead, give its folder and a category to
# `teaching.notebook_setup` in the setup cell, or set the environment variables
# `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`.
#
# **Prerequisites**: notebooks 00 (fit and predict) and 04 (the threshold and its errors).
#
# **Time**: about 30 minutes to read it, run it and do the exercises.

# %% slideshow={"slide_type": "skip"}
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

import patchcore_core
from patchcore_core import PatchCore, teaching
from patchcore_core.data.builtin import default_cache_dir
from patchcore_core.data.mvtec import image_folder
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
# ## Your images
#
# Put 20-200 **good** images in one folder, and (optionally) test images in another. Set `MY_GOOD` and
# `MY_TEST` (or the environment variables `PATCHCORE_OWN_GOOD` and `PATCHCORE_OWN_TEST`). File names do
# not matter. If the test folder holds a `good/` sub-folder and one sub-folder per kind of defect (the
# MVTec layout), the notebook knows which images are defective and checks the result; otherwise it shows
# scores and heatmaps only. Without a test folder, a few good images are held back from training to test
# with: that shows false alarms, not detections. Without `MY_GOOD`, this notebook builds both folders from
# the data of the setup cell.

# %%
WORK = default_cache_dir() / "own_data_demo"
MY_GOOD = os.environ.get("PATCHCORE_OWN_GOOD")
MY_TEST = os.environ.get("PATCHCORE_OWN_TEST")
STAND_IN = not MY_GOOD  # folders built from the setup cell's data, whose defects we know
if STAND_IN:
    shutil.rmtree(WORK, ignore_errors=True)
    folders = teaching.own_data.sample_own_data(WORK, DATA_ROOT, CATEGORY)
    MY_GOOD, MY_TEST = folders["good"], folders["test"]
good_images = image_folder(MY_GOOD)
if MY_TEST:
    train_images, test = good_images, teaching.own_data.read_test_folder(MY_TEST)
else:
    train_images, test = teaching.own_data.hold_back(good_images)
test_images, is_bad = test.paths, test.is_bad
print(f"{len(good_images)} good images in {MY_GOOD}, {len(train_images)} of them for training")
print(f"{len(test_images)} test images: {test.source}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Fit and inspect
#
# The model card tells you what was learned, how big it is and how long it took.

# %% tags=["show-code"]
model = PatchCore(device=DEVICE).fit(train_images)
card = model.summary()
display(Markdown(markdown_table([{k: v for k, v in card.items() if not isinstance(v, list)}])))
assert model.threshold is not None

# %% slideshow={"slide_type": "subslide"}
preds = model.predict(test_images) if test_images else []
if preds:
    names = [p.stem[:18] for p in test_images]
    fig = teaching.evaluation_plots.plot_predictions(model, test_images, preds, titles=names, ncols=7)
    fig.suptitle("your test images: heatmaps, scores (x threshold) and verdicts", fontsize=14)
    plt.show()
else:
    print("no test images to score: set MY_TEST (or PATCHCORE_OWN_TEST) to a folder of test images")

# %% [markdown]
# When the test folder says which images are defective, we can count what the threshold catches; otherwise,
# look at the gallery.

# %% [markdown] tags=["notes"]
# *Teacher's notes.* **Demo moment:** the demo's *Build your own* tab with 10-20 photos the class takes of a desk or a fabric; then a photo under other light. The model flags anything unlike its training images.

# %%
norm = np.array([p.normalised_score for p in preds])
if is_bad is None:
    print(f"no labels: {int((norm > 1).sum())} of {len(norm)} test images flagged; judge them in the gallery")
else:
    print(f"flagged: {int((norm[is_bad] > 1).sum())}/{is_bad.sum()} defective, "
          f"{int((norm[~is_bad] > 1).sum())}/{(~is_bad).sum()} good (false alarms)")
    if is_bad.any() and (~is_bad).any():
        mean_bad, mean_good = norm[is_bad].mean(), norm[~is_bad].mean()
        print(f"mean score: defective {mean_bad:.2f}, good {mean_good:.2f} x threshold")
        if STAND_IN:  # a real category's defects score higher on average; your own data may not
            assert mean_bad > mean_good, "defective images should score higher than good ones on average"
    else:
        print("only one kind of image in the test set: no comparison of defective and good images")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Save, reload, and use it elsewhere
#
# `save` writes one `.safetensors` file: the memory bank, the threshold and the settings as JSON metadata.
# No pickle, so loading a model file cannot run code. The backbone weights are not in it; they come from
# the backbone's package when the model is loaded.

# %% tags=["show-code"]
model_file = WORK / "model.safetensors"
patchcore_core.save(model, model_file)
loaded = patchcore_core.load(model_file, device=DEVICE)
print(f"{model_file.name}: {model_file.stat().st_size / 2**20:.1f} MB")
again = loaded.predict(test_images[:3]) if test_images else []
assert all(abs(a.score - b.score) < 1e-3 * a.score for a, b in zip(again, preds[:3]))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### From the command line
#
# The same with the `patchcore` command (installed with the package):
#
# ```bash
# patchcore fit --images path/to/good --out model.safetensors
# patchcore predict --model model.safetensors path/to/new/*.png --heatmaps heatmaps/
# patchcore evaluate --data path/to/mvtec --category bottle      # MVTec layout
# ```
#
# We run `predict` on two of our images (skipped if the command is not installed):

# %%
cli = shutil.which("patchcore") or str(Path(sys.executable).with_name("patchcore"))
if Path(cli).exists() and test_images:
    cmd = [cli, "predict", "--model", str(model_file), *map(str, test_images[:2])]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    print("$ patchcore predict --model model.safetensors", *[p.name for p in test_images[:2]])
    print(out.stdout[-2000:] or out.stderr[-2000:])
    assert out.returncode == 0, out.stderr
elif test_images:
    print("the patchcore command is not installed here: pip install -e . (from the repository root)")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The web demo
#
# A small web app to upload an image and see its heatmap, started from the repository root:
#
# ```bash
# python -m demo --model model.safetensors
# ```
#
# It prints a local address to open in the browser.
#
# ## What changes on a GPU
#
# - `PatchCore(device="auto")` (the default) uses CUDA when it is there: feature extraction, the greedy
#   coreset and kNN search (faiss on the GPU when faiss was built with GPU support, else torch) all move.
# - Fitting is dominated by the backbone and the coreset; on a GPU both are 10-100x faster, so the paper's
#   WideResNet-50 and full MVTec training sets become practical (`backbone="wide_resnet50_2"`).
# - Raise `batch_size` (in `PatchCoreConfig`) to fill the GPU; results do not change.
# - A model fitted on a GPU loads on a CPU and vice versa (`patchcore_core.load(file, device="cpu")`).
#
# Measured here:

# %%
print(f"device: {model.device}; CUDA available: {torch.cuda.is_available()}")
per_image = model.stats.get("predict_seconds_per_image")  # set by predict
print(f"fit: {card['fit_seconds']:.1f} s for {card['n_train']} images; "
      + (f"predict: {per_image * 1000:.0f} ms per image" if per_image else "nothing predicted yet"))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Checklist for real data
#
# - **Same setup**: camera, lighting, position and zoom as in production; PatchCore learns *everything* in
#   the good images as normal, including their variations, and flags anything else, including a new lighting.
# - **Enough variety**: all normal variations (several batches, both sides of a tolerance) in the good images.
# - **Alignment**: patches are compared with patches anywhere in the bank, so moderate shifts are fine; large
#   rotations of objects need examples of each pose.
# - **Shape**: square images are resized and centre-cropped like the paper (defects near the border are cut
#   away); elongated images are squashed instead (`crop_mode="auto"` decides; see `model.summary()`).
# - **Small defects**: neighbouring patch features are one stride apart (8 model pixels for the default
#   backbone's first layer), but each one sees a much larger area (its receptive field, notebook 01), so a defect of a few
#   pixels is diluted among normal surroundings; raise `image_size` (the resize follows it) or crop the part
#   of interest if defects are tiny.
# - **Threshold**: it comes from held-out good images; check it on defective samples and adjust
#   `calibration_fraction` or the decision rule (`normalised_score > 1`) for your cost of misses vs false alarms.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - `PatchCore().fit(image_folder("good/"))` is all it takes; test on a few known defects before trusting it.
# - `save`/`load` use one safetensors file (no pickle); the CLI and the demo read the same file.
# - On a GPU the same code runs with `device="auto"`; use the bigger backbone there.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Write your answer in the cell under each question, then run the check below it: it prints
# "correct" or a hint. A function you are asked to write is checked with the package's own
# implementation switched off: build it from numpy, torch or scipy, not by calling the function it rewrites.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 1. Saved and loaded: the same model?
#
# Write `max_score_difference(a, b)`: the largest absolute difference between the scores of two lists of
# predictions of the same images (`a[i].score` against `b[i].score`). Then score the test images with
# `loaded` (the model read back from `model_file`) and set `max_difference` to the largest difference from the
# scores of `preds`. *Hint:* `loaded.predict(test_images)`.

# %% tags=["exercise"]
def max_score_difference(a, b):
    raise NotImplementedError  # your code: one number


max_difference = ...  # your code

# %% tags=["solution"]
def max_score_difference(a, b):
    return max((abs(x.score - y.score) for x, y in zip(a, b)), default=0.0)


max_difference = max_score_difference(loaded.predict(test_images), preds)

# %% tags=["check"]
exercises.check_exercise("06.1", max_score_difference, max_difference, model.threshold)

# %% [markdown] tags=["solution"]
# *Answer.* Zero or a rounding error: the file holds the memory bank, the threshold and the settings, so
# the loaded model scores exactly as the fitted one.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2. Your folder's detection rate
#
# What fraction of the defective images in `test_images` (`is_bad`) gets the verdict "anomalous"? Set
# `detected` (0 when your test set has no defective images, or no labels: `is_bad` is then `None`).

# %% tags=["exercise"]
detected = ...  # your code

# %% tags=["solution"]
bad_verdicts = [p.verdict for p, bad in zip(preds, is_bad if is_bad is not None else []) if bad]
detected = np.mean([v == "anomalous" for v in bad_verdicts]) if bad_verdicts else 0.0  # 0: none to find

# %% tags=["check"]
exercises.check_exercise("06.2", detected, preds, is_bad)

# %% [markdown] tags=["solution"]
# *Answer.* The printed fraction. On your own photographs, expect changes of lighting or position to be
# flagged too: one fixed setup matters more than the number of good images.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 3. Quiz: a new light on the line
#
# Your model was fitted on photos taken in daylight. On the line the light changes to LED lamps, and nearly every good part is flagged. Why, and what fixes it? Set `quiz_3` to one letter; the check explains the option you chose.
#
# - **a.** The threshold is too low: raise it until the good parts pass.
# - **b.** The coreset dropped the patches that would match: raise `coreset_ratio`.
# - **c.** An ImageNet backbone cannot see under LED light: use a bigger backbone.
# - **d.** PatchCore learned the daylight as part of normal: fit again with good images taken under the new light (or add them).

# %% tags=["exercise"]
quiz_3 = ...  # one letter: "a", "b", "c" or "d"

# %% tags=["solution"]
quiz_3 = "d"

# %% tags=["check"]
teaching.quiz.check(quiz_3, "06.3", what="`quiz_3`")

# %% [markdown] tags=["solution"]
# *Answer.* **d.** The checklist's first point. The memory bank holds the good images' patches as they were photographed, lighting included; under a new light every patch is farther from its nearest normal patch. Normal is what the good images show.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Further reading
#
# - P. Bergmann, M. Fauser, D. Sattlegger, C. Steger. *MVTec AD: A Comprehensive Real-World Dataset for Unsupervised Anomaly Detection*. CVPR 2019, pp. 9592-9600. [doi:10.1109/CVPR.2019.00982](https://doi.org/10.1109/CVPR.2019.00982). How a benchmark's images were taken: one setup, good parts only for training.
#
# **Next**: notebook **07 PatchCore at scale**: when the good images number in the thousands.
