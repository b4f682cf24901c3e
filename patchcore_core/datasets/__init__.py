"""Public anomaly-detection data sets, downloaded and arranged in the MVTec AD layout.

``registry`` says where each comes from (addresses, checksums, licence,
citation); ``layouts`` converts each publisher's folders; ``get`` runs the
whole download; ``cli`` is the ``patchcore data download|list`` command.
"""

from .get import LicenceError, download_dataset, licence_text
from .registry import DATASETS, Archive, DatasetInfo, get_dataset_info

__all__ = ["DATASETS", "Archive", "DatasetInfo", "LicenceError", "download_dataset", "get_dataset_info",
           "licence_text"]
