"""``python -m huimin.cli``: the former home of the ``huimin`` command, kept as an entry
point for scripts and benches. The command lives in :mod:`huimin.wiring.cli` (the top
floor); this is the one module outside ``huimin/wiring/`` allowed to import it."""

import sys

from huimin.wiring.cli import initialise, main

__all__ = ["initialise", "main"]

if __name__ == "__main__":
    sys.exit(main())
