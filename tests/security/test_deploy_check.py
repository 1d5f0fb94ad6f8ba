"""``manage.py check --deploy`` is clean with production settings from the environment.

Run in a subprocess, as an operator would, with only the environment
variables the README documents. The control: without ``SECRET_KEY`` the same
command fails, naming the development key (so the test cannot pass by
ignoring warnings).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(60),
    "ALLOWED_HOSTS": "shop.example",
    "SECURE_COOKIES": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "CHANNEL_LAYER": "redis",
}


def check_deploy(**overrides: str | None) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # Nothing from the test run leaks in (its DEBUG, prefix, database...).
        if key in ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")
    }
    env["DJANGO_SETTINGS_MODULE"] = "booktime.settings"
    env.update(PRODUCTION)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings() -> None:
    result = check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_on_the_development_secret_key() -> None:
    result = check_deploy(SECRET_KEY=None)
    assert result.returncode != 0
    assert "booktime.W001" in result.stdout + result.stderr


def test_check_deploy_fails_without_https_settings() -> None:
    result = check_deploy(SECURE_COOKIES="0", SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="0")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for check_id in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check_id in output, check_id
