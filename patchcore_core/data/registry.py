"""Where the public anomaly-detection data sets come from: addresses, checksums,
licences and citations, as data (no code that downloads anything).

Sources of the addresses and checksums (looked up December 2026):

* MVTec AD and MVTec LOCO whole archives, VisA, BTAD: the publishers' addresses
  with SHA-256 sums as anomalib lists them (``anomalib/data/datamodules/image/
  mvtecad.py``, ``visa.py``, ``btech.py``; ``data/datasets/image/mvtec_loco.py``).
* MVTec AD per-category archives: per-category links on the publisher's server
  (same share and file-id scheme as the whole archive), as many projects list
  them; their MD5 sums come from a third-party list, not from MVTec, so a
  mismatch there may mean the list is wrong: the error says so.
* MPDD: the authors publish a OneDrive folder only (no direct link, no
  checksum); ``--mirror`` a folder or server that holds ``MPDD.zip``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Archive", "DatasetInfo", "DATASETS", "get_dataset_info"]

CC_BY_NC_SA = ("CC BY-NC-SA 4.0", "https://creativecommons.org/licenses/by-nc-sa/4.0/",
               "Non-commercial use only (research and teaching are fine); give credit (cite the paper "
               "below); anything you make from the data and share must carry the same licence.")


@dataclass(frozen=True)
class Archive:
    """One file a publisher offers.

    ``categories`` is what it holds (None: every category of its data set);
    ``checksum`` is ``"sha256:HEX"`` / ``"md5:HEX"``, or None when none is
    published; ``url`` is None when there is no direct link (``--mirror`` only).
    """

    filename: str
    url: str | None
    checksum: str | None
    categories: tuple[str, ...] | None = None
    size: str = ""  # as the publisher states it, for the message before a long download
    checksum_source: str = "the sum anomalib lists"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    homepage: str
    layout: str  # which conversion brings it to the MVTec layout (see layouts.py)
    categories: tuple[str, ...]
    licence: str
    licence_url: str
    licence_summary: str
    citation: str
    archives: tuple[Archive, ...]
    manual: str = ""  # how to get the file by hand when there is no direct link
    notes: tuple[str, ...] = field(default_factory=tuple)


_MVTEC_BASE = "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download/"
# (category, file id on the publisher's server, MD5 from the third-party list)
_MVTEC_CATEGORIES = (
    ("bottle", "420937370-1629951468", "79b4d46b8647d969e323afef8d8445ff"),
    ("cable", "420937413-1629951498", "2ba411739e8239e7558ead13f18b0ead"),
    ("capsule", "420937454-1629951595", "380afc46701c99cb7b9a928edbe16eb5"),
    ("carpet", "420937484-1629951672", "5ce0a646d054d9e88195bd74c690de4b"),
    ("grid", "420937487-1629951814", "37239e47f99673bb73393b67ca4cc418"),
    ("hazelnut", "420937545-1629951845", "5c30a9e574a762d845ca79cf2f241b01"),
    ("leather", "420937607-1629951964", "e7971b60323840bfc36247e8d9c3598e"),
    ("metal_nut", "420937637-1629952063", "bfbc32e780827923f4b2c61923e364f7"),
    ("pill", "420938129-1629953099", "834e2d57f62cd4d8d74cd0a5775cc48b"),
    ("screw", "420938130-1629953152", "2e817e865841f4947db4ded51c13bb23"),
    ("tile", "420938133-1629953189", "d78d2c0f6d8bbe9cbe3b72a77bc3e328"),
    ("toothbrush", "420938134-1629953256", "53ba30bb7aeac103e28e1b83ae28ffb9"),
    ("transistor", "420938166-1629953277", "4fe2681f0ce1793cbf71d762f926d564"),
    ("wood", "420938383-1629953354", "b2478b1c65e9a470f360cc6173299d58"),
    ("zipper", "420938385-1629953449", "015bfd289a1782abc77318aa015a728d"),
)
# pill moved to another share on the publisher's server; the file id stayed
_MVTEC_SHARE = {"pill": "https://www.mydrive.ch/shares/43421/11a215a5749fcfb75e331ddd5f8e43ee/download/"}

MVTEC_AD = DatasetInfo(
    name="mvtec_ad", title="MVTec AD (MVTec Anomaly Detection)",
    homepage="https://www.mvtec.com/company/research/datasets/mvtec-ad",
    layout="mvtec",
    categories=tuple(c for c, _, _ in _MVTEC_CATEGORIES),
    licence=CC_BY_NC_SA[0], licence_url=CC_BY_NC_SA[1], licence_summary=CC_BY_NC_SA[2],
    citation="Paul Bergmann, Kilian Batzner, Michael Fauser, David Sattlegger, Carsten Steger: The MVTec "
             "Anomaly Detection Dataset: A Comprehensive Real-World Dataset for Unsupervised Anomaly "
             "Detection. International Journal of Computer Vision 129(4):1038-1059, 2021; and Bergmann et "
             "al.: MVTec AD - A Comprehensive Real-World Dataset for Unsupervised Anomaly Detection. "
             "CVPR 2019.",
    archives=(
        Archive("mvtec_anomaly_detection.tar.xz",
                _MVTEC_BASE + "420938113-1629952094/mvtec_anomaly_detection.tar.xz",
                "sha256:cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d", size="4.9 GB"),
        *(Archive(f"{c}.tar.xz", f"{_MVTEC_SHARE.get(c, _MVTEC_BASE)}{fid}/{c}.tar.xz", f"md5:{md5}",
                  categories=(c,), checksum_source="a third-party list, not MVTec's")
          for c, fid, md5 in _MVTEC_CATEGORIES),
    ),
)

MVTEC_LOCO = DatasetInfo(
    name="mvtec_loco", title="MVTec LOCO AD (logical and structural anomalies)",
    homepage="https://www.mvtec.com/company/research/datasets/mvtec-loco",
    layout="mvtec_loco",
    categories=("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors"),
    licence=CC_BY_NC_SA[0], licence_url=CC_BY_NC_SA[1], licence_summary=CC_BY_NC_SA[2],
    citation="Paul Bergmann, Kilian Batzner, Michael Fauser, David Sattlegger, Carsten Steger: Beyond Dents "
             "and Scratches: Logical Constraints in Unsupervised Anomaly Detection and Localization. "
             "International Journal of Computer Vision 130(4):947-969, 2022.",
    archives=(Archive(
        "mvtec_loco_anomaly_detection.tar.xz",
        "https://www.mydrive.ch/shares/48237/1b9106ccdfbb09a0c414bd49fe44a14a/download/430647091-1646842701"
        "/mvtec_loco_anomaly_detection.tar.xz",
        "sha256:9e7c84dba550fd2e59d8e9e231c929c45ba737b6b6a6d3814100f54d63aae687", size="2.8 GB"),),
    notes=("A defect's mask is a folder of masks, one per defect region (ground_truth/<type>/<image>/"
           "000.png, 001.png, ...): they are merged into one <image>_mask.png.",
           "validation/good is kept beside train/ (the loader reads train/good only).",
           "The published metric for LOCO is sPRO; this project reports AUPRO instead."),
)

VISA = DatasetInfo(
    name="visa", title="VisA (Visual Anomaly)",
    homepage="https://github.com/amazon-science/spot-diff",
    layout="visa",
    categories=("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
                "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum"),
    licence="CC BY 4.0", licence_url="https://creativecommons.org/licenses/by/4.0/",
    licence_summary="Use for any purpose, commercial included; give credit (cite the paper below). "
                    "(The publisher's README says CC BY 4.0; some tools list CC BY-NC-SA 4.0: check the "
                    "LICENSE-DATASET file in the archive for your use.)",
    citation="Yang Zou, Jongheon Jeong, Latha Pemula, Dongqing Zhang, Onkar Dabeer: SPot-the-Difference "
             "Self-Supervised Pre-training for Anomaly Detection and Segmentation. ECCV 2022.",
    archives=(Archive("VisA_20220922.tar",
                      "https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar",
                      "sha256:2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362",
                      size="1.8 GB"),),
    notes=("Split into train/test with the publisher's split_csv/1cls.csv (the 1-class setup): "
           "test/good and test/bad; masks binarised to 0/255.",),
)

BTAD = DatasetInfo(
    name="btad", title="BTAD (beanTech Anomaly Detection)",
    homepage="https://avires.dimi.uniud.it/papers/btad/",
    layout="btad",
    categories=("01", "02", "03"),
    licence=CC_BY_NC_SA[0], licence_url=CC_BY_NC_SA[1], licence_summary=CC_BY_NC_SA[2],
    citation="Pankaj Mishra, Riccardo Verk, Daniele Fornasier, Claudio Piciarelli, Gian Luca Foresti: "
             "VT-ADL: A Vision Transformer Network for Image Anomaly Detection and Localization. "
             "IEEE ISIE 2021.",
    archives=(Archive("btad.zip", "https://avires.dimi.uniud.it/papers/btad/btad.zip",
                      "sha256:461c9387e515bfed41ecaae07c50cf6b10def647b36c9e31d239ab2736b10d2a",
                      size="1.9 GB"),),
    notes=("ok -> good and ko kept as the defect type; masks (PNG or BMP) written as <image>_mask.png.",),
)

MPDD = DatasetInfo(
    name="mpdd", title="MPDD (Metal Parts Defect Detection)",
    homepage="https://github.com/stepanje/MPDD",
    layout="mvtec",
    categories=("bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes"),
    licence=CC_BY_NC_SA[0], licence_url=CC_BY_NC_SA[1], licence_summary=CC_BY_NC_SA[2],
    citation="Stepan Jezek, Martin Jonak, Radim Burget, Pavel Dvorak, Milos Skotak: Deep learning-based "
             "defect detection of metal parts: evaluating current methods in complex conditions. "
             "ICUMT 2021, pp. 66-71, doi:10.1109/ICUMT54235.2021.9631567.",
    archives=(Archive("MPDD.zip", None, None, checksum_source="none published"),),
    manual="The authors share MPDD as a OneDrive folder, not as a file with a direct link: open "
           "https://github.com/stepanje/MPDD, follow its download link, download the folder as MPDD.zip, "
           "then run this command again with --mirror set to the folder that holds MPDD.zip "
           "(or a teacher's server that serves it).",
)

DATASETS = {d.name: d for d in (MVTEC_AD, MVTEC_LOCO, VISA, BTAD, MPDD)}


def get_dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None
