"""``python -m lassi.experiments``: the lassi-experiments CLI."""

import sys

from lassi.experiments.cli import main

sys.exit(main())
