"""/healthz, /readyz and /metrics over a real uvicorn server: what an operator's probes and
Prometheus see, and that the counts move as papers arrive and mail is sent."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
from mail import ingest, listing, make_app, send
from webserver import serving

from service import tokens
from service.clock import FixedClock
from service.model import ProfileSpec

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition, None when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        found = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        assert found, line
        if found[1] != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', found[2] or ""))
        if have == labels:
            return float(found[3])
    return None


def test_health_readiness_and_metrics_move_with_the_work(tmp_path: Path) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "UTC", "daily 07:30")
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV", "kv"))
        owner = app.pipeline.roster.subscriber("ann@example.org")
        token = tokens.make(owner.id, owner.token, "feeds")
        with serving(app) as base, httpx.Client(base_url=base) as client:
            assert client.get("/healthz").text == "ok"
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {
                "ready": True,
                "database": "ok",
                "last_poll": None,
                "last_send": None,
            }
            before = client.get("/metrics")
            assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
            for name in (
                "paperboy_http_requests_total",
                "paperboy_send_seconds",
                "paperboy_polls_total",
                "paperboy_papers_total",
                "paperboy_matches",
                "paperboy_deliveries",
                "paperboy_outbox_oldest_due_seconds",
                "paperboy_database_up",
            ):
                assert f"# TYPE {name} " in before.text, name
            assert sample(before.text, "paperboy_papers_total") == 0
            assert sample(before.text, "paperboy_database_up") == 1

            ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
            app.mailroom.close_now(owner)
            clock.advance(minutes=5)
            queued = client.get("/metrics").text
            assert sample(queued, "paperboy_polls_total", outcome="parsed", source="files") == 1
            assert sample(queued, "paperboy_papers_total") == 1
            assert sample(queued, "paperboy_matches") == 1
            assert sample(queued, "paperboy_deliveries", kind="digest", status="pending") == 1
            assert sample(queued, "paperboy_outbox_oldest_due_seconds") == 300

            assert send(app).sent == 1
            assert client.get(f"/feeds/{token}/all.atom").status_code == 200
            assert client.get(f"/feeds/{token}x/all.atom").status_code == 404
            done = client.get("/metrics").text
            assert sample(done, "paperboy_deliveries", kind="digest", status="sent") == 1
            assert sample(done, "paperboy_deliveries", kind="digest", status="pending") is None
            assert sample(done, "paperboy_outbox_oldest_due_seconds") == 0
            assert sample(done, "paperboy_send_seconds_count", outcome="sent") == 1
            feeds = "/feeds/{token}/{name}"
            assert (
                sample(
                    done, "paperboy_http_requests_total", method="GET", route=feeds, status="200"
                )
                == 1
            )
            assert (
                sample(
                    done, "paperboy_http_requests_total", method="GET", route=feeds, status="404"
                )
                == 1
            )
            assert (
                sample(
                    done,
                    "paperboy_http_requests_total",
                    method="GET",
                    route="/readyz",
                    status="200",
                )
                == 1
            )
            assert token not in done  # route templates, never paths

            ready = client.get("/readyz").json()
            assert ready["last_poll"] == T0.isoformat()
            assert ready["last_send"] == "2026-06-01T12:05:00+00:00"


def test_readyz_says_when_the_database_is_unreachable(tmp_path: Path, database_url: str) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
        with serving(app) as base, httpx.Client(base_url=base) as client:
            assert client.get("/readyz").json()["last_poll"] == T0.isoformat()
            app.store.engine.dispose()
            if database_url.startswith("sqlite"):
                path = Path(database_url.removeprefix("sqlite:///"))
                path.unlink()
                path.mkdir()  # no database can be opened there any more
            else:
                server, name = database_url.rsplit("/", 1)
                admin = sa.create_engine(
                    server.replace("postgresql://", "postgresql+psycopg://") + "/test",
                    isolation_level="AUTOCOMMIT",
                )
                with admin.connect() as db:
                    db.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                admin.dispose()
            down = client.get("/readyz")
            assert down.status_code == 503
            assert down.json()["ready"] is False
            assert down.json()["database"] == "unreachable"
            assert client.get("/healthz").status_code == 200  # the process is still up
            metrics = client.get("/metrics")
            assert metrics.status_code == 200
            assert sample(metrics.text, "paperboy_database_up") == 0
            if database_url.startswith("sqlite"):
                shutil.rmtree(path)
