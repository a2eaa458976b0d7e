"""``python -m aiotaskq``: the command line (see aiotaskq.cli)."""

from .cli import main

raise SystemExit(main())
