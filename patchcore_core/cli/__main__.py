"""``python -m patchcore_core.cli``: the ``patchcore`` command."""

from patchcore_core.cli.main import main

raise SystemExit(main())
