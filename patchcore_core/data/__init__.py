"""Images to learn from: the MVTec AD folder layout, the built-in data set
that ships with the project, and public data sets (registry, download,
layout conversion).

Imports: ``util`` and ``pipeline``.
"""
