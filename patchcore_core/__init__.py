"""patchcore_core: a compact, readable PatchCore (Roth et al., CVPR 2022).

"Towards Total Recall in Industrial Anomaly Detection": learn normal
from defect-free images only, with a memory bank of locally aware patch
features, shrunk by a greedy coreset, and nearest-neighbour scoring.

    >>> from patchcore_core import PatchCore, load, save
    >>> model = PatchCore().fit(good_image_paths)            # doctest: +SKIP
    >>> save(model, "brick.safetensors"); model = load("brick.safetensors")  # doctest: +SKIP

The paper is :mod:`patchcore_core.pipeline`, one file per section; the
other folders are layers around it (see the README's map).
"""

from patchcore_core._version import __version__

try:
    import torch  # noqa: F401
except ImportError:  # the runtime extra: only patchcore_core.deploy.runtime (and util) work without torch
    __all__ = ["__version__"]
else:
    from patchcore_core.ext import ann as _ann  # noqa: F401  (plugs approximate search into the memory bank)
    from patchcore_core.ext.ensemble import AnomalyModel, PatchCoreEnsemble, make_model
    from patchcore_core.io.save_load import load, save
    from patchcore_core.pipeline.config import PatchCoreConfig
    from patchcore_core.pipeline.patchcore import Explanation, PatchCore, Prediction

    __all__ = ["PatchCore", "PatchCoreEnsemble", "AnomalyModel", "PatchCoreConfig", "Prediction",
               "Explanation", "make_model", "save", "load", "__version__"]
