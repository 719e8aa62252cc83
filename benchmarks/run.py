"""Run the cugrad benchmark harness: ``python benchmarks/run.py [--quick|--full] [options]``.

The same as ``cugrad bench``; ``--help`` lists the options. The harness lives in
``cugrad._bench`` so that the installed package can run it too.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from cugrad._bench import main
except ImportError:  # running from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from cugrad._bench import main

if __name__ == "__main__":
    sys.exit(main())
