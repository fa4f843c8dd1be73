"""Rerun the engine benchmark: ``python benchmarks/bench_engine.py [--quick] [--only SECTION] [--out FILE]``.

Same as ``distill bench engine``; see docs/engine-benchmark.md for what it measures.
"""

import sys

from distill.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "engine", *sys.argv[1:]]))
