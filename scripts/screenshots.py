"""Refresh docs/screenshots/ (tracking page, staff dashboard) from the browser test.

Usage: .venv/bin/python scripts/screenshots.py
Runs frontend/tests/test_screenshots.py against a real daphne and Redis with
BOOKTIME_SCREENSHOT_DIR pointing at docs/screenshots/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    out = ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BOOKTIME_SCREENSHOT_DIR": str(out)}
    command = [sys.executable, "-m", "pytest", "-q", "frontend/tests/test_screenshots.py"]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
