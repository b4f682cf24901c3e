"""Helpers for the notebooks and the demo: looking inside PatchCore.

The pipeline lives in the flat modules of :mod:`patchcore_core` and follows
the paper; these modules only compute what the notebooks show and draw it,
one module per topic:

* :mod:`.problem`: good and defective images with their ground truth, before any model (00);
* :mod:`.features`: feature maps, receptive fields, PCA colours (notebook 01);
* :mod:`.coreset` and :mod:`.toy`: the memory bank, coresets, the 2-D toy (02);
* :mod:`.scoring`: Eq. 7 term by term, anomaly-map stages, explanations (03);
* :mod:`.evaluation`: per-defect tables, worst failures, prediction grids (04);
* :mod:`.sweeps`: ablation plots (05; the numbers come from
  :mod:`patchcore_core.evaluation`);
* :mod:`.own_data`: a stand-in for your own images (06);
* :mod:`.baselines`: SPADE and a PaDiM-style Gaussian on PatchCore's features (09);
* :mod:`.logical`: built-in images of parts with logical anomalies (09, 10);
* :mod:`.scale`: bank, coreset and search against the number of images; approximate search's trade-off (07);
* :mod:`.shards`: composable coresets and sharded search on the 2-D toy (07);
* :mod:`.checks`: the exercise checks (every notebook): correct, or a specific hint.
"""

from . import (  # noqa: F401  (light: plots import lazily)
    baselines,
    checks,
    coreset,
    evaluation,
    features,
    logical,
    own_data,
    problem,
    scale,
    scoring,
    shards,
    sweeps,
    toy,
)
