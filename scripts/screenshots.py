"""Refresh docs/screenshots/ (tracking page, staff dashboard, e-mail, push) from the browser tests.

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
    tests = ["frontend/tests/test_screenshots.py", "frontend/tests/test_push_notifications.py"]
    command = [sys.executable, "-m", "pytest", "-q", *tests]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
