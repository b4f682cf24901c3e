"""Judging a model: image/pixel AUROC, PRO, F1; evaluating a category (cached,
over seeds); the benchmark against the paper's published figures; measuring
approximate search against exact search.

Imports: ``util``, ``pipeline``, ``io``, ``ext`` and ``data``.
"""
