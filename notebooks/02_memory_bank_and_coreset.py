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
# # 02 Memory bank and coreset
#
# > Keep every normal patch, then keep only the few that cover all the others.
#
# **You will learn**
#
# - how large the full memory bank is
# - greedy k-center coreset selection, step by step, on a 2-D toy
# - the covering radius, and how it shrinks with the coreset size
# - the minimax objective behind the coreset, and greedy's factor-2 guarantee, checked by brute force
# - why greedy beats random subsampling
# - how much the random projection to 128 dimensions distorts distances
# - where coreset, normal and defective patches lie (UMAP)
#
#
# Everything runs on a laptop CPU with the built-in data (real textures with generated defects,
# written once to a cache folder). To use MVTec AD instead, give its folder and a category to
# `teaching.notebook_setup` in the setup cell, or set the environment variables
# `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`.
#
# **Prerequisites**: notebooks 00 and 01 (patch features: 784 vectors per image).
#
# **Time**: about 55 minutes to read it, run it and do the exercises.

# %% slideshow={"slide_type": "skip"}
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from patchcore_core import PatchCore, teaching
from patchcore_core.teaching import exercises
from patchcore_core.teaching.toy import (
    approximation_ratios,
    greedy_kcenter,
    optimal_kcenter,
    plot_kcenter_step,
    random_radii,
    toy_points,
)
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
# ## How large is the full memory bank?
#
# Every patch of every training image is a candidate:

# %% tags=["show-code"]
model = PatchCore(device=DEVICE).fit(cat.train, progress=False)
ours = teaching.coreset_plots.bank_footprint(len(cat.train), model.grid, model.bank.features.shape[1])
paper = teaching.coreset_plots.bank_footprint(280, (28, 28), 1024)  # ~MVTec category, WideResNet-50, 1024-d
display(Markdown(markdown_table([
    {"bank": f"all patches, {len(cat.train)} images (here)", **ours},
    {"bank": "all patches, 280 MVTec images, 1024-d (paper)", **paper},
    {"bank": "coreset kept by this model (10%)", "patches": len(model.bank),
     "dim": model.bank.features.shape[1], "megabytes": model.bank.nbytes / 2**20}])))
assert len(model.bank) < ours["patches"]

# %% [markdown]
# Every test patch is compared with every bank patch, so time and memory grow with the bank. Most
# normal patches are near-duplicates (brick after brick), so a subset that lies close to all of them
# answers almost the same.
#
# ## Greedy k-center, step by step
#
# Algorithm 1 of the paper: start somewhere, then repeatedly pick the point **farthest from all points
# picked so far**. The **covering radius** is the distance of the worst-covered point to its nearest pick;
# each pick covers that worst point, so the radius never grows. Here on 2-D points, where we can see it
# (the real features have 152 dimensions; the paper also projects them to 128 at random first, which
# keeps distances approximately).

# %% slideshow={"slide_type": "subslide"}
pts = toy_points(400, seed=SEED)
trace = greedy_kcenter(pts, 40)
fig, axes = plt.subplots(1, 4, figsize=(22, 5.6))
for ax, t in zip(axes, [1, 2, 5, 20]):
    plot_kcenter_step(trace, t, ax=ax)
plt.show()
assert np.all(np.diff(trace.radii) <= 0), "the covering radius never grows"


# %% [markdown]
# Move the slider: the red ring is the point that will be picked next (the worst covered). The small cluster at the top right (rare but normal) is covered within the first few picks.

# %% slideshow={"slide_type": "subslide"}
def show_step(step=5):
    fig = plot_kcenter_step(trace, step)
    plt.show()
    return fig

show_step(8)
widgets.interactive(show_step, step=widgets.IntSlider(value=8, min=1, max=len(trace), description="picks"))

# %% slideshow={"slide_type": "subslide"}
counts = np.arange(1, 41)
rand = np.mean([random_radii(pts, counts, seed=s) for s in range(5)], axis=0)
fig, ax = plt.subplots(figsize=(8, 4.5))
ax.plot(counts, trace.radii[:40], "o-", label="greedy k-center")
ax.plot(counts, rand, "s-", label="random subset (mean of 5)")
ax.set_xlabel("coreset size (points kept)"); ax.set_ylabel("covering radius")
ax.set_title("toy: beyond a handful of points, greedy covers far better"); ax.legend(); ax.grid(alpha=0.3)
plt.show()
assert (trace.radii[4:40] <= rand[4:]).all()

# %% [markdown]
# Why does random win for the first two or three points? Greedy's first picks are the outliers (the
# farthest points, like the small cluster top right): exactly what lets it keep rare normal patches, but
# with one or two points a random pick in the dense middle covers the bulk better. From a handful of
# points on, greedy's covering radius is far smaller.
#
# ## What greedy optimises, and how well
#
# The coreset the paper wants is the **minimax facility location** (its Eq. 4): of all subsets
# `M_C` of the bank `M` with `k` points, the one whose worst-covered patch is closest to a kept one,
#
# $$ \mathcal{M}_C^* = \arg\min_{\mathcal{M}_C \subset \mathcal{M},\ |\mathcal{M}_C| = k} \ \max_{m \in \mathcal{M}} \ \min_{n \in \mathcal{M}_C} \lVert m - n \rVert_2 .$$
#
# The inner `max min` is the covering radius. Finding the best subset is NP-hard (the k-center problem), so
# the paper uses the greedy loop above, which comes with a guarantee (Gonzalez, 1985): **whatever the first
# pick, greedy's covering radius is at most twice the optimum.** The proof is short: after `k` picks, the
# worst point and the `k` picks are `k + 1` points pairwise at least the radius `r` apart; two of them
# share one of the optimum's `k` centres, so `r <= 2 r*` by the triangle inequality.
#
# On sets small enough to try every subset (`optimal_kcenter`: brute force), we can check it. For each
# `k`: 10 random sets of 12 toy points, greedy started from each of the 12 points in turn:

# %% [markdown] tags=["notes"]
# *Teacher's notes.* Draw the 2-D toy on the board: greedy picks the outliers first. Ask: *which 1% of the patches would you keep, and why is 'the most typical ones' wrong?*

# %%
approx = approximation_ratios(n=12, ks=(1, 2, 3, 4), n_sets=10, seed=SEED)
display(Markdown(markdown_table(approx)))
assert all(r["worst greedy / optimum"] <= 2 + 1e-9 for r in approx), "Gonzalez: greedy is within 2x the optimum"
assert all(r["mean greedy / optimum"] >= 1 - 1e-9 for r in approx), "nothing beats the optimum"

# %% [markdown]
# One such set drawn: the optimum's three centres against greedy's (started at the first point).

# %% slideshow={"slide_type": "subslide"}
tiny = toy_points(400, seed=SEED)[np.random.default_rng(SEED).choice(400, 12, replace=False)]
r_opt, c_opt = optimal_kcenter(tiny, 3)
g3 = greedy_kcenter(tiny, 3, first=0)
fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
for ax, (name, c, r) in zip(axes, [("optimum (brute force)", c_opt, r_opt), ("greedy from point 0", g3.picks, g3.radii[-1])]):
    ax.scatter(tiny[:, 0], tiny[:, 1], s=40, c="tab:blue")
    ax.scatter(tiny[c, 0], tiny[c, 1], marker="*", s=300, c="black")
    for p_ in tiny[c]:
        ax.add_patch(plt.Circle(p_, r, fill=False, ec="grey"))
    ax.set_title(f"{name}: covering radius {r:.2f}"); ax.set_aspect("equal"); ax.set_xlabel("feature 1"); ax.set_ylabel("feature 2")
    ax.set_xlim(tiny[:, 0].min() - r, tiny[:, 0].max() + r); ax.set_ylim(tiny[:, 1].min() - r, tiny[:, 1].max() + r)
plt.show()
print(f"greedy / optimum = {g3.radii[-1] / r_opt:.2f} (at most 2)")
assert r_opt <= g3.radii[-1] + 1e-9 <= 2 * r_opt + 1e-9

# %% [markdown]
# The worst case stays below 2, and on average greedy is much closer to the optimum than the bound says.
# (With `k = 1` the optimum is the best single centre; greedy's only pick is the given first point, so the
# ratio there is about the first pick alone.)
#
# ## The same on real patch features
#
# Greedy picks are nested (the first `k` picks of a longer run are the run for `k`), so one run gives the
# whole curve. The radius is measured in the full feature space.

# %% slideshow={"slide_type": "subslide"}
train_feats = model.extract(cat.train)                       # [N, 28, 28, D]
flat = train_feats.reshape(-1, train_feats.shape[-1])
n = len(flat)
counts = [int(n * r) for r in ([0.002, 0.01, 0.05] if FAST else [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1])]
curves = teaching.coreset_plots.radius_curves(flat, counts, seed=SEED)
fig, ax = plt.subplots(figsize=(8, 4.5))
ax.plot(counts, curves["greedy"], "o-", label="greedy coreset")
ax.plot(counts, curves["random"], "s-", label="random subset")
ax.set_xscale("log"); ax.set_xlabel(f"coreset size (of {n} patches)"); ax.set_ylabel("covering radius")
ax.set_title("real patches: covering radius against coreset size"); ax.legend(); ax.grid(alpha=0.3)
plt.show()
assert curves["greedy"][-1] < curves["random"][-1], (
    f"on {CATEGORY}, greedy's covering radius {curves['greedy'][-1]:.2f} should be below random's "
    f"{curves['random'][-1]:.2f} at {counts[-1]} points: greedy minimises the radius, random does not")
assert all(a >= b - 1e-3 for a, b in zip(curves["greedy"], curves["greedy"][1:])), "nested picks: the radius never grows"

# %% [markdown]
# ## The random projection: how much does it distort distances?
#
# Greedy selection computes a distance from every patch to every new pick, so the paper first projects
# the features at random to 128 dimensions (`coreset.random_projection`, a Gaussian matrix). The
# Johnson-Lindenstrauss lemma says that for `n` points such a projection to `dim >= C log(n) / eps^2`
# dimensions keeps *every* pairwise distance within a factor `1 +- eps` with high probability, whatever the
# original width: at a fixed `dim`, the guarantee for all pairs loosens like `sqrt(log(n) / dim)` as the
# bank grows. One pair at a time, the ratio projected / original distance spreads by about
# `1 / sqrt(2 dim)`. Here, for 5,000 random pairs of real patch features:

# %%
distortion = teaching.coreset_plots.projection_distortion(flat, dims=(128, 32, 16), n_pairs=5000, seed=SEED)
fig, ax = plt.subplots(figsize=(8, 4.5))
for dim, ratios in distortion.items():
    ax.hist(ratios, bins=80, range=(0.4, 1.6), histtype="step", lw=2,
            label=f"{dim} dims: spread {ratios.std():.3f} (1/sqrt(2 dim) = {1 / np.sqrt(2 * dim):.3f})")
ax.axvline(1, color="k", ls="--", lw=1)
ax.set_xlabel(f"projected distance / original distance ({flat.shape[1]}-d features)"); ax.set_ylabel("pairs")
ax.set_title("random projection: fewer dimensions, wider distortion"); ax.legend(fontsize=9, loc="upper left")
plt.show()
spread = {d: float(r.std()) for d, r in distortion.items()}
print("spread (std) of the ratio:", {d: round(v, 3) for d, v in spread.items()})
for dim, ratios in distortion.items():
    off = np.abs(np.asarray(ratios) - 1)
    print(f"{dim:4d} dims: half the pairs within {np.median(off):.1%}, 99% within {np.quantile(off, 0.99):.1%}, "
          f"the worst of {len(off):,} pairs off by {off.max():.1%}")
assert spread[128] < spread[32] < spread[16], "fewer dimensions, more distortion"

# %% [markdown]
# The spread follows `1 / sqrt(2 dim)`: at 128 dimensions a typical distance moves by the printed spread
# and the worst of the sampled pairs by the printed maximum, so greedy picks nearly the points it would
# pick in the full space; at 16 dimensions the ratios spread over tens of percent. (The bank has far more
# pairs than we sampled: its worst pair is off by more, as the `log n` in the lemma says.) The covering radii above are measured in the
# full space, after picking in the projected one. (Our features have only 152 dimensions, so 128 saves
# little here; on the paper's 1024-d features it saves 8x in every distance.)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Greedy against random: does it matter for detection?
#
# `teaching.coreset_plots.coreset_trial` builds a bank from the features above and scores the test set (no backbone
# runs, so it takes a moment). A random subset leaves a larger covering radius: its bank lies farther
# from every test patch, so all scores rise, normal and defective alike. Detection suffers only where
# they rise unevenly, and a few dozen test images can hardly show that: on the built-in data image AUROC
# barely moves (the table shows this run's).
# Notebook 05 measures the difference properly, with pixel metrics, several ratios and several seeds.

# %%
test_feats = model.extract([t.path for t in cat.test])
labels = [int(t.is_anomalous) for t in cat.test]
rows = []
for method in ["greedy", "random"]:
    r = teaching.coreset_plots.coreset_trial(train_feats, test_feats, labels, 0.01, method, seed=SEED)
    normal = r["scores"][np.array(labels) == 0]
    rows.append({"method": method, "size": r["size"], "covering radius": r["covering_radius"],
                 "image AUROC": r["image_auroc"], "max normal score": float(normal.max()),
                 "selection s": r["seconds"]})
display(Markdown(markdown_table(rows)))
assert rows[0]["covering radius"] < rows[1]["covering radius"], (
    f"greedy's covering radius {rows[0]['covering radius']:.2f} should be below random's "
    f"{rows[1]['covering radius']:.2f} at the same size")


# %% [markdown]
# Try it yourself: the slider sets the coreset ratio (the logic is `teaching.coreset_plots.coreset_trial`).

# %% slideshow={"slide_type": "subslide"}
def try_ratio(ratio=0.01):
    res = [teaching.coreset_plots.coreset_trial(train_feats, test_feats, labels, ratio, m, seed=SEED) for m in ("greedy", "random")]
    table = [{"method": m, "size": r["size"], "MB": r["megabytes"], "covering radius": r["covering_radius"],
              "image AUROC": r["image_auroc"]} for m, r in zip(("greedy", "random"), res)]
    display(Markdown(markdown_table(table)))
    return res

res = try_ratio(0.05)
assert res[0]["size"] == res[1]["size"]
# continuous_update=False: a coreset per value takes seconds (minutes on a real category); draw only on release
widgets.interactive(try_ratio, ratio=widgets.FloatLogSlider(value=0.01, base=10, min=-3, max=-0.6, step=0.1,
                                                            continuous_update=False))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Where do the patches lie? A UMAP of the bank
#
# UMAP draws high-dimensional points in 2-D so that neighbours stay neighbours. We embed a sample of all
# training patches, the coreset, and test patches, split by the ground-truth mask into normal and defective.
# (The first UMAP call compiles code and takes about a minute.)

# %%
rng = np.random.default_rng(SEED)
h, w = model.grid
o = model.bank.origin.cpu()
core_idx = (o[:, 0] * h * w + o[:, 1] * w + o[:, 2]).numpy()       # coreset rows in `flat`
n_bank = 800 if FAST else 3000
bank_s = rng.choice(n, n_bank, replace=False)
core_s = rng.choice(core_idx, min(len(core_idx), n_bank // 3), replace=False)
masks = np.stack([teaching.coreset_plots.defect_patches(cat.load_mask(t, model.preprocess), model.grid) for t in cat.test])
tf = test_feats.reshape(-1, test_feats.shape[-1]).numpy()
is_bad = masks.reshape(-1)
from_normal_img = np.repeat(np.array(labels) == 0, h * w)
normal_s = rng.choice(np.flatnonzero(from_normal_img), 400 if FAST else 1000, replace=False)
bad_s = np.flatnonzero(is_bad)[:400 if FAST else 1000]
print(f"{len(bank_s)} bank, {len(core_s)} coreset, {len(normal_s)} normal test, {len(bad_s)} defective test patches")

# %% slideshow={"slide_type": "subslide"}
t0 = time.perf_counter()
X = np.concatenate([flat[bank_s].numpy(), flat[core_s].numpy(), tf[normal_s], tf[bad_s]])
Y = teaching.coreset_plots.embed_2d(X, "umap", seed=SEED)
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

# %% [markdown]
# The picture is a sketch (UMAP distorts distances); the numbers behind it are the nearest-bank distances, which are what PatchCore scores:

# %%
d_normal = model.bank.search(torch.from_numpy(tf[normal_s]), 1)[0][:, 0]
d_bad = model.bank.search(torch.from_numpy(tf[bad_s]), 1)[0][:, 0]
print(f"distance to the nearest bank patch: normal {float(d_normal.mean()):.1f}, defective {float(d_bad.mean()):.1f}")
assert d_bad.mean() > d_normal.mean(), (
    f"on {CATEGORY}, defective test patches should lie farther from the bank than normal ones "
    f"(mean {float(d_bad.mean()):.1f} against {float(d_normal.mean()):.1f}); check DATA_ROOT and the masks")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - The full bank holds every training patch: 784 per image here, 200k+ for an MVTec category.
# - The coreset problem is minimax (k-center): minimise the covering radius. It is NP-hard; greedy k-center picks the worst-covered point each time, its radius never grows and is at most twice the optimum (checked above by brute force).
# - A random projection to 128 dims moves a typical distance by about `1 / sqrt(2 x 128)` = 6% (measured above, with the worst sampled pair); Johnson-Lindenstrauss bounds every pair of `n` points once `dim` grows like `log n`. Greedy can pick in the cheaper space.
# - A 1-10% greedy coreset covers the bank almost as well as the whole, with a smaller covering radius than a random subset of the same size; how much that helps detection depends on the data.
# - Defective patches lie away from the normal ones; the distance to the bank is the anomaly score.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Write your answer in the cell under each question, then run the check below it: it prints
# "correct" or a hint. A function you are asked to write is checked with the package's own
# implementation switched off: build it from numpy, torch or scipy, not by calling the function it rewrites.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 1. Greedy k-center yourself
#
# Write `my_greedy_kcenter(points, k, first)`: start with the point `first`, then repeatedly add the point
# farthest from all centres chosen so far; return the `k` chosen indices in order. The check compares it with
# the package's plain loop, `coreset.reference_greedy_coreset` (without projection), on toy points. *Hint:* keep, for every point, its distance to the
# nearest centre so far; after each pick, update it with `np.minimum`.

# %% tags=["exercise"]
def my_greedy_kcenter(points, k, first):
    raise NotImplementedError  # your code: an array of k indices into points

# %% tags=["solution"]
def my_greedy_kcenter(points, k, first):
    picks = [first]
    nearest = np.linalg.norm(points - points[first], axis=1)  # distance to the nearest centre so far
    for _ in range(k - 1):
        picks.append(int(nearest.argmax()))                      # the worst-covered point
        nearest = np.minimum(nearest, np.linalg.norm(points - points[picks[-1]], axis=1))
    return np.array(picks)

# %% tags=["check"]
exercises.check_exercise("02.1", my_greedy_kcenter, pts, trace.picks[0], SEED)

# %% [markdown] tags=["solution"]
# *Answer.* Ten lines: the package's `greedy_coreset` does the same on the memory bank, after a random
# projection to 128 dimensions and with the triangle inequality to skip most distance updates.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2. The covering radius
#
# Write `my_covering_radius(points, centres)`: the largest distance from any point to its nearest centre
# (`centres` are indices into `points`). *Hint:* `np.linalg.norm(points[:, None] - points[centres][None], axis=2)`
# is the `[n, k]` distance matrix.

# %% tags=["exercise"]
def my_covering_radius(points, centres):
    raise NotImplementedError  # your code: one number

# %% tags=["solution"]
def my_covering_radius(points, centres):
    d = np.linalg.norm(points[:, None] - points[np.asarray(centres)][None], axis=2)
    return d.min(axis=1).max()

# %% tags=["check"]
exercises.check_exercise("02.2", my_covering_radius, pts, trace.picks, SEED)

# %% [markdown] tags=["solution"]
# *Answer.* The radius is what greedy k-center minimises (greedily): every training patch lies within it of
# a kept patch, so shrinking the bank costs at most that much on any normal patch's score.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 3. Quiz: what the covering radius bounds
#
# A greedy coreset leaves a covering radius r over the memory bank. What does r bound? Set `quiz_3` to one letter; the check explains the option you chose.
#
# - **a.** No other set of as many patches has a smaller covering radius: greedy finds the optimum.
# - **b.** Every test patch, defective ones included, lies within r of a kept patch.
# - **c.** The distance of any patch to its nearest kept patch exceeds its distance to the nearest patch of the full bank by at most r.
# - **d.** Image AUROC drops by at most r compared with the full bank.

# %% tags=["exercise"]
quiz_3 = ...  # one letter: "a", "b", "c" or "d"

# %% tags=["solution"]
quiz_3 = "c"

# %% tags=["check"]
teaching.quiz.check(quiz_3, "02.3", what="`quiz_3`")

# %% [markdown] tags=["solution"]
# *Answer.* **c.** A patch's nearest patch in the full bank lies within r of some kept patch, so by the triangle inequality its distance to the kept patches is at most its full-bank distance plus r (and never less, the coreset being part of the bank). This holds for test patches too, normal or defective: the coreset raises any patch score by at most r.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Further reading
#
# - T. F. Gonzalez. *Clustering to Minimize the Maximum Intercluster Distance*. Theoretical Computer Science 38:293-306, 1985 (greedy k-center and its factor 2). [doi:10.1016/0304-3975(85)90224-5](https://doi.org/10.1016/0304-3975(85)90224-5). The greedy algorithm and the proof of its factor 2.
# - O. Sener, S. Savarese. *Active Learning for Convolutional Neural Networks: A Core-Set Approach*. ICLR 2018 (the coreset PatchCore cites). [arXiv:1708.00489](https://arxiv.org/abs/1708.00489). The greedy coreset in deep learning.
# - W. B. Johnson, J. Lindenstrauss. *Extensions of Lipschitz mappings into a Hilbert space*. Contemporary Mathematics 26:189-206, 1984. [doi:10.1090/conm/026/737400](https://doi.org/10.1090/conm/026/737400); and S. Dasgupta, A. Gupta. *An elementary proof of a theorem of Johnson and Lindenstrauss*. Random Structures & Algorithms 22(1):60-65, 2003. [doi:10.1002/rsa.10073](https://doi.org/10.1002/rsa.10073). Why a random projection keeps distances.
# - K. Roth, L. Pemula, J. Zepeda, B. Schölkopf, T. Brox, P. Gehler. *Towards Total Recall in Industrial Anomaly Detection*. CVPR 2022, pp. 14318-14328. [arXiv:2106.08265](https://arxiv.org/abs/2106.08265). Section 3.2 and Algorithm 1.
#
# **Next**: notebook **03 kNN scoring and heatmaps**: score test patches against this memory bank.
