"""``GET /api/health``: is every part Tower depends on working right now?

Open to anyone (load balancers and monitors call it): anonymous callers get the status alone;
signed-in callers (session or API token) get every check's states, numbers and short error
messages, scrubbed of secrets, URL credentials and local file paths. Every check runs on
each request (nothing is cached), concurrently, each bounded by its own timeout, so a hung part
makes the answer slower by at most that timeout and never hangs the endpoint. 200 when all is
well, 503 naming what failed. The view only reads: keeping ``Backend`` rows up to date is the
engine's health poller's job.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_q.brokers.redis_broker import Redis as RedisBroker
from django_q.conf import Conf
from django_q.humanhash import humanize
from django_q.status import Stat
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from generation.comfyui.client import ComfyClient
from generation.comfyui.errors import ComfyError
from generation.models import Backend

logger = logging.getLogger(__name__)

# Seconds each check may take. Short: a monitor polls this, and a slow answer is a bad answer.
CHECK_TIMEOUT = 2.0
BACKEND_TIMEOUT = 3.0

Check = dict[str, Any]


# --- The view ------------------------------------------------------------------------------------


@never_cache
@require_GET
async def health_view(request: HttpRequest) -> JsonResponse:
    report = await collect()
    status = 200 if report["status"] == "ok" else 503
    # Worker host names, backend names, VRAM and free disk are for the studio's people; a load
    # balancer or a stranger learns only whether Tower is well.
    body = report if await _signed_in(request) else {"status": report["status"]}
    response = JsonResponse(body, status=status)
    # A 503 here is the answer, not a server error: _log_change says it once, and LOGGING's
    # ExpectedAnswers filter (tower.core.logs) drops Django's ERROR line for each request.
    _log_change(report["failing"])
    return response


async def _signed_in(request: HttpRequest) -> bool:
    """A session user, or a valid API token (monitors that want the detail send one)."""
    try:
        if (await request.auser()).is_authenticated:
            return True
        return await sync_to_async(_token_user_exists)(request)
    except DatabaseError:
        return False  # sessions and tokens live in the database: nobody can be identified


def _token_user_exists(request: HttpRequest) -> bool:
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework.request import Request

    from tower.auth import ApiTokenAuthentication

    try:
        return bool(ApiTokenAuthentication().authenticate(Request(request)))
    except AuthenticationFailed:
        return False


_last_failing: tuple[str, ...] = ()  # this process's last answer


def _log_change(failing: list[str]) -> None:
    """Log when the health of Tower changes (per process): a warning naming what failed, or that
    all is well again; the same answer again is logged at DEBUG."""
    global _last_failing
    now = tuple(failing)
    if now == _last_failing:
        logger.debug("health: %s", ", ".join(now) or "ok")
    elif now:
        logger.warning("health: degraded, failing: %s", ", ".join(now))
    else:
        logger.info("health: ok again (was failing: %s)", ", ".join(_last_failing))
    _last_failing = now


async def collect() -> dict[str, Any]:
    """Run every check concurrently and assemble the report."""
    database, broker, channel_layer, storage, workers, (backends, listing_error) = await asyncio.gather(
        check_database(),
        check_broker(),
        check_channel_layer(),
        check_storage(),
        check_workers(),
        check_backends(),
    )
    if listing_error and database["ok"]:
        database = {**database, "ok": False, "error": f"cannot read the backends: {listing_error}"}
    checks: dict[str, Any] = {
        "database": database,
        "broker": broker,
        "channel_layer": channel_layer,
        "storage": storage,
        "workers": workers,
        "backends": backends,
    }
    failing = [name for name, check in checks.items() if name != "backends" and not check["ok"]]
    if any(not backend["reachable"] for backend in backends):
        failing.append("backends")
    return {"status": "degraded" if failing else "ok", "failing": failing, "checks": checks}


# --- Checks: each returns a dict with "ok", and "error" when not ok ------------------------------


async def check_database() -> Check:
    """``SELECT 1`` on the default database."""
    vendor = connections[DEFAULT_DB_ALIAS].vendor
    return {"vendor": vendor, **await _timed(sync_to_async(_select_one), CHECK_TIMEOUT)}


def _select_one() -> None:
    connection = connections[DEFAULT_DB_ALIAS]
    with transaction.atomic(using=DEFAULT_DB_ALIAS), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Bounds the query on the server too, not only our wait for it.
            cursor.execute("SET LOCAL statement_timeout = %s", [int(CHECK_TIMEOUT * 1000)])
        cursor.execute("SELECT 1")
        if cursor.fetchone() != (1,):
            raise DatabaseError("SELECT 1 did not return 1")


async def check_broker() -> Check:
    """PING the Redis that carries tasks (``REDIS_URL``)."""

    async def ping() -> None:
        client = redis.asyncio.from_url(settings.REDIS_URL, retry=AsyncRetry(NoBackoff(), 0), **_redis_timeouts())
        try:
            await client.ping()
        finally:
            await client.aclose()

    return await _timed(ping, CHECK_TIMEOUT)


async def check_channel_layer() -> Check:
    """Send a message to a fresh channel through the configured layer and receive it back."""

    async def round_trip() -> None:
        layer = get_channel_layer()
        if layer is None:
            raise RuntimeError("no channel layer is configured")
        channel = f"tower.health.{uuid.uuid4().hex}"
        nonce = uuid.uuid4().hex
        await layer.send(channel, {"type": "health.ping", "nonce": nonce})
        message = await layer.receive(channel)
        if message.get("nonce") != nonce:
            raise RuntimeError("the channel layer returned a different message")
        if hasattr(layer, "wait_received"):
            await layer.wait_received()  # let channels_redis finish its clean-up in this loop

    return await _timed(round_trip, CHECK_TIMEOUT)


async def check_storage() -> Check:
    """Free space where media is written, against ``HEALTH_MIN_FREE_BYTES``."""
    minimum = settings.HEALTH_MIN_FREE_BYTES
    try:
        usage = await asyncio.wait_for(
            asyncio.to_thread(shutil.disk_usage, _existing_ancestor(Path(settings.MEDIA_ROOT))),
            CHECK_TIMEOUT,
        )
    except (OSError, TimeoutError) as exc:
        return {"ok": False, "free_bytes": None, "min_free_bytes": minimum, "error": _describe(exc)}
    check: Check = {"ok": usage.free >= minimum, "free_bytes": usage.free, "min_free_bytes": minimum}
    if not check["ok"]:
        check["error"] = "less free space than the configured minimum"
    return check


async def check_workers() -> Check:
    """django-q2 clusters that reported in through the broker in the last few seconds."""
    try:
        stats = await asyncio.wait_for(sync_to_async(_cluster_stats, thread_sensitive=False)(), CHECK_TIMEOUT)
    except (redis.RedisError, OSError, TimeoutError) as exc:
        return {"ok": False, "alive": 0, "clusters": [], "error": _describe(exc)}
    clusters = [
        {
            "name": humanize(stat.cluster_id.hex),
            "host": stat.host,
            "status": str(stat.status),
            "workers": len(stat.workers),
        }
        for stat in stats
    ]
    alive = sum(1 for cluster in clusters if cluster["status"] != str(Conf.STOPPED))
    check: Check = {"ok": alive > 0, "alive": alive, "clusters": clusters}
    if not alive:
        check["error"] = "no worker cluster is running (start one with: manage.py qcluster)"
    return check


class _HealthBroker(RedisBroker):
    """django-q2's Redis broker on ``settings.REDIS_URL``, with the health check's timeouts."""

    def __init__(self) -> None:
        self._url = settings.REDIS_URL
        super().__init__()

    def get_connection(self, list_key: str | None = None) -> redis.Redis:
        return redis.Redis.from_url(self._url, retry=Retry(NoBackoff(), 0), **_redis_timeouts())


def _cluster_stats() -> list[Stat]:
    broker = _HealthBroker()
    try:
        return Stat.get_all(broker=broker)
    finally:
        broker.connection.close()


async def check_backends() -> tuple[list[Check], str | None]:
    """Ask every enabled ComfyUI backend for its system stats, all at once.

    Returns the entries and, when the backend list itself could not be read, why.
    """
    try:
        rows = await asyncio.wait_for(sync_to_async(_enabled_backends)(), CHECK_TIMEOUT)
    except (DatabaseError, TimeoutError) as exc:
        return [], _describe(exc)
    return list(await asyncio.gather(*(check_backend(name, url) for name, url in rows))), None


def _enabled_backends() -> list[tuple[str, str]]:
    return list(Backend.objects.filter(enabled=True).order_by("name").values_list("name", "url"))


async def check_backend(name: str, url: str) -> Check:
    entry: Check = {
        "name": name,
        "reachable": False,
        "version": None,
        "vram_total": None,
        "vram_free": None,
        "vram_used_fraction": None,
        "error": None,
    }
    try:
        timeout = min(BACKEND_TIMEOUT, settings.COMFYUI_TIMEOUT)
        async with asyncio.timeout(timeout):
            async with ComfyClient(url, timeout=timeout) as client:
                stats = await client.system_stats()
    except Exception as exc:  # any failure means "unreachable"; unexpected ones are logged too
        if not isinstance(exc, TimeoutError | OSError | ComfyError):
            logger.exception("health check of backend %s failed unexpectedly", name)
        entry["error"] = _describe(exc)
        return entry
    entry.update(
        reachable=True,
        version=stats.comfyui_version,
        vram_total=sum(device.vram_total for device in stats.devices),
        vram_free=sum(device.vram_free for device in stats.devices),
        vram_used_fraction=stats.vram_used_fraction,
    )
    return entry


# --- Helpers -------------------------------------------------------------------------------------


async def _timed(probe: Callable[[], Awaitable[Any]], timeout: float) -> Check:
    """Run ``probe`` within ``timeout``: ``{"ok", "latency_ms"}`` or ``{"ok": False, "error"}``."""
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), timeout)
    except Exception as exc:  # a health check reports every failure; it never raises
        return {"ok": False, "error": _describe(exc)}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def _redis_timeouts() -> dict[str, float]:
    # Used with a Retry of 0: a health check wants the first answer, within its own timeout.
    return {"socket_timeout": CHECK_TIMEOUT, "socket_connect_timeout": CHECK_TIMEOUT}


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or "/")


_CREDENTIALS_IN_URL = re.compile(r"(?<=://)[^/@\s]+@")


def _describe(exc: BaseException) -> str:
    """A one-line description of ``exc`` that is safe to show anyone."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:300]


def scrub(text: str) -> str:
    """Remove secrets, URL credentials and local paths from ``text``."""
    text = _CREDENTIALS_IN_URL.sub("***@", text)
    for secret in _secrets():
        text = text.replace(secret, "***")
    for path, label in _private_paths():
        text = text.replace(path, label)
    return text


def _secrets() -> list[str]:
    values = [settings.SECRET_KEY, urlsplit(settings.REDIS_URL).password or ""]
    values += [str(db.get("PASSWORD") or "") for db in settings.DATABASES.values()]
    # Short values would blank out ordinary words; real secrets are longer than this.
    return [value for value in values if len(value) >= 4]


def _private_paths() -> list[tuple[str, str]]:
    pairs = [
        (str(settings.MEDIA_ROOT), "<media>"),
        (str(settings.VAR_DIR), "<var>"),
        (str(settings.BASE_DIR), "<tower>"),
        (str(Path.home()), "~"),
    ]
    # Longest first, so a path inside another is replaced by its own label.
    return sorted((pair for pair in pairs if len(pair[0]) > 1), key=lambda pair: -len(pair[0]))
