"""The paper, one file per section: read these in order.

=================  ==========================================================
``backbones``      a frozen ImageNet CNN giving mid-level feature maps
``preprocess``     the paper's resize, centre-crop and normalisation
``features``       Sec. 3.1: locally aware patch features (3x3 average,
                   one grid, pooling to a fixed width)
``coreset``        Sec. 3.2: greedy k-center coreset on a random projection
``memory_bank``    the memory bank M with provenance; exact nearest
                   neighbours (faiss or torch)
``scoring``        Sec. 3.3: patch scores, image score (max, Eq. 7), the
                   anomaly map (upsample, Gaussian sigma 4)
``calibration``    a threshold from held-out good images
``work``           where fit's heavy steps run (the hooks a cluster implements)
``config``         every setting, declared and validated once
``patchcore``      ``PatchCore``: fit, predict, explain, state_dict
=================  ==========================================================

Imports: torch, torchvision, timm, numpy, scipy, faiss, PIL, tqdm, itself
and ``patchcore_core.util``. Nothing here knows about files, data sets,
clusters or the CLI; those layers call into it (see ``PatchCore``'s hooks).
"""
