"""No secret is committed: private keys, cloud/API tokens, real-looking secret keys.

Scans every file git tracks or would track (untracked but not ignored), so a
secret is caught before the commit. The one secret-looking value allowed is
the labelled development ``SECRET_KEY`` in settings (``check --deploy``
warns about it, see test_deploy_check.py).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent.parent

PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Stripe live key": re.compile(r"\b[sr]k_live_[A-Za-z0-9]{16,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    "secret assignment": re.compile(
        r"""(?i)\b(SECRET_KEY|API_KEY|PASSWORD|TOKEN)\s*[:=]\s*["']([^"'\s]{24,})["']"""
    ),
    "URL with a password": re.compile(r"\b[a-z][a-z0-9+]*://[^/\s:@'\"]+:([^@\s/'\"{}]{6,})@"),
}
# Values that look like secrets but are public on purpose: the labelled
# development key, the test users' password (tests/support/fixtures.py) and
# the example URL of the DATABASE_URL tests (tests/test_live_fixtures.py).
ALLOWED_VALUES = ("django-insecure-", "correct-horse-battery-staple", "p%40ss")
SKIP_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".ico", ".woff", ".woff2", ".sqlite3"}


def scan(text: str) -> list[str]:
    """Names of the patterns that match ``text`` (allowed values aside)."""
    found = []
    for name, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            value = match.group(match.lastindex or 0)
            if not value.startswith(ALLOWED_VALUES):
                found.append(f"{name}: {match.group(0)[:60]}")
    return found


def project_files() -> list[Path]:
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],  # noqa: S607
        cwd=BASE_DIR,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [BASE_DIR / name for name in listing.split("\0") if name]


@pytest.mark.parametrize(
    "sample",
    [
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "aws = 'AKIAIOSFODNN7EXAMPLE'",
        "ghp_" + "a1B2" * 9,
        'SECRET_KEY = "k2#9d!x0vq8w7e6r5t4y3u2i1o0p9a8s"',
        "REDIS_URL=redis://default:hunter2hunter2@cache.example:6379/0",
    ],
)
def test_the_scanner_finds_a_planted_secret(sample: str) -> None:
    assert scan(sample)


def test_the_labelled_development_key_is_allowed() -> None:
    assert scan('DEV_SECRET_KEY = "django-insecure-booktime-development-key-do-not-use"') == []


def test_no_file_in_the_repository_holds_a_secret() -> None:
    files = project_files()
    assert any(path.name == "settings.py" for path in files)
    findings = []
    for path in files:
        if path.suffix in SKIP_SUFFIXES or not path.is_file() or path.name == Path(__file__).name:
            continue
        text = path.read_bytes()[:2_000_000].decode("utf-8", "replace")
        findings += [f"{path.relative_to(BASE_DIR)}: {hit}" for hit in scan(text)]
    assert findings == []
