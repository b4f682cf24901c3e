"""Helpers for the notebooks and the demo: looking inside PatchCore.

The pipeline lives in :mod:`patchcore_core.pipeline`, one file per section of
the paper; these modules only compute what the notebooks show and draw it,
one module per topic:

* :mod:`.problem`: good and defective images with their ground truth, before any model (00);
* :mod:`.patch_features`: feature maps, receptive fields, PCA colours (notebook 01);
* :mod:`.coreset_plots` and :mod:`.toy`: the memory bank, coresets, the 2-D toy (02);
* :mod:`.scoring_plots`: Eq. 7 term by term, anomaly-map stages, explanations (03);
* :mod:`.evaluation_plots`: per-defect tables, worst failures, prediction grids (04);
* :mod:`.sweeps`: ablation plots (05; the numbers come from
  :mod:`patchcore_core.evaluation.category`);
* :mod:`.own_data`: a stand-in for your own images (06);
* :mod:`.baselines`: SPADE and a PaDiM-style Gaussian on PatchCore's features (09);
* :mod:`.logical`: built-in images of parts with logical anomalies (09, 10);
* :mod:`.scale`: bank, coreset and search against the number of images; approximate search's trade-off (07);
* :mod:`.shards`: composable coresets and sharded search on the 2-D toy (07);
* :mod:`.capstone`: the capstone's input (the backbone's maps), its assembled steps and hints (11);
* :mod:`.exercises`: the exercise checks (every notebook): correct, or a specific hint;
* :mod:`.quiz` and :mod:`.quiz_bank`: each notebook's concept quiz, with every option's explanation;
* :mod:`.checks`: each exercise's check by its id "NN.k", expected value computed from the notebook's data;
* :mod:`.grading`: what the autograder's tests use (the package's references disabled while an answer runs);
* :mod:`.setup`: every notebook's setup cell (seeds, device, FAST, data, category), as
  ``teaching.notebook_setup()``.

Imports: every library layer (never the demo); plotting libraries lazily.
"""

from . import (  # noqa: F401  (light: plots import lazily)
    baselines,
    capstone,
    checks,  # registers each exercise's check with exercises.check_exercise
    coreset_plots,
    evaluation_plots,
    exercises,
    logical,
    own_data,
    patch_features,
    problem,
    quiz,
    quiz_bank,
    scale,
    scoring_plots,
    setup,
    shards,
    sweeps,
    toy,
)
from .setup import NotebookSetup, notebook_setup  # noqa: F401  (the setup cell's one call)
