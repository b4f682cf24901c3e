"""The ``patchcore`` command: one module per command, shared options declared once.

* :mod:`.main`: the top-level parser, the dispatch, the error messages and exit codes
  (``patchcore_core.cli.main:main`` is the console script; ``python -m patchcore_core.cli`` runs it);
* :mod:`.options`: the options several commands share (model settings from
  :class:`~patchcore_core.PatchCoreConfig`'s fields, device, data, cluster, nan/inf-refusing
  types) and the checked-config step;
* :mod:`.outputs`: output paths checked before the work, results written whole;
* one module per command: :mod:`.data`, :mod:`.evaluate`, :mod:`.benchmark`, :mod:`.fit`,
  :mod:`.predict`, :mod:`.demo`.

A command module exposes two functions, and :data:`.main.COMMANDS` lists the module:

* ``add_parser(subparsers) -> argparse.ArgumentParser``: adds its sub-parser with
  ``subparsers.add_parser(NAME, ...)``, declares its own options and takes shared ones from
  :mod:`.options`, and returns the parser (main sets ``func=run`` on it);
* ``run(args) -> int``: does the work and returns the exit code (0 done, 1 done with some
  inputs failed). Bad input is raised (``ValueError``, ``DataError``, ``ModelFileError``, ...):
  main prints it as ``error: ...`` and exits with 2. Model settings added with
  ``add_config_options`` are checked by main before ``run`` is called.

A command that hands options it does not know to another program (``patchcore demo``)
sets ``extra_args=[]`` as a default on its parser and finds them in ``args.extra_args``.

Imports: every layer of the library, at the top of each module; the demo only when
``patchcore demo`` runs (gradio is an optional extra).
"""
