"""The PatchCore Gradio demo: ``python -m demo`` in a checkout, ``patchcore demo`` or
``python -m patchcore_demo`` where the package is installed (see ``--help``).

:mod:`demo.logic` holds the work as plain functions; :mod:`demo.app` builds
the page (``build_demo``); :mod:`demo.__main__` is the command line. Nothing
heavy happens at import.
"""
