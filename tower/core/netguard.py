"""Outbound fetches of user-given URLs reach the public internet only (no SSRF).

A URL a user types (ingest from a video page or file) must not make a worker fetch Tower's own
services, the cloud's metadata endpoint or the studio's LAN. Two checks:

- :func:`check_public_url` at submit time and again in the worker: the host is resolved and every
  address it resolves to must be public. Literal tricks (``0x7f000001``, ``[::1]``,
  ``::ffff:127.0.0.1``, ``2130706433``) resolve to what they mean, so they are caught too.
- :func:`public_connections_only` around the fetch: every socket the thread connects is checked
  at connect time, through Python's ``socket.connect`` audit event. That covers each redirect hop
  and a DNS answer that changed since the first check (rebinding), whatever HTTP client is used
  (yt-dlp follows redirects itself).

``TOWER_INGEST_ALLOWED_HOSTS`` (host names, addresses or CIDR ranges) lets a studio fetch from
its own LAN hosts.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedAddressError(ConnectionError):
    """The URL leads to an address Tower does not fetch from; the message says which and why.

    A ConnectionError, so HTTP clients that meet it at connect time report it as a failed connection.
    """


ALLOW_HINT = "add the host to TOWER_INGEST_ALLOWED_HOSTS to allow it"


def address_problem(address: IPAddress) -> str | None:
    """Why ``address`` is not a public internet address, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:127.0.0.1 and 64:ff9b::7f00:1 reach IPv4 hosts; judge the IPv4 address.
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return address_problem(mapped)
    for attribute, kind in (
        ("is_loopback", "a loopback"),
        ("is_link_local", "a link-local"),
        ("is_multicast", "a multicast"),
        ("is_unspecified", "an unspecified"),
        ("is_private", "a private"),
        ("is_reserved", "a reserved"),
    ):
        if getattr(address, attribute):
            return f"{kind} address"
    if not address.is_global:
        return "not a public address"
    return None


def _allowed() -> tuple[set[str], list[IPNetwork]]:
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in getattr(settings, "TOWER_INGEST_ALLOWED_HOSTS", []) or []:
        entry = entry.strip().lower().strip("[]")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.rstrip("."))
    return hosts, networks


def _resolve(host: str, port: int | None) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise BlockedAddressError(f"the host {host} cannot be resolved ({exc})") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def check_public_url(url: str) -> None:
    """Raise :class:`BlockedAddressError` unless every address ``url``'s host resolves to is public
    (or allowed by ``TOWER_INGEST_ALLOWED_HOSTS``)."""
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise BlockedAddressError("the address has a bad port") from None
    if not host:
        raise BlockedAddressError("the address has no host")
    allowed_hosts, allowed_networks = _allowed()
    if host.rstrip(".") in allowed_hosts:
        return
    for address in _resolve(host, port):
        if any(address in network for network in allowed_networks):
            continue
        if problem := address_problem(address):
            raise BlockedAddressError(f"{host} is {address}, {problem}; Tower does not fetch from it ({ALLOW_HINT})")


# --- Connect-time guard ------------------------------------------------------------------------------

# The addresses the current context may connect to despite being non-public, or None when the guard
# is off. A context variable: the guard covers only the code run inside the ``with`` block.
_guard: contextvars.ContextVar[list[IPNetwork] | None] = contextvars.ContextVar("tower_netguard", default=None)
_hook_installed = False


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event != "socket.connect":
        return
    allowed = _guard.get()
    if allowed is None:
        return
    address = args[1] if len(args) > 1 else None
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return  # a Unix socket: not the network
    try:
        ip = ipaddress.ip_address(address[0].split("%", 1)[0])
    except ValueError:
        return
    if any(ip in network for network in allowed):
        return
    if problem := address_problem(ip):
        raise BlockedAddressError(f"refused to connect to {ip}, {problem} ({ALLOW_HINT})")


@contextmanager
def public_connections_only(extra_allowed: Sequence[IPNetwork] = ()) -> Iterator[None]:
    """Inside the block, this thread's sockets connect only to public addresses (or allowed ones).

    A connection to anything else raises :class:`BlockedAddressError` from ``connect``.
    """
    global _hook_installed
    if not _hook_installed:
        # Audit hooks cannot be removed; this one does nothing outside a guarded block.
        sys.addaudithook(_audit)
        _hook_installed = True
    allowed_hosts, networks = _allowed()
    for host in allowed_hosts:
        try:
            networks += [ipaddress.ip_network(a) for a in _resolve(host, None)]
        except BlockedAddressError:
            continue
    token = _guard.set([*networks, *extra_allowed])
    try:
        yield
    finally:
        _guard.reset(token)
