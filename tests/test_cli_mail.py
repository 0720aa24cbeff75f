"""The mail commands as a user types them: digest, plan, send, outbox."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from deliver.smtpd import Answer, SmtpSink
from mail import listing, parse, parts

from service.cli import main


def run(data: Path, *args: str) -> int:
    return main(["--data-dir", str(data), *args])


def test_digest_dry_run_then_queue_send_and_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert run(data, "subscriber", "add", "ann@example.org", "--timezone", "Asia/Tokyo") == 0
    assert run(data, "profile", "add", "ann@example.org", "KV", '"kv cache"') == 0
    capture = tmp_path / "a.txt"
    capture.write_text(listing("Jun 1", ("A kv cache", "Smaller KV-cache.", "May 30 3")))
    assert run(data, "ingest", str(capture)) == 0
    capsys.readouterr()

    out = tmp_path / "out"
    ann = ("--subscriber", "ann@example.org")
    assert run(data, "digest", *ann, "--dry-run", "--out", str(out)) == 0
    [eml] = out.iterdir()
    message = parse(eml.read_bytes())
    assert message["Subject"] == "1 new paper: KV (1)"
    assert "A kv cache" in parts(message)[0]
    assert run(data, "outbox", "--json") == 0
    assert capsys.readouterr().out == f"wrote {eml}\n"
    assert run(data, "outbox") == 0
    assert capsys.readouterr().out.strip() == "the outbox is empty"  # a dry run records nothing

    assert run(data, "digest", "--subscriber", "ann@example.org") == 0
    assert "queued: 1 paper for" in capsys.readouterr().out
    assert run(data, "digest", "--subscriber", "ann@example.org", "--dry-run") == 0
    assert "Subject: No new papers" in capsys.readouterr().out  # the paper went already
    assert run(data, "digest", "--subscriber", "ann@example.org") == 0
    said = capsys.readouterr().out
    assert said.startswith("nothing is due for ann@example.org: no new matches since ")
    assert "queued" not in said.replace("nothing queued", "")
    assert run(data, "send", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"sent": 1, "retried": 0, "failed": 0, "dead": 0}
    assert run(data, "outbox", "--status", "sent", "--json") == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["recipient"], row["kind"], row["status"], row["papers"]) == (
        "ann@example.org",
        "digest",
        "sent",
        1,
    )
    assert len(list((data / "maildir" / "new").iterdir())) == 1
    # Sent once: sending again, or closing the window again, sends nothing more.
    assert run(data, "send") == 0
    assert "sent 0" in capsys.readouterr().out
    assert run(data, "plan", "--json") == 0
    assert len(list((data / "maildir" / "new").iterdir())) == 1


def test_digest_for_an_unknown_subscriber_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path / "data", "digest", "--subscriber", "nobody@example.org") == 1
    assert "no such subscriber" in capsys.readouterr().err


def send_over_smtp(tmp_path: Path, port: int, **smtp: str) -> subprocess.CompletedProcess[str]:
    """``paperboy send`` in a process of its own, to the SMTP server at ``port``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAPERBOY_")}
    env |= {
        "XDG_CONFIG_HOME": str(tmp_path / "no-config"),
        "PAPERBOY_MAIL__SENDER": "smtp",
        "PAPERBOY_MAIL__SMTP__HOST": "127.0.0.1",
        "PAPERBOY_MAIL__SMTP__PORT": str(port),
        "PAPERBOY_MAIL__SMTP__SECURITY": "none",
        **{f"PAPERBOY_MAIL__SMTP__{k.upper()}": v for k, v in smtp.items()},
    }
    return subprocess.run(
        [sys.executable, "-m", "service", "--data-dir", str(tmp_path / "data"), "send"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def queue_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert run(data, "subscriber", "add", "ann@example.org") == 0
    assert run(data, "profile", "add", "ann@example.org", "KV", '"kv cache"') == 0
    capture = tmp_path / "a.txt"
    capture.write_text(listing("Jun 1", ("A kv cache", "Smaller KV-cache.", "May 30 3")))
    assert run(data, "ingest", str(capture)) == 0
    assert run(data, "digest", "--subscriber", "ann@example.org") == 0
    capsys.readouterr()


def test_send_to_a_mail_server_unusable_as_configured_fails_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue_one(tmp_path, capsys)
    with SmtpSink() as sink:
        port = sink.port
        no_starttls = send_over_smtp(tmp_path, port, security="starttls")
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        refused = send_over_smtp(tmp_path, closed)
        assert sink.messages == []
    assert no_starttls.returncode == 1
    assert no_starttls.stderr == (
        f"paperboy: 127.0.0.1:{port}: SMTP STARTTLS extension not supported by server."
        " (check mail.smtp.security and mail.smtp.username)\n"
    )
    assert refused.returncode == 1
    assert refused.stderr == (
        f"paperboy: 127.0.0.1:{closed} refused the connection"
        " (check mail.smtp.host and mail.smtp.port)\n"
    )
    assert run(tmp_path / "data", "outbox", "--json") == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert "refused the connection" in row["last_error"]


def test_send_says_why_a_message_waits_for_a_retry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue_one(tmp_path, capsys)
    with SmtpSink(answers=[Answer("451 4.3.0 Try again later")]) as sink:
        port = sink.port
        retried = send_over_smtp(tmp_path, port)
    assert retried.returncode == 0  # a passing failure: it is retried
    assert retried.stdout == "sent 0, to retry 1, failed 0, dead 0\n"
    assert "delivery 1 to ann@example.org: attempt 1 of 8 failed, next in" in retried.stderr
    assert f"127.0.0.1:{port} answered 451 4.3.0 Try again later" in retried.stderr
