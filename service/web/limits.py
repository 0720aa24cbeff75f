"""Rate limits, kept in this process: sliding windows of recent hits per key.

Several processes each keep their own counts (a client may get N times the limit across N
processes); one process per host behind the proxy keeps them exact.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections import deque

from starlette.requests import Request


class RateLimited(Exception):
    """Over a limit: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"rate limited; retry after {self.retry_after} s")


class Limiter:
    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._since_sweep = 0

    def hit(self, key: str, limit: int, period: float, now: float) -> None:
        """Count one hit for ``key``; ``RateLimited`` (counting nothing) when ``limit`` hits
        were already counted in the last ``period`` seconds."""
        with self._lock:
            self._sweep(period, now)
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - period:
                hits.popleft()
            if len(hits) >= limit:
                raise RateLimited(hits[0] + period - now)
            hits.append(now)

    def _sweep(self, period: float, now: float) -> None:
        """Now and then drop keys with no recent hits, so memory follows the active clients."""
        self._since_sweep += 1
        if self._since_sweep < 4096:
            return
        self._since_sweep = 0
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - 3600]:
            del self._hits[key]


def client_address(request: Request, trusted_proxies: list[str]) -> str:
    """The client's IP address: the peer's, or, when the peer is a trusted proxy, the last
    address in X-Forwarded-For that is not one of them."""
    peer = request.client.host if request.client else "unknown"
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return peer
    forwarded = [
        part.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for part in header.split(",")
    ]
    for address in reversed(forwarded):
        if not _trusted(address, trusted_proxies):
            return address
    return peer


def _trusted(address: str, proxies: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(proxy, strict=False) for proxy in proxies)
