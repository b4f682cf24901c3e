"""Model files: safetensors + JSON (never pickle), and the checks that treat
every file as coming from a stranger.

Imports: ``util``, ``pipeline`` and ``ext``.
"""
