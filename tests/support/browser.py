"""Debian's Chromium for the browser tests: where it is and how it is started.

Headless as root needs ``--no-sandbox``; the rest keeps Chromium from
reaching the network on its own (only loopback is reachable here).
"""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
