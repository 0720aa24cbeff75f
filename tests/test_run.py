"""``paperboy run`` as a user starts it: a real process, a real scheduler, SIGTERM to stop."""

from __future__ import annotations

import asyncio
import email
import logging
import mailbox
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from deliver.smtpd import SmtpSink
from mail import ingest, listing, make_app, parse

from service.clock import FixedClock
from service.model import ProfileSpec
from service.runner import serve

CONFIG = """
data_dir = "{data}"
profiles_file = "{profiles}"

[[sources]]
id = "inbox"
kind = "listing"
location = "inbox"
interval = "1s"

[bounces]
maildir = "bounces"
interval = "1s"
"""

PROFILES = """
[[subscribers]]
email = "ann@example.org"
timezone = "Europe/Berlin"
schedule = "instant"

[[subscribers.profiles]]
name = "KV cache"
query = '"kv cache"'
"""


def wait_for(check, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_run_polls_the_inbox_mails_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "paperboy.toml"
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(PROFILES)
    config.write_text(CONFIG.format(data=data, profiles=profiles))
    env = {**os.environ, "PAPERBOY_CONFIG": str(config)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service",
            "run",
            "--tick",
            "0.5",
            "--send-every",
            "30",
            "--port",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        inbox = data / "inbox"
        assert wait_for(inbox.is_dir), "the inbox was not created"
        part = inbox / "capture.txt.part"
        part.write_text(listing("Jun 1", ("A kv cache for everyone", "x", "May 30 3")))
        part.rename(inbox / "capture.txt")
        maildir = data / "maildir"

        def delivered() -> bool:
            return (maildir / "new").is_dir() and any((maildir / "new").iterdir())

        # The poll queues an instant digest and wakes the sender at once (not in 30 s).
        assert wait_for(delivered, 20), "no message arrived"
        # A hard bounce for it arrives in the bounce Maildir: the scheduler reads it.
        returns = mailbox.Maildir(data / "bounces", create=True)
        [sent] = (maildir / "new").iterdir()
        message_id = email.message_from_bytes(sent.read_bytes())["Message-ID"].encode()
        hard = (Path(__file__).parent / "bounces" / "postfix-hard.eml").read_bytes()
        hard = hard.replace(b"<digest.7.0a1b2c3d4e5f6071@papers.example.org>", message_id)
        returns.add(hard.replace(b"gone@example.net", b"ann@example.org"))
        assert wait_for(lambda: "processed" in returns.list_folders() and len(returns) == 0, 20)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    log = output.decode()
    assert process.returncode == 0, log
    # One line per snapshot and per send batch; nothing from the libraries.
    assert f"INFO service.pipeline.ingest: inbox: {inbox / 'capture.txt'}: 1 paper, 1 new," in log
    assert "INFO service.mailroom: sent 1, to retry 0, failed 0, dead 0" in log
    assert "WARNING service.pipeline.returns: suppressed ann@example.org (hard)" in log
    assert not [line for line in log.splitlines() if " service." not in line], log
    box = mailbox.Maildir(maildir, create=False)
    [key] = box.keys()
    message = parse(box.get_bytes(key))
    assert message["To"] == "ann@example.org"
    assert message["Subject"] == "1 new paper: KV cache (1)"


def test_run_logs_a_mail_server_unusable_as_configured_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FixedClock(datetime(2026, 6, 1, 12, tzinfo=UTC))
    with SmtpSink(security="none") as sink:
        smtp = sink.settings(security="starttls")
        database = f"sqlite:///{tmp_path / 'paperboy.db'}"
        with make_app(tmp_path, database, clock, sender="smtp", smtp=smtp) as app:
            for name in ("ann", "bob", "cid"):
                app.pipeline.roster.save_subscriber(f"{name}@example.org", "UTC", "daily 07:30")
                app.pipeline.roster.save_profile(f"{name}@example.org", ProfileSpec("KV", "kv"))
            ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
            clock.at = datetime(2026, 6, 2, 8, tzinfo=UTC)
            assert len(app.mailroom.plan()) == 3

            async def serve_a_while() -> None:
                stop = asyncio.Event()
                running = asyncio.create_task(serve(app, tick=0.1, send_every=0.1, stop=stop))
                while sink.connections < 3 and not running.done():  # three send runs at least
                    await asyncio.sleep(0.05)
                stop.set()
                await running

            asyncio.run(asyncio.wait_for(serve_a_while(), 60))
            rows = app.mailroom.outbox.deliveries()
            assert [(r.status.value, r.attempts) for r in rows] == [("pending", 0)] * 3
    said = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("service")
    ]
    assert [(r.name, r.levelname) for r in said] == [("service.runner", "ERROR")]
    assert "STARTTLS extension not supported" in said[0].getMessage()


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """``paperboy ARGS --port <free>`` as a user starts it, once it answers /healthz."""
    from webserver import free_port

    data = tmp_path / "data"
    config = tmp_path / "paperboy.toml"
    config.write_text(CONFIG.format(data=data, profiles=tmp_path / "none.toml"))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service", *args, "--port", str(port)],
        env={**os.environ, "PAPERBOY_CONFIG": str(config)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz").text == "ok"
        except httpx.TransportError:
            return False

    if not wait_for(healthy):
        process.kill()
        raise AssertionError(process.communicate()[0].decode())
    return process, base


def stop(process: subprocess.Popen[bytes]) -> str:
    """SIGTERM, then the output; the process must be gone within a few seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return output.decode()


def test_run_serves_the_web_beside_the_jobs_and_stops_on_sigterm(tmp_path: Path) -> None:
    process, base = start(tmp_path, "run", "--tick", "0.5")
    try:
        assert httpx.get(f"{base}/readyz").json()["ready"] is True
        inbox = tmp_path / "data" / "inbox"
        part = inbox / "capture.txt.part"
        part.write_text(listing("Jun 1", ("A kv cache for everyone", "x", "May 30 3")))
        part.rename(inbox / "capture.txt")
        # The scheduler in the same process polls; the web sees it.
        assert wait_for(lambda: httpx.get(f"{base}/readyz").json()["last_poll"] is not None)
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert "paperboy running" in output and "web listening on" in output


def test_web_access_log_never_shows_tokens(tmp_path: Path) -> None:
    process, base = start(tmp_path, "web")
    secrets = ["7.c2VjcmV0LXRva2VuLXZhbHVlLTE", "8.YW5vdGhlci1zZWNyZXQtdG9rZW4"]
    try:
        with httpx.Client(base_url=base) as client:
            paths = [
                f"/feeds/{secrets[0]}/all.rss",
                f"/manage/{secrets[1]}",
                f"/unsubscribe/{secrets[0]}?x=1",
                f"/confirm/{secrets[1]}",
                "/healthz",
            ]
            for path in paths:
                client.get(path)
            assert client.post(f"/unsubscribe/{secrets[1]}").status_code in (404, 405, 200)
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert '"GET /feeds/***/all.rss HTTP/1.1" 404' in output
    assert '"GET /manage/*** HTTP/1.1"' in output
    assert '"GET /unsubscribe/***?x=1 HTTP/1.1"' in output
    assert '"GET /confirm/*** HTTP/1.1"' in output
    assert '"GET /healthz HTTP/1.1" 200' in output
    for secret in secrets:
        assert secret not in output
        assert secret.split(".")[1] not in output
