"""The site test's browser: the browser test's fixture (Debian's Chromium, launched as tests/browser does)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))

from test_lab import browser  # noqa: E402, F401
