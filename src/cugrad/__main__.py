"""``python -m cugrad``: the same command line as the ``cugrad`` console script."""

from __future__ import annotations

import sys

from cugrad._cli import main

if __name__ == "__main__":
    sys.exit(main())
