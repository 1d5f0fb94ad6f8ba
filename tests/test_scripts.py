"""The README's run command, as a user runs it: scripts/run (set-up included).

Each test uses its own SQLite file and this run's channel-layer prefix, so it
never touches a developer's db.sqlite3 or another run's groups.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

from devtools.processes import BASE_DIR, free_port
from tests.support.live import wait_until

pytestmark = [pytest.mark.live]


@pytest.fixture
def script_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'shop.sqlite3'}", REDIS_URL=redis_url)
    env.pop("DEBUG", None)
    return env


def answers(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_run_sets_up_and_serves_the_demo_shop_and_ctrl_c_stops_everything(
    script_env: dict[str, str],
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = subprocess.Popen(
        [BASE_DIR / "scripts" / "run", "--port", str(port)],
        env=script_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: answers(base + "/login/") == 200, 60, "scripts/run to serve /login/")
        # The streaming consumers are mounted too, not only Django's views.
        assert answers(base + "/events/poll/?stream=staff") == 401
        children = psutil.Process(run.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "daphne" in names and "publish_pending" in names and "manage.py deliver" in names

        run.send_signal(signal.SIGINT)
        assert run.wait(30) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    output = run.stdout.read() if run.stdout else ""
    assert "Demo data ready: 5 new order(s)" in output
    for path in ("/", "/orders/", "/staff/", "/admin/", "/api/docs/"):  # the URLs to open
        assert f"http://127.0.0.1:{port}{path}" in output
    assert "(REDIS_URL)" in output  # it used the Redis it was given
    assert answers(base + "/login/") is None
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_setup_a_second_time_adds_no_orders(script_env: dict[str, str]) -> None:
    for expected in ("5 new order(s)", "0 new order(s)"):
        result = subprocess.run(
            [BASE_DIR / ".venv" / "bin" / "python", "-m", "devtools.devserver", "setup"],
            env=script_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout


def test_run_refuses_an_unreachable_redis_url_with_a_clear_message(
    script_env: dict[str, str],
) -> None:
    script_env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [BASE_DIR / "scripts" / "run", "--port", str(free_port())],
        env=script_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "does not answer PING" in result.stderr
