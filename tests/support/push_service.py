"""A local Web Push service process for the push tests: checks what a real one checks,
and decrypts what only the browser could.

Run as ``python -m tests.support.push_service --port P --dir D --vapid-key K``.
It accepts ``POST /push/<id>`` for every subscription the test registered as
``D/<id>.json`` (``{"private_key", "auth", "status"}``: the browser's ECDH
private key and auth secret, base64url, made by ``BrowserKeys``), and for
each request:

- checks the VAPID ``Authorization: vapid t=<JWT>, k=<key>`` (RFC 8292): ``k``
  is the application server key the browser subscribed with (``K``), the JWT
  is ES256-signed by it, ``aud`` is this service's origin, ``exp`` is in the
  future and at most 24 h away, ``sub`` is a ``mailto:`` or ``https:`` URI;
- checks ``Content-Encoding: aes128gcm`` and a ``TTL`` header, and decrypts the
  body (RFC 8291) with ``http_ece`` and the browser's keys;
- appends a JSON line to ``D/requests.jsonl`` (``id``, ``status``, ``error``,
  ``claims``, ``payload``) and answers the subscription's ``status`` (201 by
  default; 404/410 play an expired subscription), 400/401 if a check failed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from devtools.processes import ChildProcess, free_port


def b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def check_vapid(header: str, expected_key: str, audience: str) -> dict[str, Any]:
    """The JWT's claims, if the header is a valid VAPID authorization for ``audience``."""
    scheme, _, params = header.partition(" ")
    if scheme.lower() != "vapid":
        raise Refused(401, f"Authorization scheme {scheme!r} is not vapid")
    parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
    token, key = parts.get("t", ""), parts.get("k", "")
    if key != expected_key:
        raise Refused(401, "k is not the key the subscription was made with")
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        jwt_header = json.loads(b64decode(header_b64))
        claims = json.loads(b64decode(claims_b64))
        signature = b64decode(signature_b64)
    except ValueError as exc:
        raise Refused(401, f"malformed JWT: {exc}") from None
    if jwt_header.get("alg") != "ES256" or len(signature) != 64:
        raise Refused(401, "the JWT must be ES256 with a 64-byte signature")
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64decode(key))
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Refused(401, "bad JWT signature") from None
    now = time.time()
    if claims.get("aud") != audience:
        raise Refused(401, f"aud {claims.get('aud')!r} is not {audience!r}")
    if not isinstance(claims.get("exp"), int) or not now < claims["exp"] <= now + 24 * 3600:
        raise Refused(401, f"exp {claims.get('exp')!r} is not within the next 24 h")
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        raise Refused(401, "sub must be a mailto: or https: URI")
    return claims


def decrypt(body: bytes, subscription: dict[str, Any]) -> str:
    import http_ece

    private_value = int.from_bytes(b64decode(subscription["private_key"]), "big")
    private = ec.derive_private_key(private_value, ec.SECP256R1())
    plain = http_ece.decrypt(
        body,
        private_key=private,
        auth_secret=b64decode(subscription["auth"]),
        version="aes128gcm",
    )
    return plain.decode()


def make_handler(directory: Path, vapid_key: str, audience: str) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            sub_id = self.path.rsplit("/", 1)[-1]
            record: dict[str, Any] = {"id": sub_id, "headers": dict(self.headers.items())}
            try:
                path = directory / f"{sub_id}.json"
                if not self.path.startswith("/push/") or not path.exists():
                    raise Refused(404, "no such subscription")
                subscription = json.loads(path.read_text())
                record["claims"] = check_vapid(
                    self.headers.get("Authorization", ""), vapid_key, audience
                )
                if self.headers.get("Content-Encoding") != "aes128gcm":
                    raise Refused(400, "Content-Encoding must be aes128gcm")
                if self.headers.get("TTL") is None:
                    raise Refused(400, "TTL header missing")
                record["payload"] = decrypt(body, subscription)
                status = int(subscription.get("status", 201))
                record["error"] = ""
            except Refused as exc:
                status, record["error"] = exc.status, str(exc)
            except Exception as exc:  # noqa: BLE001 - a decryption failure is the test's answer
                status, record["error"] = 400, f"{type(exc).__name__}: {exc}"
            record["status"] = status
            with lock, open(directory / "requests.jsonl", "a") as log:
                log.write(json.dumps(record) + "\n")
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a local Web Push service")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--vapid-key", required=True)
    args = parser.parse_args(argv)
    audience = f"http://127.0.0.1:{args.port}"
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), make_handler(args.dir, args.vapid_key, audience)
    )
    print(f"LISTENING {args.port}", flush=True)
    server.serve_forever()
    return 0


@dataclass
class BrowserKeys:
    """What a browser makes when it subscribes: an ECDH P-256 key pair and a 16-byte secret."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def generate(cls) -> BrowserKeys:
        return cls(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @property
    def p256dh(self) -> str:
        return b64encode(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def private_raw(self) -> str:
        return b64encode(self.private_key.private_numbers().private_value.to_bytes(32, "big"))


class PushService(ChildProcess):
    """The push service on 127.0.0.1; ``subscribe()`` registers a browser with it."""

    def __init__(self, directory: Path, vapid_public_key: str, port: int | None = None) -> None:
        super().__init__(name="push-service")
        self.directory = directory
        self.vapid_public_key = vapid_public_key
        self.port = port or free_port(self.host)
        directory.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tests.support.push_service",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--vapid-key",
            self.vapid_public_key,
        ]

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def subscribe(self, name: str, status: int = 201) -> dict[str, Any]:
        """A browser's ``PushSubscription.toJSON()`` for a new subscription ``name``."""
        keys = BrowserKeys.generate()
        (self.directory / f"{name}.json").write_text(
            json.dumps(
                {"private_key": keys.private_raw(), "auth": b64encode(keys.auth), "status": status}
            )
        )
        return {
            "endpoint": f"http://{self.host}:{self.port}/push/{name}",
            "keys": {"p256dh": keys.p256dh, "auth": b64encode(keys.auth)},
        }

    def requests(self, name: str | None = None) -> list[dict[str, Any]]:
        path = self.directory / "requests.jsonl"
        if not path.exists():
            return []
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in entries if name is None or e["id"] == name]


if __name__ == "__main__":
    sys.exit(main())
