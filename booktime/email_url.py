"""``EMAIL_URL`` → Django e-mail settings (a small parser; ``dj-email-url`` is unmaintained).

Forms:

- ``console:``: print e-mails to the worker's output (the development default);
- ``smtp://user:pw@host:587/?tls=1`` (STARTTLS), ``smtps://...:465`` or
  ``smtp://...?ssl=1`` (implicit TLS), ``?timeout=10`` (seconds, default 30); user and password are
  URL-decoded, so ``%40`` in a user name is ``@``;
- ``locmem:`` (tests), ``dummy:`` (drop everything), ``file:///path/to/dir``;
- ``backend:dotted.path.EmailBackend``: any Django e-mail backend, e.g.
  ``backend:anymail.backends.mailgun.EmailBackend`` (django-anymail; its
  ``ANYMAIL`` settings come from ``ANYMAIL_*`` variables, see the README).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

BACKENDS = {
    "console": "django.core.mail.backends.console.EmailBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
    "dummy": "django.core.mail.backends.dummy.EmailBackend",
    "file": "django.core.mail.backends.filebased.EmailBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "smtps": "django.core.mail.backends.smtp.EmailBackend",
}
_TRUE = {"1", "true", "yes", "on"}


def parse_email_url(url: str) -> dict[str, Any]:
    """The ``EMAIL_*`` settings ``url`` stands for; ``ValueError`` naming what is wrong."""
    scheme, sep, rest = url.partition(":")
    scheme = scheme.strip().lower()
    if not sep:
        raise ValueError(f"expected scheme:..., e.g. console: or smtp://host:587, got {url!r}")
    if scheme == "backend":
        if not rest or "." not in rest:
            raise ValueError("backend: needs a dotted path to an e-mail backend class")
        return {"EMAIL_BACKEND": rest}
    if scheme not in BACKENDS:
        raise ValueError(f"unknown scheme {scheme!r} (one of {', '.join(sorted(BACKENDS))})")
    config: dict[str, Any] = {"EMAIL_BACKEND": BACKENDS[scheme]}
    if scheme == "file":
        path = urlsplit(url).path
        if not path:
            raise ValueError("file: needs a directory, e.g. file:///var/mail/booktime")
        config["EMAIL_FILE_PATH"] = path
    if scheme not in ("smtp", "smtps"):
        return config
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("smtp: needs a host, e.g. smtp://user:pw@smtp.example.com:587")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number") from None
    query = {k.lower(): v[-1].lower() for k, v in parse_qs(parts.query).items()}
    ssl = scheme == "smtps" or query.get("ssl") in _TRUE
    tls = query.get("tls") in _TRUE
    if ssl and tls:
        raise ValueError("choose one of tls=1 (STARTTLS) and ssl=1 / smtps:// (implicit TLS)")
    config.update(
        EMAIL_HOST=parts.hostname,
        EMAIL_PORT=port or (465 if ssl else 587 if tls else 25),
        EMAIL_HOST_USER=unquote(parts.username or ""),
        EMAIL_HOST_PASSWORD=unquote(parts.password or ""),
        EMAIL_USE_TLS=tls,
        EMAIL_USE_SSL=ssl,
    )
    try:
        config["EMAIL_TIMEOUT"] = int(query.get("timeout", "30"))
    except ValueError:
        raise ValueError("timeout must be a whole number of seconds") from None
    return config
