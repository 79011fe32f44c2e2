"""python -m bench: the same as python bench/run.py."""

import os
import sys

# The suite's modules import each other by name from this folder.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import main  # noqa: E402

sys.exit(main())
