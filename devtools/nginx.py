"""Debian's nginx running the shipped site config (deploy/nginx/booktime.conf).

``render_site`` substitutes only the operator-specific values of that file
(listen port, upstream ports, static and log paths), each of which must
occur in it, so what the topology test runs is the file an operator
installs. ``NginxServer`` runs it unprivileged-style: prefix, pid, temp and
log paths in a directory of its own, ``daemon off``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from devtools.processes import BASE_DIR, ChildProcess, HttpAddress, free_port

SITE = BASE_DIR / "deploy" / "nginx" / "booktime.conf"
# The values in SITE an operator edits, as they appear there.
SHIPPED_LISTEN = "listen 80;"
SHIPPED_UPSTREAMS = ("server 127.0.0.1:8001 ", "server 127.0.0.1:8002 ")
SHIPPED_STATIC = "/srv/booktime/static/"
SHIPPED_LOG_DIR = "/var/log/nginx/"


class NginxUnavailable(RuntimeError):
    """No nginx binary; the message says how to install it."""


def nginx_binary() -> str:
    found = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise NginxUnavailable("no nginx found: apt-get install nginx-light (or set NGINX)")
    return found


def render_site(
    text: str, *, port: int, upstream_ports: Sequence[int], static_dir: Path, log_dir: Path
) -> str:
    """The site config with its operator-specific values replaced, and nothing else."""
    if len(upstream_ports) != len(SHIPPED_UPSTREAMS):
        raise ValueError(f"the shipped config lists {len(SHIPPED_UPSTREAMS)} upstream servers")
    replacements = [
        (SHIPPED_LISTEN, f"listen 127.0.0.1:{port};"),
        *(
            (shipped, f"server 127.0.0.1:{up} ")
            for shipped, up in zip(SHIPPED_UPSTREAMS, upstream_ports, strict=True)
        ),
        (SHIPPED_STATIC, f"{static_dir}/"),
        (SHIPPED_LOG_DIR, f"{log_dir}/"),
    ]
    for old, new in replacements:
        if old not in text:
            raise ValueError(
                f"{old!r} is not in the site config any more: update devtools/nginx.py"
            )
        text = text.replace(old, new)
    return text


class NginxServer(HttpAddress, ChildProcess):
    """nginx serving ``deploy/nginx/booktime.conf`` on a free port in front of ``upstream_ports``.

    Has ``url``, ``ws_url`` and ``origin`` like ``DaphneServer``, so the live
    test clients can talk to it.
    """

    def __init__(self, upstream_ports: Sequence[int], static_dir: Path, port: int = 0) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="booktime-nginx-"))
        self.port = port or free_port()
        self.upstream_ports = list(upstream_ports)
        self.static_dir = static_dir
        super().__init__(name="nginx", log_path=self.workdir / "nginx.out")
        self.conf = self.workdir / "nginx.conf"
        self.write_config()

    @property
    def access_log(self) -> Path:
        return self.workdir / "booktime.access.log"

    def write_config(self) -> None:
        site = render_site(
            SITE.read_text(),
            port=self.port,
            upstream_ports=self.upstream_ports,
            static_dir=self.static_dir,
            log_dir=self.workdir,
        )
        (self.workdir / "booktime.conf").write_text(site)
        mime_types = Path("/etc/nginx/mime.types")
        user = "user root root;\n" if os.geteuid() == 0 else ""  # workers read our temp dirs
        self.conf.write_text(
            f"{user}worker_processes 1;\n"
            f"pid {self.workdir}/nginx.pid;\n"
            f"error_log {self.workdir}/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            + (f"    include {mime_types};\n" if mime_types.exists() else "")
            + f"    client_body_temp_path {self.workdir}/body;\n"
            f"    proxy_temp_path {self.workdir}/proxy;\n"
            f"    fastcgi_temp_path {self.workdir}/fastcgi;\n"
            f"    uwsgi_temp_path {self.workdir}/uwsgi;\n"
            f"    scgi_temp_path {self.workdir}/scgi;\n"
            f"    include {self.workdir}/booktime.conf;\n"
            "}\n"
        )

    def command(self) -> list[str]:
        return [
            nginx_binary(), "-p", str(self.workdir), "-e", str(self.workdir / "error.log"),
            "-c", str(self.conf), "-g", "daemon off;",
        ]  # fmt: skip

    def check_config(self) -> None:
        """``nginx -t`` on the rendered config; raises with nginx's message."""
        import subprocess

        result = subprocess.run(
            [*self.command()[:-2], "-t"], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{result.stderr}")

    def ready(self) -> bool:
        """nginx answers (itself: /metrics is a 404 it serves without the upstreams)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            connection.request("GET", "/metrics")
            return connection.getresponse().status == 404
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.workdir, ignore_errors=True)
