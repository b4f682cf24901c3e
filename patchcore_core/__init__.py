"""patchcore_core: a compact, readable PatchCore (Roth et al., CVPR 2022).

"Towards Total Recall in Industrial Anomaly Detection": learn normal
from defect-free images only, with a memory bank of locally aware patch
features, shrunk by a greedy coreset, and nearest-neighbour scoring.
"""

from patchcore_core._version import __version__
from patchcore_core.ext import ann as _ann  # noqa: F401, I001  (plugs approximate search into the bank)
from patchcore_core.pipeline.config import PatchCoreConfig
from patchcore_core.pipeline.patchcore import Explanation, PatchCore, Prediction

__all__ = ["PatchCore", "PatchCoreConfig", "Prediction", "Explanation", "__version__"]
