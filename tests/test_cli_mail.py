"""The mail commands as a user types them: digest, plan, send, outbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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
