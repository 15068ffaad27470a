"""Test configuration: make tests/factories.py importable and keep torch to few threads."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
