"""The ``paperboy`` command as a user runs it: real process, real files, JSON for scripts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SEED_ORDER, seed

from service.cli import main


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


@pytest.mark.shared
def test_drop_a_capture_in_the_inbox_and_poll(tmp_path: Path, seeds: list[Path]) -> None:
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    shutil.copy(seed(seeds, "002"), inbox)
    polled = run(tmp_path, "poll", "--source", "inbox")
    assert polled.returncode == 0, polled.stderr
    assert "parsed" in polled.stdout
    row = next(line for line in polled.stdout.splitlines() if "002_" in line).split()
    assert row[-5:] == ["54", "54", "0", "0", "0"]  # papers, new, listed, updated, dropped
    again = run(tmp_path, "poll", "--source", "inbox")
    assert again.returncode == 0
    assert "002_" not in again.stdout

    listed = run(tmp_path, "papers", "--search", "ShadowKV", "--json")
    (paper,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert paper["organisation"] == {"handle": "ByteDance-Seed", "name": "ByteDance Seed"}
    assert paper["upvotes"] == 2

    health = run(tmp_path, "sources", "--json")
    inbox_row = next(json.loads(line) for line in health.stdout.splitlines() if '"inbox"' in line)
    assert inbox_row["errors"] == 0
    assert inbox_row["papers"] == 54


@pytest.mark.shared
def test_ingest_json_and_exit_status(
    tmp_path: Path, seeds: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    for prefix, captured in SEED_ORDER:
        path = str(seed(seeds, prefix))
        assert (
            main([*data, "ingest", path, "--captured-at", captured.date().isoformat(), "--json"])
            == 0
        )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["new"] for line in lines] == [72, 35, 45, 15, 36]
    assert lines[0]["captured_at"] == "2025-11-20T00:00:00+00:00"

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe garbage")
    assert main([*data, "ingest", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: " in err
    assert "expected" in err


def test_bad_arguments_say_what_was_expected(tmp_path: Path) -> None:
    result = run(tmp_path, "ingest", "x.txt", "--captured-at", "last tuesday")
    assert result.returncode == 2
    assert "expected an ISO date" in result.stderr
    missing = run(tmp_path, "poll", "--source", "nope")
    assert missing.returncode == 1
    assert "no source 'nope'" in missing.stderr


def test_db_upgrade_and_help(tmp_path: Path) -> None:
    upgraded = run(tmp_path, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "database at migration 0003" in upgraded.stdout
    assert run(tmp_path, "db", "current").stdout.strip() == "0003"
    assert "ingest" in run(tmp_path, "--help").stdout
