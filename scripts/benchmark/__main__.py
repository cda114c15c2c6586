"""``python -m scripts.benchmark``: see ``scripts/bench --help``."""

import sys

from scripts.benchmark.main import main

sys.exit(main())
