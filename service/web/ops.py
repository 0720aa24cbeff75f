"""Routes for operators: ``/healthz`` (the process is up), ``/readyz`` (the database answers;
when the last poll and send ran) and ``/metrics`` (Prometheus text format).

Counts that live in the database are read at scrape time by a collector; what only the process
sees (HTTP requests, send latency) is counted here. Each web app has a registry of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.app import App
from service.store.health import Health

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "<unmatched>"  # the route label of a request no route answered


class Metrics:
    """One registry: the process's own counters, and the database's counts."""

    def __init__(self, app: App) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "paperboy_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.send_seconds = Histogram(
            "paperboy_send_seconds",
            "Time to hand one message to the sender (SMTP or maildir), by outcome",
            ["outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(app))
        app.mailroom.send_listeners.append(self._sent)

    def _sent(self, outcome: str, seconds: float) -> None:
        self.send_seconds.labels(outcome).observe(seconds)


class _StoreCollector(Collector):
    """Counts read from the database at each scrape."""

    def __init__(self, app: App) -> None:
        self.health = Health(app.store.engine)
        self.clock = app.pipeline.clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock.now()
        up = GaugeMetricFamily("paperboy_database_up", "Whether the database answered the scrape")
        try:
            counts = self.health.counts(now)
        except sa.exc.OperationalError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        polls = CounterMetricFamily(
            "paperboy_polls",
            "Snapshots recorded, by source and outcome",
            labels=["source", "outcome"],
        )
        for (source, outcome), n in sorted(counts.polls.items()):
            polls.add_metric([source, outcome], n)
        yield polls
        yield CounterMetricFamily("paperboy_papers", "Papers stored", value=counts.papers)
        yield GaugeMetricFamily(
            "paperboy_matches", "Matches of profiles stored", value=counts.matches
        )
        deliveries = GaugeMetricFamily(
            "paperboy_deliveries", "Deliveries by kind and status", labels=["kind", "status"]
        )
        for (kind, status), n in sorted(counts.deliveries.items()):
            deliveries.add_metric([kind, status], n)
        yield deliveries
        age = (now - counts.oldest_due).total_seconds() if counts.oldest_due else 0.0
        yield GaugeMetricFamily(
            "paperboy_outbox_oldest_due_seconds",
            "Age of the oldest delivery that is due and not yet sent (0: none)",
            value=max(0.0, age),
        )


class RequestCounter:
    """ASGI middleware: counts each HTTP request by its route's template (never the raw path,
    so URL tokens never become label values), method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics, web: FastAPI) -> None:
        self.app = app
        self.metrics = metrics
        self.web = web
        self._templates: dict[object, str] | None = None

    def template(self, scope: Scope) -> str:
        """The template of the route that answered: FastAPI's routes say it in the scope,
        plain routes are known by their endpoint."""
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        if self._templates is None:
            self._templates = {
                route.endpoint: route.path
                for route in self.web.router.routes
                if isinstance(route, Route)
            }
        return self._templates.get(scope.get("endpoint"), UNMATCHED)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, template = 500, UNMATCHED

        async def sending(message: Message) -> None:
            nonlocal status, template
            if message["type"] == "http.response.start":
                status = message["status"]
                # Read while the route is handling: the router may tidy its keys after.
                template = self.template(scope)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()


def mount(web: FastAPI, app: App) -> None:
    """Add the ops routes and the request counter to ``web``."""
    metrics = Metrics(app)
    web.state.metrics = metrics
    health = Health(app.store.engine)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        try:
            activity = await run_in_threadpool(health.activity)
        except sa.exc.OperationalError as exc:
            return JSONResponse(
                {"ready": False, "database": "unreachable", "error": type(exc.orig).__name__},
                status_code=503,
            )
        return JSONResponse(
            {
                "ready": True,
                "database": "ok",
                "last_poll": _iso(activity.last_poll),
                "last_send": _iso(activity.last_send),
            }
        )

    async def scrape(request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(body, headers={"Content-Type": CONTENT_TYPE})

    web.router.routes += [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", scrape, methods=["GET", "HEAD"]),
    ]
    web.add_middleware(RequestCounter, metrics=metrics, web=web)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
