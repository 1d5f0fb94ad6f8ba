"""Access follows the current truth on streams already open.

``notifications.streams.authorize`` decides who may read a stream when it is
subscribed to; this module owns the rule that an *open* connection stops
reading what its principal may no longer read, within about a second of the
change. Three parts:

1. **Announcements** (the signal receivers below). After commit, a change
   that may end a right to read sends ``{"type": "access.changed"}`` through
   the channel layer (on the publisher loop, ``notifications.publish``; a
   Redis outage is logged and never fails the save):

   | change | group | message |
   |---|---|---|
   | a user's ``is_active``, ``is_staff``, ``is_superuser`` or password changed; the user deleted | ``access.user.<uid>`` | re-check |
   | a session deleted (logout, flush, ``cycle_key``, the admin) or ``user_logged_out`` | ``access.user.<uid>`` | ``ended``: that session |
   | an API token deleted | ``access.user.<uid>`` | ``ended``: that token |
   | an order's customer changed, its tracking links revoked (``orders.signals.tracking_links_revoked``), the order deleted | ``order.<id>`` (the stream's own group) | re-check |

   ``ended`` carries a keyed hash of the session key or token
   (``fingerprint``), never the secret itself.

2. **Consumers** (``AccessMixin``, mixed into
   ``notifications.resume.FollowingMixin``). Every authorization, the first
   one included, is made against the principal as it is *now*
   (``authorize_now``), not as it was when the socket opened. A connection
   joins its principal's ``access.user.<uid>`` group with its first stream
   (an order stream's group already is where order changes are announced).
   ``access_changed`` ends the principal at once when ``ended`` names its
   credential; otherwise it re-checks in one database hop (``recheck``):
   the principal (``principal_standing``: the session still stored, same
   user, session hash matching the current password, or the API token still
   there; the user active), then each followed stream with ``authorize``.
   Handlers run in dispatch order, so live events that arrive during a
   re-check wait for its verdict and none is lost or reordered.

3. **A timer** for changes that send no signal: the session's expiry date
   (database sessions) and a periodic re-check every
   ``ACCESS_RECHECK_SECONDS`` (±50 % jitter), which also catches
   ``QuerySet.update()``, raw SQL, expired tracking links and announcements
   lost while Redis was down (a recovered layer also re-checks at once).

Outcome per transport (the hooks ``revoke`` and ``principal_ended``): a
WebSocket gets ``{"type": "error", "code": "forbidden"|"unauthenticated",
"stream": …}`` and that subscription ends; when the principal itself ended
every subscription gets ``unauthenticated`` and the socket closes with 4401.
SSE sends ``event: error`` and ends; a held long-poll answers 401/403 JSON.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from importlib import import_module
from types import MappingProxyType
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
    user_logged_out,
)
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_delete, post_init, post_save
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from booktime.errors import OUTAGE_ERRORS, Unavailable
from notifications import sql
from notifications.hops import database_hop
from notifications.publish import run_on_publisher_loop
from notifications.streams import StreamError, Subscription, authorize
from orders.models import Order

logger = logging.getLogger(__name__)

ACCESS_CHANGED = "access.changed"  # lands in the consumers' ``access_changed`` handler
# Close code of a WebSocket whose principal ended (session, token or user).
SIGNED_OUT_CLOSE_CODE = 4401
# After a re-check the database could not answer, try again this soon.
RECHECK_RETRY_SECONDS = 2.0
# Re-check this long after the session's expiry date, so the store sees it expired.
EXPIRY_MARGIN_SECONDS = 0.05

# User fields whose change can end a right to read (post_init remembers them).
USER_FIELDS = ("is_active", "is_staff", "is_superuser", "password")
# Order fields likewise (tracking links: the domain's ``tracking_links_revoked``).
ORDER_FIELDS = ("customer_id",)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Entries in each per-process cache of resolving a session (decoded sessions,
# session hashes, fingerprints; each entry a few hundred bytes): a client that
# reconnects or polls again brings the same stored session.
RESOLUTION_CACHE_SIZE = 4096


def fingerprint(secret: str) -> str:
    """A keyed hash of a session key or API token: names it in a message, reveals
    nothing. Computed once per process per secret and key (every resolution of
    a session makes one)."""
    return _fingerprint(secret, settings.SECRET_KEY)


def forget_resolutions() -> None:
    """Empty the per-process caches of resolving sessions (as a new process
    starts: ``python -m bench.hop`` times that case)."""
    for cache in (_fingerprint, _decoded, _password_hashes):
        cache.cache_clear()


@functools.lru_cache(maxsize=RESOLUTION_CACHE_SIZE)
def _fingerprint(secret: str, key: str) -> str:
    return salted_hmac("booktime.access", secret, key, algorithm="sha256").hexdigest()[:32]


def user_group(user_id: Any) -> str:
    """The group every connection of a signed-in user (session or token) joins."""
    name = str(user_id)
    return f"access.user.{name if _SAFE_NAME.fullmatch(name) else fingerprint(name)}"


def order_group(order_id: Any) -> str:
    """Changes to an order are announced on its stream's own group: exactly the
    connections that follow it are members already."""
    return f"order.{order_id}"


# -- who is asking, then and now ------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who a connection reads as: a user through a session or an API token, or nobody
    (tracking links only). Fixed by the connection's first authorization.

    ``pending``: a session cookie whose user is not looked up yet (the
    stream routes resolve no user at the handshake); the first
    authorization resolves it in its own database hop (``current``), so a
    handshake costs no hop of its own.

    ``session_ended``: anonymous because the session cookie it brought signs
    nobody in any more (logged out, flushed, expired, password changed, user
    deactivated). Where anonymous is refused as ``unauthenticated``, that is
    the sign-in ending (``PrincipalEnded``; a WebSocket closes with 4401),
    whether it ended before the handshake or after it: the handshake no
    longer looks the user up, so the two cannot be told apart, and to the
    browser holding the cookie they mean the same."""

    user_id: Any = None  # None: anonymous
    session_key: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    credential: str | None = field(default=None, compare=False)  # fingerprint of either
    pending: bool = field(default=False, compare=False)
    session_ended: bool = field(default=False, compare=False)

    @classmethod
    def of(cls, scope: dict[str, Any]) -> Principal:
        user = scope.get("user")
        if user is None:
            # No user resolved (``notifications.auth.StreamAuthMiddlewareStack``):
            # the session cookie, if any, is looked up by the first authorization.
            key = (scope.get("cookies") or {}).get(settings.SESSION_COOKIE_NAME)
            return cls(session_key=key, pending=True) if key else cls()
        if not user.is_authenticated:
            return cls()
        token = scope.get("api_token")
        if token:
            return cls(user.pk, api_token=token, credential=fingerprint(token))
        key = getattr(scope.get("session"), "session_key", None)
        return cls(user.pk, session_key=key, credential=fingerprint(key) if key else None)

    @property
    def group(self) -> str | None:
        return None if self.user_id is None else user_group(self.user_id)


class PrincipalEnded(StreamError):
    """The connection's session, API token or user is gone: ``unauthenticated``."""

    def __init__(self) -> None:
        super().__init__("unauthenticated", "your sign-in has ended; sign in again")


@dataclass
class Standing:
    """A principal as it is now: its user (``AnonymousUser`` for an anonymous
    principal; None once it ended) and when its session expires (database
    sessions; None when unknown or not a session)."""

    user: Any
    expires_at: datetime | None = None


def session_store(key: str) -> Any:
    """The session engine's store for ``key`` (its ``session_key`` is None when
    the engine rejects the key's form)."""
    return import_module(settings.SESSION_ENGINE).SessionStore(key)


def read_session(key: str, store: Any = None) -> tuple[Mapping[str, Any], datetime | None]:
    """A session's data and expiry as stored now ({} when gone or expired)."""
    store = store if store is not None else session_store(key)
    model_class = getattr(store, "get_model_class", None)
    if model_class is None:
        return store.load(), None
    # A database session (``db`` or ``cached_db``): its row has the true expiry,
    # and a deleted row is seen even if a cache still holds the data. In SQL:
    # once per subscribe (notifications.sql).
    model = model_class()
    rows = sql.run(_session_select(model, sql.vendor()), [key, sql.when(timezone.now())])
    if not rows:
        return {}, None
    data, expire_date = rows[0]
    return decoded_session(store, data), sql.convert(model, "expire_date", expire_date)


class _Undecodable(Exception):
    """Data the engine decodes to nothing (tampered, or another key): not kept."""


def decoded_session(store: Any, data: str) -> Mapping[str, Any]:
    """``store.decode(data)``, read-only, decoded once per process for the same
    stored text and keys. The row is still read on every resolution (a session
    deleted or expired is seen at once); only the signature check and the
    parse of text already checked are skipped (profiled: 8 % of an SSE open,
    4 % of a WebSocket connect; docs/performance.md, round 5)."""
    keys = (settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS), settings.SESSION_SERIALIZER)
    try:
        return _decoded(type(store), data, keys)
    except _Undecodable:
        return {}  # not kept: decoded (and reported by Django) every time


@functools.lru_cache(maxsize=RESOLUTION_CACHE_SIZE)
def _decoded(store_class: type, data: str, keys: tuple[Any, ...]) -> Mapping[str, Any]:
    decoded = store_class().decode(data)
    if not decoded:
        raise _Undecodable
    return MappingProxyType(decoded)


def session_hashes(user: Any) -> tuple[str, ...]:
    """The session hashes ``user``'s current password allows (the current key's,
    then each ``SECRET_KEY_FALLBACKS`` one), computed once per process per
    password hash and keys for Django's own ``get_session_auth_hash``."""
    cls = type(user)
    if (
        cls.get_session_auth_hash is not AbstractBaseUser.get_session_auth_hash
        or cls.get_session_auth_fallback_hash is not AbstractBaseUser.get_session_auth_fallback_hash
        or cls._get_session_auth_hash is not AbstractBaseUser._get_session_auth_hash
    ):
        return (user.get_session_auth_hash(), *user.get_session_auth_fallback_hash())
    keys = (settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS))
    return _password_hashes(cls, user.password, keys)


@functools.lru_cache(maxsize=RESOLUTION_CACHE_SIZE)
def _password_hashes(cls: type, password: str, keys: tuple[Any, ...]) -> tuple[str, ...]:
    # Django's methods read only ``password`` (checked by ``session_hashes``).
    user = cls(password=password)
    return (user.get_session_auth_hash(), *user.get_session_auth_fallback_hash())


@functools.cache
def _session_select(model: Any, vendor: str) -> str:
    expires = sql.column(model, "expire_date")
    return (
        f"SELECT {sql.column(model, 'session_data')}, {expires} FROM {sql.table(model)} "
        f"WHERE {sql.column(model, 'session_key')} = %s AND {expires} > %s"
    )


def user_by_id(backend: Any, user_id: Any) -> Any:
    """``backend.get_user(user_id)``; for Django's ``ModelBackend`` one SQL
    statement instead of an ORM query (once per subscribe; notifications.sql),
    reading only what the access rule reads (the key and ``USER_FIELDS``);
    any other field loads when first read, as a deferred field does."""
    if type(backend).get_user is not ModelBackend.get_user:
        return backend.get_user(user_id)
    model = get_user_model()
    statement, names = _user_select(model, sql.vendor())
    rows = sql.run(statement, [sql.prep(model, model._meta.pk.name, user_id)])
    if not rows:
        return None
    user = sql.load(model, names, rows[0])
    return user if backend.user_can_authenticate(user) else None


@functools.cache
def _user_select(model: Any, vendor: str) -> tuple[str, tuple[str, ...]]:
    fields = [f for f in model._meta.concrete_fields if f.primary_key or f.name in USER_FIELDS]
    statement = (
        f"SELECT {', '.join(sql.column(model, f.name) for f in fields)} "
        f"FROM {sql.table(model)} WHERE {sql.column(model, model._meta.pk.name)} = %s"
    )
    return statement, tuple(f.attname for f in fields)


def session_standing(
    principal: Principal, stored: tuple[Mapping[str, Any], datetime | None] | None = None
) -> Standing:
    """``django.contrib.auth.get_user``'s checks, read-only.

    Django's version flushes or re-keys the session when the hash does not
    match; here the session belongs to a browser that is not asking, so this
    only reads: the stored session, its user and backend, its hash against
    the user's current one (or a ``SECRET_KEY_FALLBACKS`` one).
    """
    key = principal.session_key
    assert key is not None
    data, expires_at = stored if stored is not None else read_session(key)
    ended = Standing(None)
    try:
        user_id = get_user_model()._meta.pk.to_python(data[SESSION_KEY])
        backend_path = data[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return ended
    if user_id != principal.user_id or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return ended
    user = user_by_id(load_backend(backend_path), user_id)
    if user is None or not user.is_active:
        return ended
    if hasattr(user, "get_session_auth_hash"):
        stored_hash = data.get(HASH_SESSION_KEY)
        hashes = session_hashes(user)
        if not stored_hash or not any(constant_time_compare(stored_hash, h) for h in hashes):
            return ended
    return Standing(user, expires_at)


def resolve_pending(principal: Principal) -> tuple[Principal, Standing]:
    """Whom a session cookie signs in, now: what channels' ``AuthMiddleware``
    would have found at the handshake (a session that is gone, expired, or
    whose user or password hash no longer matches reads as anonymous)."""
    key = principal.session_key
    assert key is not None
    store = session_store(key)
    if store.session_key is None:
        return Principal(), Standing(AnonymousUser())  # not a key the store accepts
    stored = read_session(key, store)
    if not stored[0]:  # gone or expired: a sign-in that ended (see ``Principal``)
        return Principal(session_ended=True), Standing(AnonymousUser())
    try:
        user_id = get_user_model()._meta.pk.to_python(stored[0][SESSION_KEY])
    except (KeyError, ValidationError):
        return Principal(), Standing(AnonymousUser())  # a visitor's session: never signed in
    resolved = Principal(user_id, session_key=key, credential=fingerprint(key))
    standing = session_standing(resolved, stored)
    if standing.user is None:
        return Principal(session_ended=True), Standing(AnonymousUser())
    return resolved, standing


def current(principal: Principal) -> tuple[Principal, Standing]:
    """The principal (resolved if pending) and its standing now. Synchronous."""
    if principal.pending:
        return resolve_pending(principal)
    return principal, principal_standing(principal)


def principal_standing(principal: Principal) -> Standing:
    """The principal now. Synchronous: it queries the database."""
    if principal.user_id is None:
        return Standing(AnonymousUser())
    if principal.session_key is not None:
        return session_standing(principal)
    if principal.api_token is not None:
        from rest_framework.authtoken.models import Token

        token = Token.objects.select_related("user").filter(key=principal.api_token).first()
        if token is None or token.user_id != principal.user_id or not token.user.is_active:
            return Standing(None)
        return Standing(token.user)
    # Signed in without a session or token (a scope built in a test): the user row.
    user = get_user_model()._default_manager.filter(pk=principal.user_id, is_active=True).first()
    return Standing(user)


def authorize_principal(
    principal: Principal, stream: Any, token: str | None
) -> tuple[Subscription, Standing, Principal]:
    """``authorize`` for the principal as it is now (resolved if pending); raises
    ``PrincipalEnded`` or ``StreamError``. Synchronous."""
    principal, standing = current(principal)
    if standing.user is None:
        raise PrincipalEnded()
    try:
        return authorize(standing.user, stream, token), standing, principal
    except StreamError as exc:
        if principal.session_ended and exc.code == "unauthenticated":
            raise PrincipalEnded() from None
        raise


def _authorize_then(
    principal: Principal,
    stream: Any,
    token: str | None,
    then: Callable[[Subscription], Any] | None,
) -> tuple[Subscription, Standing, Principal, Any]:
    # ``authorize_principal`` looked up at call time (tests wrap it).
    subscription, standing, principal = authorize_principal(principal, stream, token)
    return subscription, standing, principal, None if then is None else then(subscription)


@dataclass
class Verdict:
    """What a re-check found: the principal ended, or which followed streams are refused."""

    ended: bool = False
    refused: dict[str, StreamError] = field(default_factory=dict)  # group -> refusal
    expires_at: datetime | None = None


def recheck(principal: Principal, grants: list[tuple[str, str, str | None]]) -> Verdict:
    """Re-validate the principal, then each ``(group, stream, tracking token)`` it
    follows with ``authorize``: one database hop. Synchronous."""
    _, standing = current(principal)
    if standing.user is None:
        return Verdict(ended=True)
    verdict = Verdict(expires_at=standing.expires_at)
    for group, stream, token in grants:
        try:
            authorize(standing.user, stream, token)
        except StreamError as exc:
            verdict.refused[group] = exc
    return verdict


# -- the consumer side -----------------------------------------------------------------


class AccessMixin:
    """The re-checking half of ``notifications.resume.FollowingMixin``, which mixes it in.

    Transports implement ``revoke`` (end one subscription with an error) and
    may implement ``principal_ended`` (after every subscription was revoked).
    """

    scope: dict[str, Any]
    channel_layer: Any
    channel_name: str
    followed: dict[str, Any]  # group -> Followed
    local_messages: asyncio.Queue[dict[str, Any]]

    async def unfollow(self, group: str) -> None:
        raise NotImplementedError

    def setup_access(self) -> None:
        """Per-connection state (from ``FollowingMixin.setup_state``)."""
        self.principal = Principal.of(self.scope)
        self.signed_out = False  # the principal ended; nothing more is authorized
        self.credentials: dict[str, str | None] = {}  # group -> tracking token it was granted with
        self.access_groups: list[str] = []
        self.access_timer: asyncio.TimerHandle | None = None
        self.watching_access = False
        self.session_expires_at: datetime | None = None

    # -- hooks for transports --------------------------------------------------

    async def revoke(self, subscription: Subscription, error: StreamError) -> None:
        """End one subscription the principal may no longer read, telling the client."""
        await self.unfollow(subscription.group)

    async def principal_ended(self) -> None:
        """Called after every subscription was revoked because the principal ended."""

    # -- authorizing -------------------------------------------------------------

    async def authorize_now(self, stream: Any, token: str | None) -> Subscription:
        """``authorize`` against the principal as it is now; raises ``StreamError``
        (``PrincipalEnded`` when the principal itself is gone) or ``Unavailable``."""
        subscription, _ = await self.authorize_then(stream, token, None)
        return subscription

    async def authorize_then(
        self, stream: Any, token: str | None, then: Callable[[Subscription], Any] | None
    ) -> tuple[Subscription, Any]:
        """``authorize_now``, then ``then(subscription)`` (synchronous, e.g. the
        first backlog page) in the same database hop: one thread hop per
        subscribe (docs/performance.md). Returns (subscription, its result)."""
        if self.signed_out:
            raise PrincipalEnded()
        try:
            subscription, standing, principal, result = await database_hop(
                _authorize_then, self.principal, stream, token, then
            )
        except OUTAGE_ERRORS as exc:
            raise Unavailable() from exc
        except PrincipalEnded:
            self.signed_out = True
            raise
        self.principal = principal
        self.credentials[subscription.group] = token
        self.session_expires_at = standing.expires_at
        return subscription, result

    # -- watching --------------------------------------------------------------------

    async def watch_access(self) -> None:
        """Called once a stream's group is joined: hear of changes to the principal,
        and re-check on the timer."""
        self.watching_access = True
        group = self.principal.group
        if group is not None and group not in self.access_groups:
            self.access_groups.append(group)
            await self.join_access_groups()
        if self.access_timer is None:
            self.schedule_recheck()

    async def join_access_groups(self) -> None:
        """Join (or refresh) the access groups; a layer failure waits for the next re-check."""
        try:
            for group in self.access_groups:
                await self.channel_layer.group_add(group, self.channel_name)
        except Exception as exc:  # noqa: BLE001 - Redis down: the timer and recovery retry
            logger.info("could not join the access group (%s); will retry", exc)

    async def stop_access(self) -> None:
        """The connection follows nothing any more: no timer, no access groups."""
        self.watching_access = False
        if self.access_timer is not None:
            self.access_timer.cancel()
            self.access_timer = None
        for group in self.access_groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # noqa: BLE001 - layer down; the entry expires
                logger.debug("group_discard failed for %s", group, exc_info=True)
        self.access_groups.clear()

    def schedule_recheck(self, delay: float | None = None) -> None:
        """The next timed re-check: at the session's expiry or after
        ``ACCESS_RECHECK_SECONDS`` with jitter, whichever comes first."""
        if self.access_timer is not None:
            self.access_timer.cancel()
        if delay is None:
            delay = settings.ACCESS_RECHECK_SECONDS * (0.5 + random.random())
            if self.session_expires_at is not None:
                left = (self.session_expires_at - timezone.now()).total_seconds()
                delay = min(delay, max(left, 0.0) + EXPIRY_MARGIN_SECONDS)
        self.access_timer = asyncio.get_running_loop().call_later(
            delay, self.local_messages.put_nowait, {"type": ACCESS_CHANGED, "reason": "timer"}
        )

    # -- the channel-layer handler ---------------------------------------------------

    async def access_changed(self, message: dict[str, Any]) -> None:
        """Something this connection reads may have changed: act on it now."""
        if not self.watching_access:
            return
        ended = message.get("ended")
        if ended is not None:
            # One session or token ended: only the connection that used it.
            if self.principal.credential is not None and constant_time_compare(
                ended, self.principal.credential
            ):
                await self.end_principal()
            return
        await self.recheck_access()

    async def recheck_access(self) -> None:
        """Re-validate the principal and every followed stream; end what is refused."""
        if not self.watching_access:
            return
        await self.join_access_groups()  # refreshes membership; re-joins after an outage
        grants = [
            (group, followed.subscription.stream, self.credentials.get(group))
            for group, followed in self.followed.items()
        ]
        try:
            verdict = await database_hop(recheck, self.principal, grants)
        except OUTAGE_ERRORS as exc:
            # Open streams keep delivering through a database outage; try again soon.
            logger.info("access re-check failed (%s); retrying", exc)
            self.schedule_recheck(RECHECK_RETRY_SECONDS)
            return
        if verdict.ended:
            await self.end_principal()
            return
        self.session_expires_at = verdict.expires_at
        for group, error in verdict.refused.items():
            followed = self.followed.get(group)
            if followed is not None:
                await self.revoke(followed.subscription, error)
        if self.watching_access:
            self.schedule_recheck()

    async def end_principal(self) -> None:
        """The session, token or user is gone: revoke everything, then ``principal_ended``."""
        self.signed_out = True
        error = PrincipalEnded()
        for followed in list(self.followed.values()):
            await self.revoke(followed.subscription, error)
        await self.stop_access()
        await self.principal_ended()


# -- announcements (signal receivers) ------------------------------------------------


async def _group_send(group: str, message: dict[str, Any]) -> None:
    await get_channel_layer().group_send(group, message)


def send_access_changed(group: str, message: dict[str, Any]) -> None:
    """Send now; a layer outage is logged (the timer re-checks), never raised."""
    try:
        run_on_publisher_loop(_group_send, group, message)
    except Exception as exc:  # noqa: BLE001 - must not fail the change that announced it
        logger.warning(
            "could not announce an access change to %s (%s: %s); open streams re-check "
            "within ACCESS_RECHECK_SECONDS",
            group,
            type(exc).__name__,
            exc,
        )


def announce(group: str, *, using: str | None = None, **fields: Any) -> None:
    """Tell ``group`` once the current transaction commits (nothing if it rolls back)."""
    message = {"type": ACCESS_CHANGED, **fields}
    transaction.on_commit(partial(send_access_changed, group, message), using=using)


_UNKNOWN = object()  # a field not loaded (deferred) when the instance was made


def _remember(instance: Any, names: tuple[str, ...]) -> None:
    # ``__dict__``: a deferred field is not loaded (no query); it counts as unknown.
    instance._access_state = tuple(instance.__dict__.get(name, _UNKNOWN) for name in names)


def _changed(instance: Any, names: tuple[str, ...]) -> bool:
    before = getattr(instance, "_access_state", None)
    now = tuple(instance.__dict__.get(name, _UNKNOWN) for name in names)
    instance._access_state = now
    return before is None or any(
        old is _UNKNOWN or old != new for old, new in zip(before, now, strict=True)
    )


def user_initialised(sender: type, instance: Any, **kwargs: Any) -> None:
    _remember(instance, USER_FIELDS)


def user_saved(sender: type, instance: Any, created: bool, **kwargs: Any) -> None:
    if _changed(instance, USER_FIELDS) and not created and not kwargs.get("raw"):
        announce(user_group(instance.pk), using=kwargs.get("using"))


def user_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    announce(user_group(instance.pk), using=kwargs.get("using"))


def order_initialised(sender: type, instance: Order, **kwargs: Any) -> None:
    _remember(instance, ORDER_FIELDS)


def order_saved(sender: type, instance: Order, created: bool, **kwargs: Any) -> None:
    if _changed(instance, ORDER_FIELDS) and not created and not kwargs.get("raw"):
        announce(order_group(instance.pk), using=kwargs.get("using"))


def order_deleted(sender: type, instance: Order, **kwargs: Any) -> None:
    announce(order_group(instance.pk), using=kwargs.get("using"))


def links_revoked(sender: type, order_id: int, **kwargs: Any) -> None:
    announce(order_group(order_id))


def session_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    if instance.expire_date <= timezone.now():
        return  # expired: its connections' timers ended it at the expiry date
    user_id = instance.get_decoded().get(SESSION_KEY)
    if user_id is not None:
        announce(
            user_group(user_id),
            using=kwargs.get("using"),
            ended=fingerprint(instance.session_key),
        )


def logged_out(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    # Sent before logout() flushes the session: name the session, not "re-check".
    key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and key:
        announce(user_group(user.pk), ended=fingerprint(key))


def token_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    announce(
        user_group(instance.user_id), using=kwargs.get("using"), ended=fingerprint(instance.pk)
    )


def connect_signals() -> None:
    """Connect the receivers (from ``NotificationsConfig.ready``)."""
    from django.contrib.sessions.models import Session
    from rest_framework.authtoken.models import Token

    user_model = get_user_model()
    uid = "notifications.access."
    post_init.connect(user_initialised, sender=user_model, dispatch_uid=uid + "user_init")
    post_save.connect(user_saved, sender=user_model, dispatch_uid=uid + "user_saved")
    post_delete.connect(user_deleted, sender=user_model, dispatch_uid=uid + "user_deleted")
    post_init.connect(order_initialised, sender=Order, dispatch_uid=uid + "order_init")
    post_save.connect(order_saved, sender=Order, dispatch_uid=uid + "order_saved")
    post_delete.connect(order_deleted, sender=Order, dispatch_uid=uid + "order_deleted")
    post_delete.connect(session_deleted, sender=Session, dispatch_uid=uid + "session_deleted")
    post_delete.connect(token_deleted, sender=Token, dispatch_uid=uid + "token_deleted")
    user_logged_out.connect(logged_out, dispatch_uid=uid + "logged_out")
    try:  # the domain's own word that an order's links stopped working
        from orders.signals import tracking_links_revoked
    except ImportError:  # a domain without it: owner changes are still seen by order_saved
        return
    tracking_links_revoked.connect(links_revoked, dispatch_uid=uid + "links_revoked")
