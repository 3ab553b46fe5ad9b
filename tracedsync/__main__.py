"""``python -m tracedsync``: the command line."""

from .cli import main

raise SystemExit(main())
