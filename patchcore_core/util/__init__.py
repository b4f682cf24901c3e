"""Small helpers every layer may use: atomic writes, the device, safe image
reading, number checks, tables and overlays.

Imports: the standard library and third-party packages only, never another
part of ``patchcore_core``.
"""
