"""Care of the data from the command line: ``db backup`` consistent while another process
writes, ``db restore``, and the bounce commands (``bounces``, ``subscriber list`` showing a
suppression and why, ``subscriber unsuppress``)."""

from __future__ import annotations

import json
import mailbox
import sqlite3
import threading
from pathlib import Path

import pytest

from service.cli import main

HERE = Path(__file__).parent / "bounces"
ANN = "ann@example.org"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)  # no config/paperboy.toml here: the defaults
    monkeypatch.delenv("PAPERBOY_CONFIG", raising=False)
    return ["--data-dir", str(tmp_path / "data")]


def listed(data: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    capsys.readouterr()
    assert main([*data, "subscriber", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {str(r["email"]): r for r in rows}


def hard_bounce_of_a_digest(
    tmp_path: Path, data: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Send ANN a digest and drop its hard bounce (matched by the returned Message-ID) in
    tmp_path/returns."""
    assert main([*data, "profile", "add", ANN, "Empty", "nothing", "--send-when-empty"]) == 0
    assert main([*data, "digest", "--subscriber", ANN]) == 0
    assert main([*data, "send"]) == 0
    capsys.readouterr()
    assert main([*data, "outbox", "--json"]) == 0
    [sent] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    raw = (HERE / "postfix-hard.eml").read_text().replace("gone@example.net", ANN)
    raw = raw.replace("<digest.7.0a1b2c3d4e5f6071@papers.example.org>", sent["message_id"])
    box = mailbox.Maildir(tmp_path / "returns", create=True)
    box.add(raw.encode())


def test_bounces_suppress_and_list_shows_why_until_unsuppressed(
    tmp_path: Path, data: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*data, "subscriber", "add", ANN]) == 0
    hard_bounce_of_a_digest(tmp_path, data, capsys)
    capsys.readouterr()
    assert main([*data, "bounces", "--maildir", str(tmp_path / "returns")]) == 0
    out = capsys.readouterr().out
    assert "1 message read: 1 hard" in out and f"suppressed {ANN}" in out

    row = listed(data, capsys)[ANN]
    assert row["status"] == "suppressed" and row["subscription"] == "active"
    held = row["suppressed"]
    assert isinstance(held, dict) and held["reason"] == "hard" and "5.1.1" in held["detail"]
    assert str(held["at"]).endswith("Z") or "+00:00" in str(held["at"])
    assert main([*data, "subscriber", "list"]) == 0
    assert "suppressed (active; hard: 5.1.1" in capsys.readouterr().out

    assert main([*data, "subscriber", "add", ANN, "--daily", "08:00"]) == 0  # does not lift it
    assert listed(data, capsys)[ANN]["status"] == "suppressed"
    assert main([*data, "subscriber", "unsuppress", ANN]) == 0
    assert listed(data, capsys)[ANN]["status"] == "active"
    assert main([*data, "subscriber", "unsuppress", ANN]) == 1


def test_an_unreadable_bounce_is_reported_and_kept(
    tmp_path: Path, data: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    box = mailbox.Maildir(tmp_path / "returns", create=True)
    box.add((HERE / "unreadable" / "vacation.eml").read_bytes())
    assert main([*data, "bounces", "--maildir", str(tmp_path / "returns"), "--json"]) == 1
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["read"] == 1 and "Out of office" in row["rejected"][0]
    assert len(box.get_folder("rejected")) == 1 and len(box) == 0


def test_bounces_without_a_mailbox_is_a_clear_error(
    data: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*data, "bounces"]) != 0
    assert "bounces.maildir" in capsys.readouterr().err


def test_backup_is_consistent_while_another_process_writes_and_restores(
    tmp_path: Path, data: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*data, "subscriber", "add", ANN]) == 0
    database = tmp_path / "data" / "paperboy.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE ticks (n INTEGER NOT NULL)")
    stop = threading.Event()
    written = [0]

    def write() -> None:
        # Each transaction adds n and -n: a copy of one moment sums to 0 over an even count.
        with sqlite3.connect(database, timeout=30, isolation_level=None) as db:
            n = 0
            while not stop.is_set():
                n += 1
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO ticks VALUES (?)", (n,))
                db.execute("INSERT INTO ticks VALUES (?)", (-n,))
                db.execute("COMMIT")
                written[0] = n

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while written[0] < 50:
            stop.wait(0.01)
        copies = [tmp_path / f"backup-{i}.db" for i in range(3)]
        for copy in copies:
            assert main([*data, "db", "backup", str(copy)]) == 0
    finally:
        stop.set()
        writer.join()
    assert "SQLite online backup" in capsys.readouterr().out
    for copy in copies:
        with sqlite3.connect(copy) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            count, total = db.execute("SELECT count(*), sum(n) FROM ticks").fetchone()
            assert count > 0 and count % 2 == 0 and total == 0
    with sqlite3.connect(copies[-1]) as db:
        kept = db.execute("SELECT count(*) FROM ticks").fetchone()[0]

    assert main([*data, "subscriber", "add", "bob@example.org"]) == 0  # after the backup
    assert main([*data, "db", "restore", str(copies[-1])]) == 0
    assert "restored" in capsys.readouterr().out
    assert list(listed(data, capsys)) == [ANN]
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM ticks").fetchone()[0] == kept


def test_restore_refuses_what_is_not_a_paperboy_backup(
    tmp_path: Path, data: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*data, "subscriber", "add", ANN]) == 0
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    assert main([*data, "db", "restore", str(junk)]) != 0
    assert "junk.db" in capsys.readouterr().err
    with sqlite3.connect(tmp_path / "other.db") as db:
        db.execute("CREATE TABLE t (x)")
    assert main([*data, "db", "restore", str(tmp_path / "other.db")]) != 0
    assert "not a paperboy database" in capsys.readouterr().err
    assert list(listed(data, capsys)) == [ANN]  # nothing changed


@pytest.mark.postgres
def test_postgres_backup_and_restore_with_pg_dump(
    tmp_path: Path,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAPERBOY_DATABASE_URL", pg_url)
    data = ["--data-dir", str(tmp_path / "data")]
    assert main([*data, "subscriber", "add", ANN]) == 0
    assert main([*data, "db", "backup", str(tmp_path / "pg.dump")]) == 0
    assert "pg_dump" in capsys.readouterr().out
    assert main([*data, "subscriber", "add", "bob@example.org"]) == 0
    assert main([*data, "db", "restore", str(tmp_path / "pg.dump")]) == 0
    assert list(listed(data, capsys)) == [ANN]


def test_a_subscribers_data_is_exported_and_erased(
    tmp_path: Path, data: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*data, "subscriber", "add", ANN, "--timezone", "Europe/Berlin"]) == 0
    assert main([*data, "profile", "add", ANN, "Caches", "kv cache", "--max-items", "5"]) == 0
    hard_bounce_of_a_digest(tmp_path, data, capsys)
    assert main([*data, "bounces", "--maildir", str(tmp_path / "returns")]) == 0
    capsys.readouterr()

    assert main([*data, "subscriber", "export", ANN]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["subscriber"]["timezone"] == "Europe/Berlin"
    assert [(p["name"], p["query"], p["max_items"]) for p in document["profiles"]] == [
        ("Caches", "kv cache", 5),
        ("Empty", "nothing", 20),
    ]
    assert [r["kind"] for r in document["returned"]] == ["hard"]
    assert document["suppressed"]["reason"] == "hard"

    assert main([*data, "subscriber", "remove", ANN, "--erase"]) == 0
    capsys.readouterr()
    assert main([*data, "subscriber", "export", ANN]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["subscriber"] is None and document["profiles"] == []
    assert document["returned"] == []  # erased
    assert document["suppressed"]["reason"] == "hard"  # kept: the address is still refused
    assert main([*data, "subscriber", "unsuppress", ANN]) == 0
    assert main([*data, "subscriber", "export", ANN]) != 0  # nothing left at all
    assert "nothing is stored" in capsys.readouterr().err
