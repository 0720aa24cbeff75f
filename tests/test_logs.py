"""``log_format = "json"``: one JSON object a line, with the source, subscriber and delivery a
line is about, and no token."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from deliver.smtpd import Answer, SmtpSink
from mail import listing
from test_cli_mail import queue_one
from web.serve import free_port

from service.logs import JsonFormatter


def paperboy(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``paperboy ARGS`` in a process of its own, logging JSON, with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-m", "service", "--data-dir", str(tmp_path / "data"), *args],
        env=clean_env(tmp_path) | env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAPERBOY_")}
    return env | {"XDG_CONFIG_HOME": str(tmp_path / "no-config"), "PAPERBOY_LOG_FORMAT": "json"}


def lines(stderr: str) -> list[dict[str, Any]]:
    """Every line of ``stderr`` as a JSON object (fails on a line that is not one)."""
    return [json.loads(line) for line in stderr.splitlines()]


def test_a_record_is_one_object_on_one_line_with_its_context() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.LogRecord(
            "service.mailroom",
            logging.WARNING,
            __file__,
            1,
            "delivery %d:\n%s",
            (7, "x"),
            sys.exc_info(),
        )
    record.delivery_id = 7
    record.subscriber_id = 3
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["time"].endswith("+00:00")
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "WARNING",
        "service.mailroom",
        "delivery 7:\nx",
    )
    assert (entry["delivery_id"], entry["subscriber_id"]) == (7, 3)
    assert "source" not in entry
    assert entry["exception"].startswith("Traceback") and "ValueError: bad" in entry["exception"]


def test_ingest_logs_json_lines_naming_the_source(tmp_path: Path) -> None:
    capture = tmp_path / "a.txt"
    capture.write_text(listing("Jun 1", ("A kv cache", "Smaller KV-cache.", "May 30 3")))
    broken = tmp_path / "b.txt"
    broken.write_text("not a listing at all\n")
    result = paperboy(tmp_path, "ingest", str(capture), str(broken), "-v")
    # The command's own report of the rejected file is output, not a log line.
    report = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(report) == 1, result.stderr
    entries = lines("\n".join(x for x in result.stderr.splitlines() if x not in report))
    taken = [e for e in entries if "1 paper, 1 new" in e["message"]]
    assert [e["source"] for e in taken] == ["files"], entries
    [rejected] = [e for e in entries if e["message"].startswith("rejected")]
    assert (rejected["level"], rejected["source"]) == ("WARNING", "files")


def test_a_delivery_to_retry_logs_its_delivery_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue_one(tmp_path, capsys)
    with SmtpSink(answers=[Answer("451 4.3.0 Try again later")]) as sink:
        result = paperboy(
            tmp_path,
            "send",
            PAPERBOY_MAIL__SENDER="smtp",
            PAPERBOY_MAIL__SMTP__HOST="127.0.0.1",
            PAPERBOY_MAIL__SMTP__PORT=str(sink.port),
            PAPERBOY_MAIL__SMTP__SECURITY="none",
        )
    assert result.returncode == 0, result.stderr
    [retry] = [e for e in lines(result.stderr) if "attempt 1 of 8 failed" in e["message"]]
    assert retry["delivery_id"] == 1


def test_the_access_log_in_json_holds_no_token(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "--data-dir", str(tmp_path / "data"), "web"],
        env=clean_env(tmp_path) | {"PAPERBOY_WEB__PORT": str(port)},
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/manage/s3cr3t-t0ken", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "no web"
                time.sleep(0.2)
        assert answer.status_code == 404
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "s3cr3t" not in stderr
    [access] = [e for e in lines(stderr) if e["logger"] == "uvicorn.access"]
    assert '"GET /manage/*** HTTP/1.1" 404' in access["message"]
