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
# # 07 PatchCore at scale
#
# > When the good images number in the thousands: split the bank over machines, and still know how well it covers.
#
# **You will learn**
#
# - why one machine runs out: the bank grows with every image, the greedy coreset with the square
# - composable coresets: greedy k-center per shard, then once more over the union, and the covering radius it promises
# - how a sharded memory bank answers a query: every shard answers, the smallest distance wins
# - how the same steps run on a Ray cluster (`patchcore fit --ray ...`)
#
#
# Everything runs on a laptop CPU with the built-in data (real textures with generated defects,
# written once to a cache folder), without a cluster: the cluster runs the very functions shown here. To use MVTec AD instead, give its folder and a category to
# `teaching.notebook_setup` in the setup cell, or set the environment variables
# `PATCHCORE_DATA_ROOT` and `PATCHCORE_CATEGORY`.
#
# **Prerequisites**: notebooks 02 (greedy coreset, covering radius) and 03 (nearest-neighbour scores).
#
# **Time**: about 55 minutes to read it, run it and do the exercises.

# %% slideshow={"slide_type": "skip"}
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from patchcore_core import PatchCore, teaching
from patchcore_core.cluster.bank import merge_shard_answers
from patchcore_core.ext.composable import composable_greedy_coreset, covering_radius_faiss, shard_rows
from patchcore_core.pipeline.coreset import greedy_coreset
from patchcore_core.pipeline.memory_bank import knn_search
from patchcore_core.teaching import exercises
from patchcore_core.teaching.coreset_plots import bank_footprint
from patchcore_core.teaching.shards import (
    composable_toy,
    merged_nearest,
    plot_composable,
    plot_sharded_search,
    shard_nearest,
    toy_shards,
)
from patchcore_core.util.tables import markdown_table

# Built-in data unless PATCHCORE_DATA_ROOT and PATCHCORE_CATEGORY say otherwise. For MVTec AD:
# teaching.notebook_setup("~/mvtec_anomaly_detection", "bottle")  ("screw", "carpet", ...)
setup = teaching.notebook_setup(default_category="brick")  # also seeds torch and numpy, styles the plots
SEED = setup.seed
DEVICE = setup.device  # PATCHCORE_DEVICE, else "auto": a GPU when there is one, else the CPU
FAST = setup.fast      # fewer images when run by CI
DATA_ROOT, CATEGORY, cat = setup.data_root, setup.category, setup.cat
N_TRAIN = min(len(cat.train), 8 if FAST else 24)
print(f"{CATEGORY}: {len(cat.train)} good training images (using {N_TRAIN}), {len(cat.test)} test images; FAST={FAST}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Why one machine runs out
#
# Every training image adds `h x w` patches to the memory bank (784 at 224 px). The greedy coreset keeps
# `k = ratio x N` of the `N` patches, and each pick updates the distance of every patch: `N x k` updates, so
# **ten times the images cost a hundred times the coreset**. Exact search grows with the bank too.

# %%
rows = []
for n_img in (200, 2_000, 20_000, 200_000):
    fp = bank_footprint(n_img, (28, 28), 152)
    rows.append({"images": n_img, "patches": fp["patches"], "bank GB": fp["megabytes"] / 1024,
                 "greedy updates (10%)": f"{fp['patches'] * 0.1 * fp['patches']:.1e}"})
display(Markdown(markdown_table(rows)))

# %% [markdown]
# Magnetic tile's 761 images fit in about two minutes on two cores (README). Two hundred thousand images, like a
# busy production line or Real-IAD, make a bank of about 90 GB before the coreset and need about 10^5 times magnetic tile's
# coreset updates: several machines, and a coreset that does not need all the points in one place.

# %% [markdown] tags=["notes"]
# *Teacher's notes.* Ask: *at 200,000 images, what breaks first: memory, fit time or search time?* Then show the growth table measured below.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Composable coresets on the 2-D toy
#
# Split the points into shards, one per machine. Each machine runs the same greedy k-center on its own
# shard and proposes `k` centres; one more greedy pass over the union of the proposals keeps `k`. Every point is
# within its shard's radius `r_s` of a proposal, and every proposal within the merge radius `r_m` of a final pick, so
# by the triangle inequality **every point is within `max r_s + r_m`** of the final picks: a guarantee, not a hope.

# %% slideshow={"slide_type": "subslide"}
pts, shard_of = toy_shards(400, n_shards=3, seed=SEED)
run = composable_toy(pts, 3, k=20)
plot_composable(run)
plt.show()
print(f"composable radius {run.radius:.2f}, single machine {run.single_radius:.2f}, bound {run.bound:.2f}")
assert run.radius <= run.bound + 1e-9

# %% [markdown]
# The merged picks cover the plane almost as tightly as single-machine greedy does, though no machine ever saw
# the others' points. More shards? Each proposes `k` (the textbook scheme, with the guarantee) or only
# `2k / shards` (`oversample=2`: a smaller union to merge, no guarantee):

# %%
rows = []
for n_shards in (1, 2, 4, 8):
    for oversample in (None, 2):
        r = composable_toy(pts, n_shards, k=20, oversample=oversample)
        rows.append({"shards": n_shards, "per shard": "k" if oversample is None else "2k/shards",
                     "union": sum(len(p) for p in r.shard_picks), "radius": r.radius,
                     "single machine": r.single_radius, "ratio": r.radius / r.single_radius})
display(Markdown(markdown_table(rows)))
assert all(r["ratio"] <= 4 for r in rows if r["per shard"] == "k")  # greedy is within 2x of the best, composable within 4x

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The same on real patch features
#
# The cluster runs `composable_greedy_coreset` on the memory bank (with the usual 128-d random projection), with
# each shard as a task on its own machine. Here the shards run one after the other on this machine, so the
# numbers are the same and the cost is the sum.

# %%
model = PatchCore(device=DEVICE).prepare(cat.train)  # the preprocessing fit would choose, without fitting
train_patches = model.extract(cat.train[:N_TRAIN]).flatten(0, 2)  # [N_TRAIN x h x w, D]
k = max(1, len(train_patches) // 10)
t0 = time.perf_counter()
single = greedy_coreset(train_patches, count=k, seed=SEED).indices
t_single = time.perf_counter() - t0
rows = [{"shards": 1, "radius": covering_radius_faiss(train_patches, train_patches[single]), "seconds": t_single}]
for n_shards in (2, 4):
    t0 = time.perf_counter()
    comp = composable_greedy_coreset(train_patches, n_shards, count=k, seed=SEED)
    rows.append({"shards": n_shards, "radius": covering_radius_faiss(train_patches, train_patches[comp.indices]),
                 "seconds": time.perf_counter() - t0})
for r in rows:
    r["radius / single"] = r["radius"] / rows[0]["radius"]
display(Markdown(f"{len(train_patches):,} patches, k = {k:,} ({N_TRAIN} images)\n\n" + markdown_table(rows)))
assert all(r["radius / single"] < 1.5 for r in rows)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## How a sharded memory bank answers a query
#
# The bank is split into shards, each held by one machine in an exact (flat) faiss index. A query goes to
# every shard; each returns its nearest row and distance; the smallest distance wins. The nearest row of the
# whole bank is the nearest row of the shard it lives in, so the answer is exactly one machine's.
# (With `--knn-backend ivf_pq` each shard holds an approximate index of its slice instead, and can miss its
# nearest row just as one approximate index can.)

# %% slideshow={"slide_type": "subslide"}
query = np.array([1.2, 1.8])
plot_sharded_search(pts, shard_of, query)
plt.show()
answers = shard_nearest(pts, shard_of, query)
print("each shard's answer (distance, row):", [(round(d, 3), i) for d, i in answers])
best_d, best = merged_nearest(answers)
assert best == int(np.linalg.norm(pts - query, axis=1).argmin())

# %% [markdown] slideshow={"slide_type": "subslide"}
# On the real bank: shard the coreset, search each shard, merge, and compare with one index over all of it.

# %% tags=["show-code"]
bank = train_patches[single]
queries = model.extract([t.path for t in cat.test[:2]]).flatten(0, 2)
d_one, i_one = knn_search(queries, bank, k=1)
answers = []
for rows_s in shard_rows(len(bank), 3):
    d, i = knn_search(queries, bank[rows_s], k=1)
    answers.append(((d ** 2).numpy(), (i + int(rows_s[0])).numpy()))  # faiss answers squared distances
d2, idx = merge_shard_answers(answers, 1)
rel = np.abs(np.sqrt(d2) - d_one.numpy()).max() / d_one.numpy().max()
print(f"{len(queries):,} test patches: same rows {np.mean(idx == i_one.numpy()):.1%}, largest relative difference in distance {rel:.1e}")
assert np.allclose(np.sqrt(d2), d_one.numpy(), rtol=1e-5, atol=1e-5)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## On a Ray cluster
#
# With the optional extra (`pip install 'patchcore-core[cluster]'`), the same steps run on a Ray cluster:
# feature extraction as tasks (a task whose machine dies runs again elsewhere), the shards' coresets as tasks,
# the bank in shard actors, and sweeps (one task per category) gathered into one table:
#
# ```bash
# ray start --head --port 6379                    # on the first machine; `ray start --address HEAD:6379` on the others
# patchcore evaluate --data ~/mvtec --category bottle --ray auto --single-machine-radius --json bottle.json
# patchcore evaluate --data ~/mvtec --category all --ray auto   # one Ray task per category
# ```
#
# From Python, `PatchCore(work=RayCluster("auto")).fit(paths)`. Starting Ray takes a while and uses every
# core, so this notebook only runs it when you ask: set `RUN_RAY = True` below (`"local"` starts a cluster on this machine).

# %%
RUN_RAY = os.environ.get("PATCHCORE_NOTEBOOK_RAY") == "1"
if RUN_RAY:
    from patchcore_core.cluster import RayCluster

    cluster = RayCluster("local", single_machine_radius=True, timeout_s=600)
    try:
        m = PatchCore(device="cpu", work=cluster).fit(cat.train[:N_TRAIN], progress=False)
        print({k: m.stats[k] for k in ("cluster_nodes", "covering_radius", "single_machine_covering_radius")})
    finally:
        cluster.shutdown()
else:
    print("Ray not started (RUN_RAY is False)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Measured: what grows with the training set
#
# The same on the data of the setup cell, measured: the patch features of every image are extracted once, then the
# first `n` images make the bank. The bank grows linearly, the greedy coreset's time faster than linearly
# (its `N x k` updates), and exact search with the bank.

# %%
from patchcore_core.teaching import scale as tscale

cat_feats = tscale.category_features(DATA_ROOT, CATEGORY, device=DEVICE,
                                     max_test=16 if FAST else None)  # FAST: a sample of the test images
counts = sorted({2, N_TRAIN // 2, N_TRAIN} if FAST else {3, 6, 12, N_TRAIN})
growth = tscale.growth_table(cat_feats["train"][:N_TRAIN], cat_feats["test"], counts)
display(Markdown(markdown_table(growth)))
fig = tscale.plot_growth(growth)
plt.show()
h, w = cat_feats["train"].shape[1:3]
assert [r["bank_rows"] for r in growth] == [n * h * w for n in counts]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Approximate search: recall, accuracy, speed
#
# Exact search compares each test patch with every bank row. faiss's **IVF** indexes first split the bank
# into `nlist` cells by k-means (at fit time); a query then scans only the `nprobe` cells nearest to it.
# `ivf_flat` keeps the rows as they are; `ivf_pq` stores each as a few one-byte codes (product
# quantisation) and re-ranks the best candidates by their exact distance. Fewer cells scanned: faster, but
# the true nearest row may sit in a cell not scanned, and the patch's score comes out too high.
# **Recall@1** is the share of test patches for which the index found a row as near as exact search's
# nearest (a tie with another row counts: a plain background has many identical patches). Both distances
# are recomputed directly for this: a search's `||q||² - 2q·m + ||m||²` in float32 rounds tiny distances
# to 0 or to a tenth, which would count as misses. On magnetic tile's full bank (600k
# rows) the README's *Beyond one machine* table gives the same trade-off at scale
# (`benchmarks/bench_knn.py`); `--knn-backend ivf_pq` picks it for a model, trained at fit time and saved
# in the model file.

# %%
NPROBES = [1, 4, 16, 1024] if FAST else [1, 2, 4, 8, 16, 32, 64, 1024]  # capped at nlist: exact again
probe_rows = tscale.nprobe_table(cat_feats["train"][:N_TRAIN], cat_feats["test"], cat_feats["labels"], NPROBES)
display(Markdown(markdown_table(probe_rows, ["backend", "nprobe", "nlist", "scanned", "recall_at_1",
                                             "image_auroc", "ms_per_image"])))
ivf_flat_rows = [r for r in probe_rows if r["backend"] == "ivf_flat"]
assert ivf_flat_rows[-1]["recall_at_1"] == 1.0  # every cell scanned: exact again

# %% slideshow={"slide_type": "subslide"}
import ipywidgets as widgets


def show_nprobe(nprobe):
    tscale.plot_nprobe(probe_rows, highlight=nprobe)
    plt.show()
    for r in probe_rows:
        if r["nprobe"] == min(nprobe, r["nlist"] or nprobe):
            print(f"{r['backend']:9s} nprobe {r['nprobe']:4d}: scans {r['scanned']:.1%} of the bank, "
                  f"recall@1 {r['recall_at_1']:.3f}, image AUROC {r['image_auroc']:.3f}, "
                  f"{r['ms_per_image']:.1f} ms per image")


probes = sorted({r["nprobe"] for r in probe_rows if r["nprobe"]})
widgets.interactive(show_nprobe, nprobe=widgets.SelectionSlider(options=probes, value=probes[1],
                                                                continuous_update=False))

# %% [markdown]
# An approximate index can only miss the nearest row, never find a nearer one: every patch score is at or
# above the exact one. Image AUROC forgives a lot of that (a good image's patches rise too), so recall can
# drop well below 1 before the ranking of the images changes. On a bank this small the index saves little
# time (its overhead is per query); the README's table shows the speed-up at 600k rows.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - The bank grows with the images and the greedy coreset with their square: past a few thousand images, one machine is too slow or too small.
# - Composable coresets run greedy k-center on each shard and once more on the union; the covering radius is at most the largest shard radius plus the merge radius, and stays close to single-machine greedy's.
# - A sharded exact bank answers exactly as one index: every shard answers, the smallest distance wins. A lost shard must be an error, never a quietly worse answer.
# - `--ray` runs the same functions on a Ray cluster: features, coreset shards, bank shards and sweeps.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Write your answer in the cell under each question, then run the check below it: it prints
# "correct" or a hint. A function you are asked to write is checked with the package's own
# implementation switched off: build it from numpy, torch or scipy, not by calling the function it rewrites.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 1. Merge the shards' answers
#
# Write `my_merge(answers)`: `answers` holds one `(distance, row)` pair per shard for the same query; return the
# pair of the whole bank's nearest row. When two shards tie, the lower row wins (as in one index).

# %% tags=["exercise"]
def my_merge(answers):
    raise NotImplementedError  # your code: one (distance, row) pair

# %% tags=["solution"]
def my_merge(answers):
    return min(answers, key=lambda a: (a[0], a[1]))  # smallest distance; on a tie, the lower row

# %% tags=["check"]
exercises.check_exercise("07.1", my_merge, pts, shard_of, query)

# %% [markdown] tags=["solution"]
# *Answer.* One `min`: that is all the merge does, which is why a sharded exact search is as exact as one index.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2. The guarantee
#
# From `run.shard_radii` (each shard's covering radius over its own points) and `run.merge_radius` (how far the
# union's points are from the final picks), compute the radius that no toy point can exceed.

# %% tags=["exercise"]
bound = ...  # your code: one number from run.shard_radii and run.merge_radius

# %% tags=["solution"]
bound = max(run.shard_radii) + run.merge_radius

# %% tags=["check"]
exercises.check_exercise("07.2", bound, run)

# %% [markdown] tags=["solution"]
# *Answer.* `max_s r_s + r_m`, by the triangle inequality; the measured radius sits well below it.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 3. Recall@1
#
# Write `my_recall(approx, exact)`: `approx` and `exact` are 1-D tensors of nearest distances for the same
# queries (approximate and exact search). Return the share of queries whose approximate answer is at the
# exact distance (allow a relative tolerance of `1e-4` for float rounding).

# %% tags=["exercise"]
def my_recall(approx, exact):
    raise NotImplementedError  # your code: one number in [0, 1]

# %% tags=["solution"]
def my_recall(approx, exact):
    return float((approx <= exact * (1 + 1e-4) + 1e-6).float().mean())

# %% tags=["check"]
exercises.check_exercise("07.3", my_recall, SEED)

# %% [markdown] tags=["solution"]
# *Answer.* The share of queries whose approximate distance equals the exact one: an approximate index can only
# return a row at or farther than the nearest, so `approx <= exact` (up to rounding) means it found it.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 4. Quiz: what approximate search does to scores
#
# With `ivf_flat` and a small `nprobe`, recall@1 is below 1: for some test patches the nearest bank row sits in a cell that was not scanned. What happens to those patches' scores? Set `quiz_4` to one letter; the check explains the option you chose.
#
# - **a.** They come out lower than the exact scores, so defects may be missed.
# - **b.** They come out at or above the exact scores, never below.
# - **c.** They can come out higher or lower: the k-means cells blur the distances.
# - **d.** They are unchanged: each cell's centroid stands in for its rows.

# %% tags=["exercise"]
quiz_4 = ...  # one letter: "a", "b", "c" or "d"

# %% tags=["solution"]
quiz_4 = "b"

# %% tags=["check"]
teaching.quiz.check(quiz_4, "07.4", what="`quiz_4`")

# %% [markdown] tags=["solution"]
# *Answer.* **b.** An approximate index can only miss the nearest row, never find a nearer one. Good images' scores rise too, which is why image AUROC forgives many missed rows before the ranking of the images changes.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Further reading
#
# - P. Indyk, S. Mahabadi, M. Mahdian, V. S. Mirrokni. *Composable Core-sets for Diversity and Coverage Maximization*. PODS 2014, pp. 100-108. [doi:10.1145/2594538.2594560](https://doi.org/10.1145/2594538.2594560). Composable coresets: solve each shard, then the union of the answers.
# - T. F. Gonzalez. *Clustering to Minimize the Maximum Intercluster Distance*. Theoretical Computer Science 38:293-306, 1985 (greedy k-center and its factor 2). [doi:10.1016/0304-3975(85)90224-5](https://doi.org/10.1016/0304-3975(85)90224-5). The factor 2 each greedy pass keeps.
# - J. Johnson, M. Douze, H. Jégou. *Billion-scale similarity search with GPUs* (faiss). IEEE Transactions on Big Data 7(3):535-547, 2021. [arXiv:1702.08734](https://arxiv.org/abs/1702.08734). The library behind the flat, IVF and PQ indexes.
#
# **Next**: notebook **08 The paper's experiments**: a whole benchmark beside the published figures.
