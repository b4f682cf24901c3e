"""The ``patchcore`` command: one module per command, shared options declared once.

Imports: every layer of the library; the demo only when ``patchcore demo`` runs.
"""
