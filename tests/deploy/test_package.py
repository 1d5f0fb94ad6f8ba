"""What an operator installs and runs: the wheel, deploy/ (systemd units, Procfile,
the environment file), used from an installed copy outside the checkout.

The wheel is built from the checkout's files and installed (without its
dependencies, which come from the suite's own environment through a path
entry) into a fresh venv in a temporary directory; every command then runs
from there, with the checkout out of reach.
"""

from __future__ import annotations

import configparser
import http.client
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from devtools.processes import BASE_DIR, ChildProcess, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DEPLOY = BASE_DIR / "deploy"
UNITS = sorted((DEPLOY / "systemd").iterdir())
SHIPPED_VENV = "/srv/booktime/venv"


class Installed:
    """The fresh venv with booktime installed, and an environment to run it with."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.venv = root / "venv"
        self.env = env

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(  # noqa: S603 - fixed argv
            list(argv), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as systemd's EnvironmentFile= reads this file."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("installed")
    source = root / "src"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=BASE_DIR, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in files:
        if (BASE_DIR / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(BASE_DIR / name, source / name)
    pip = [sys.executable, "-m", "pip", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", root / "dist", source],
        check=True, capture_output=True,
    )  # fmt: skip
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    # The dependencies: this environment's site-packages, as a plain path entry.
    purelib = Path(
        subprocess.run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    (purelib / "booktime-deps.pth").write_text(
        str(Path(sysconfig.get_paths()["purelib"]).resolve()) + "\n"
    )
    wheel = next((root / "dist").glob("booktime-*.whl"))
    subprocess.run(
        [*pip, "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index", wheel],
        check=True, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(source)  # nothing of the checkout is left to import from
    # Dependencies' console scripts, as installing them into this venv would write.
    for script in ("daphne",):
        (entry,) = entry_points(group="console_scripts", name=script)
        module, _, attr = entry.value.partition(":")
        path = venv / "bin" / script
        path.write_text(
            f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import {attr.split('.')[0]}\n"
            f"sys.exit({attr}())\n"
        )
        path.chmod(0o755)

    settings = read_env_file(DEPLOY / "booktime.env")
    secret = root / "secret_key"
    secret.write_text(secrets.token_urlsafe(50))
    settings.update(
        SECRET_KEY_FILE=str(secret),
        DATABASE_URL=f"sqlite:///{root / 'booktime.sqlite3'}",
        REDIS_URL=redis_url,
        REDIS_SENTINELS="",
        STATIC_ROOT=str(root / "static"),
        CHANNEL_LAYER_PREFIX=f"{os.environ['CHANNEL_LAYER_PREFIX']}installed-",
        CACHE_KEY_PREFIX=f"{os.environ['CHANNEL_LAYER_PREFIX']}installed-cache",
        ALLOWED_HOSTS="shop.example.com,127.0.0.1",
        SECURE_SSL_REDIRECT="0",  # plain-HTTP probes below; on in the shipped file
    )
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(root), **settings}
    yield Installed(root, env)


def test_the_wheel_holds_the_apps_and_not_the_tests_or_tooling(installed: Installed) -> None:
    found = installed.run(
        installed.bin("python"),
        "-c",
        "import booktime, orders, notifications, frontend, importlib.util as u;"
        "print(booktime.__file__);"
        "print([m for m in ('tests', 'devtools', 'bench', 'orders.tests') if u.find_spec(m)])",
    ).stdout.split("\n")
    assert found[0].startswith(str(installed.venv))
    assert found[1] == "[]"
    licence = list(installed.venv.glob("lib/python*/site-packages/booktime-*.dist-info/**/LICENSE"))
    assert licence, "LICENSE is not in the wheel"


def test_the_console_script_migrates_collects_static_and_passes_check_deploy(
    installed: Installed,
) -> None:
    """deploy/booktime.env, as shipped but for addresses and secrets, passes check --deploy."""
    installed.run(installed.bin("booktime"), "migrate", "--noinput")
    installed.run(installed.bin("booktime"), "collectstatic", "--noinput")
    static = Path(installed.env["STATIC_ROOT"])
    assert (static / "frontend" / "booktime-live.js").is_file()
    assert (static / "admin" / "css" / "base.css").is_file()
    env = {**installed.env, "SECURE_SSL_REDIRECT": "1"}
    result = subprocess.run(
        [installed.bin("python"), "-m", "django", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=installed.root, env={**env, "DJANGO_SETTINGS_MODULE": "booktime.settings"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / name)
    return parser


def exec_start(name: str, instance: str = "") -> list[str]:
    """A unit's ExecStart with the shipped venv path pointed at the installed one."""
    command = unit(name)["Service"]["ExecStart"].replace("%i", instance)
    return shlex.split(command)


def rendered(installed: Installed, command: list[str]) -> list[str]:
    return [part.replace(SHIPPED_VENV, str(installed.venv)) for part in command]


def answers(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path, headers={"Host": "127.0.0.1"})
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def test_systemd_analyze_verifies_the_units(installed: Installed, tmp_path: Path) -> None:
    """The units as shipped, their venv path pointed at the installed copy."""
    for path in UNITS:
        text = path.read_text().replace(SHIPPED_VENV, str(installed.venv))
        (tmp_path / path.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / p.name) for p in UNITS)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )  # fmt: skip
    problems = [
        line
        for line in result.stderr.splitlines()
        # This machine has no "booktime" user; the README's steps create it.
        if line.strip() and "booktime" in line and "user" not in line.lower()
    ]
    assert result.returncode == 0 and not problems, result.stderr


def test_the_units_commands_run_from_the_installed_copy(installed: Installed) -> None:
    # The README's deploy steps migrate before starting the units; this test
    # must not rely on another test having done it (xdist may run it alone).
    installed.run(installed.bin("booktime"), "migrate", "--noinput")
    port = free_port()
    daphne = ChildProcess(
        rendered(installed, exec_start("booktime-daphne@.service", str(port))),
        name="unit-daphne",
        env=installed.env,
    )
    daphne.port = port
    daphne.ready = lambda: answers(port, "/healthz") == 200  # type: ignore[method-assign]
    workers = [
        ChildProcess(rendered(installed, exec_start(name)), name=name, env=installed.env)
        for name in ("booktime-publish.service", "booktime-deliver.service")
    ]
    try:
        daphne.start()
        assert answers(port, "/readyz") == 200
        assert answers(port, "/login/") == 200  # templates and the app, installed
        for worker, line in zip(workers, ("publish_pending: scanning", "deliver:"), strict=True):
            worker.launch()
            wait_for(
                lambda w=worker, s=line: s in w.log_path.read_text() or not w.running,
                60,
                f"{worker.name} to start",
            )
            assert worker.running, worker.log_tail()
    finally:
        for process in (daphne, *workers):
            process.close()
    # The daily prune (a oneshot): its command exists and takes its options.
    installed.run(*rendered(installed, exec_start("booktime-prune.service")), "--help")


def test_the_procfile_commands_run(installed: Installed) -> None:
    entries = dict(
        line.split(":", 1) for line in (DEPLOY / "Procfile").read_text().splitlines() if line
    )
    assert set(entries) == {"release", "web", "publisher", "deliver"}
    installed.run(
        *shlex.split(entries["release"].replace("booktime", installed.bin("booktime"), 1))
    )
    port = free_port()
    web = shlex.split(entries["web"].replace("$PORT", str(port)))
    web[0] = installed.bin(web[0])
    server = ChildProcess(web, name="procfile-web", env=installed.env)
    server.port = port
    server.ready = lambda: answers(port, "/healthz") == 200  # type: ignore[method-assign]
    workers = []
    for name, line in (("publisher", "publish_pending: scanning"), ("deliver", "deliver:")):
        argv = shlex.split(entries[name])
        argv[0] = installed.bin(argv[0])
        workers.append((ChildProcess(argv, name=name, env=installed.env), line))
    try:
        server.start()
        for worker, line in workers:
            worker.launch()
            wait_for(
                lambda w=worker, s=line: s in w.log_path.read_text() or not w.running,
                60,
                f"{worker.name} to start",
            )
            assert worker.running, worker.log_tail()
    finally:
        server.close()
        for worker, _ in workers:
            worker.close()
