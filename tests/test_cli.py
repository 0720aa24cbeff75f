"""The ``paperboy`` command as a user runs it: real process, real files, JSON for scripts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SEED_ORDER, seed
from mail import listing

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
    from service.store.database import head

    assert f"database at migration {head()}" in upgraded.stdout
    assert run(tmp_path, "db", "current").stdout.strip() == head()
    assert "ingest" in run(tmp_path, "--help").stdout


def capture(tmp_path: Path, papers: int) -> Path:
    """A listing capture of ``papers`` papers about kv caches."""
    path = tmp_path / "capture.txt"
    entries = [(f"Paper {n} on kv cache", f"Abstract {n}.", "May 30 3") for n in range(papers)]
    path.write_text(listing("Jun 1", *entries))
    return path


def test_limits_below_1_are_refused(tmp_path: Path) -> None:
    for command in (["preview", "kv"], ["papers"]):
        for limit in ["-1", "0", "many"]:
            result = run(tmp_path, *command, "--limit", limit)
            assert result.returncode == 2, (command, limit)
            assert "--limit: expected a whole number of 1 or more" in result.stderr


def test_output_cut_short_by_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    assert run(tmp_path, "ingest", str(capture(tmp_path, 300))).returncode == 0
    for command in (["papers"], ["preview", "kv"]):
        with (tmp_path / "err").open("w+") as err:
            child = subprocess.Popen(
                [sys.executable, "-m", "service", "--data-dir", str(tmp_path / "data"), *command],
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=tmp_path,
            )
            assert child.stdout is not None
            child.stdout.close()  # like `| head -1` that has had its line
            assert child.wait(timeout=120) == 141
            err.seek(0)
            assert "Traceback" not in err.read()


def test_ingest_reports_each_rejected_snapshot_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe garbage")
    result = run(tmp_path, "ingest", str(bad))
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if "bad.txt" in line]
    assert line.startswith(f"error: {bad}: line 1: expected ")
    verbose = run(tmp_path, "-v", "ingest", str(bad))
    assert "WARNING service.pipeline.ingest: rejected" in verbose.stderr


def test_counts_and_nothing_new_read_right(tmp_path: Path) -> None:
    assert run(tmp_path, "ingest", str(capture(tmp_path, 1))).returncode == 0
    listed = run(tmp_path, "papers")
    assert listed.stderr == "(1 paper)\n"
    assert run(tmp_path, "preview", "kv").stderr == "(1 paper)\n"
    (tmp_path / "data" / "inbox").mkdir()
    polled = run(tmp_path, "poll", "--source", "inbox")
    assert (polled.returncode, polled.stdout) == (0, "nothing new in inbox\n")


def test_sources_show_when_files_were_last_ingested(tmp_path: Path) -> None:
    before = json.loads(
        next(
            line
            for line in run(tmp_path, "sources", "--json").stdout.splitlines()
            if '"files"' in line
        )
    )
    assert before["last_success_at"] is None
    assert run(tmp_path, "ingest", str(capture(tmp_path, 1))).returncode == 0
    health = run(tmp_path, "sources", "--json")
    files = next(json.loads(line) for line in health.stdout.splitlines() if '"files"' in line)
    assert files["last_success_at"] is not None
    table = run(tmp_path, "sources").stdout
    row = next(line for line in table.splitlines() if line.startswith("files"))
    assert row.split()[3] != "-"
