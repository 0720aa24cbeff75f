"""The subscriber, profile and profiles commands as a user types them, on a SQLite file."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from service.cli import main

Run = Callable[..., tuple[int, str, str]]

DECLARED = """\
[[subscribers]]
email = "jane@example.org"
timezone = "Europe/Berlin"
schedule = "daily 07:30"

[[subscribers.profiles]]
name = "KV cache"
query = '"kv cache"'
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """``main`` in an empty working directory (so ``config/profiles.toml`` is the test's own):
    (exit status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PAPERBOY_CONFIG", raising=False)
    monkeypatch.delenv("PAPERBOY_PROFILES_FILE", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        status = main(["--data-dir", str(tmp_path / "data"), *args])
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


def declare(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config" / "profiles.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def subscribers(cli: Run) -> dict[str, dict[str, object]]:
    status, out, _ = cli("subscriber", "list", "--json")
    assert status == 0
    return {row["email"]: row for row in map(json.loads, out.splitlines())}


def profiles(cli: Run) -> dict[tuple[str, str], dict[str, object]]:
    status, out, _ = cli("profile", "list", "--json")
    assert status == 0
    return {(row["email"], row["name"]): row for row in map(json.loads, out.splitlines())}


# -- profiles import / export: files that cannot be read or written ----------------------------


def test_import_of_a_file_that_cannot_be_read_is_one_clear_error(cli: Run, tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    folder = tmp_path / "folder"
    folder.mkdir()
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[[subscribers]]\nemail = "j\xe9@example.org"\n')
    for path, reason in [
        (missing, "no such file"),
        (folder, "is a directory"),
        (latin, "not UTF-8"),
    ]:
        status, out, err = cli("profiles", "import", str(path))
        assert status == 1
        assert out == ""
        assert err.startswith(f"paperboy: {path}: ")
        assert reason in err
        assert len(err.splitlines()) == 1


def test_export_to_a_place_that_cannot_be_written_is_one_clear_error(
    cli: Run, tmp_path: Path
) -> None:
    for target in ["/nonexistent/x.toml", str(tmp_path)]:
        status, _, err = cli("profiles", "export", target)
        assert status == 1
        assert err.startswith(f"paperboy: {target}: ")
        assert len(err.splitlines()) == 1


def test_import_dash_reads_stdin_and_export_dash_writes_stdout(
    cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(DECLARED.encode()), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert cli("profiles", "import", "-")[:2] == (0, "imported 1 subscriber with 1 profile\n")
    status, out, _ = cli("profiles", "export", "-")
    assert status == 0
    assert 'email = "jane@example.org"' in out
    assert subscribers(cli)["jane@example.org"]["declared"] is False


# -- subscribers the profiles file declares ----------------------------------------------------


def test_the_cli_refuses_to_change_what_the_profiles_file_declares(
    cli: Run, tmp_path: Path
) -> None:
    declare(tmp_path, DECLARED)
    refusal = "paperboy: jane@example.org is declared in config/profiles.toml; change it there\n"
    for command in [
        ("profile", "add", "jane@example.org", "cli-added", "llm"),
        ("profile", "remove", "jane@example.org", "KV cache"),
        ("subscriber", "add", "jane@Example.ORG", "--instant"),
        ("subscriber", "remove", "jane@example.org"),
    ]:
        assert cli(*command) == (1, "", refusal), command
    assert list(profiles(cli)) == [("jane@example.org", "KV cache")]
    assert subscribers(cli)["jane@example.org"]["schedule"] == "daily 07:30"

    # Those the file does not declare are the CLI's, and stay after the next start-up sync.
    assert cli("subscriber", "add", "bob@example.org")[0] == 0
    assert cli("profile", "add", "bob@example.org", "cli-added", "llm")[0] == 0
    assert ("bob@example.org", "cli-added") in profiles(cli)


def test_an_import_may_not_change_what_the_profiles_file_declares(cli: Run, tmp_path: Path) -> None:
    declare(tmp_path, DECLARED)
    exported = tmp_path / "all.toml"
    assert cli("subscriber", "add", "bob@example.org", "--instant")[0] == 0
    assert cli("profiles", "export", str(exported))[0] == 0
    # The same subscriber again is no change: the round trip works and jane stays declared.
    assert cli("profiles", "import", str(exported))[0] == 0
    assert subscribers(cli)["jane@example.org"]["declared"] is True

    changed = tmp_path / "changed.toml"
    changed.write_text(exported.read_text().replace("daily 07:30", "instant"))
    status, _, err = cli("profiles", "import", str(changed))
    assert status == 1
    assert err == (
        "paperboy: jane@example.org is declared in config/profiles.toml; change it there\n"
    )
    assert subscribers(cli)["jane@example.org"]["schedule"] == "daily 07:30"


# -- where a bad query is ------------------------------------------------------------------------


def test_a_bad_query_in_the_profiles_file_names_the_file_subscriber_and_profile(
    cli: Run, tmp_path: Path
) -> None:
    declare(tmp_path, DECLARED + '\n[[subscribers.profiles]]\nname = "llm"\nquery = "kv OR (llm"\n')
    status, _, err = cli("subscriber", "list")
    assert status == 1
    assert err.splitlines() == [
        'paperboy: config/profiles.toml: subscribers[0].profiles[1] (name "llm"): query: '
        "unclosed parenthesis: this ( is never closed at position 6",
        "  kv OR (llm",
        "        ^",
    ]


def test_a_bad_query_in_an_import_file_names_the_file_subscriber_and_profile(
    cli: Run, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(DECLARED.replace('"kv cache"', '"kv cache'))
    status, _, err = cli("profiles", "import", str(bad))
    assert status == 1
    first, query, caret = err.splitlines()
    assert first.startswith(
        f'paperboy: {bad}: subscribers[0].profiles[0] (name "KV cache"): query: '
    )
    assert (query, caret.index("^")) == ('  "kv cache', 2)
    assert subscribers(cli) == {}


# -- changing a subscriber or a profile keeps what is not given ----------------------------------


def test_changing_a_subscriber_keeps_the_settings_not_given(cli: Run) -> None:
    t = "t@example.org"
    assert cli("subscriber", "add", t, "--timezone", "Europe/Berlin", "--weekly", "fri", "09:15")[
        1
    ] == (f"{t}: weekly fri 09:15 (Europe/Berlin)\n")
    assert cli("subscriber", "add", t, "--timezone", "Asia/Tokyo")[0] == 0
    assert subscribers(cli)[t]["schedule"] == "weekly fri 09:15"
    assert cli("subscriber", "add", t, "--instant")[0] == 0
    row = subscribers(cli)[t]
    assert (row["timezone"], row["schedule"]) == ("Asia/Tokyo", "instant")
    # A new subscriber gets the defaults.
    assert cli("subscriber", "add", "new@example.org")[1] == "new@example.org: daily 07:00 (UTC)\n"


def test_changing_a_profile_keeps_the_settings_not_given(cli: Run) -> None:
    t = "t@example.org"
    assert cli("subscriber", "add", t)[0] == 0
    first = ("--min-upvotes", "5", "--max-items", "7", "--alert-threshold", "3.5")
    assert cli("profile", "add", t, "kv", "kv", *first, "--send-when-empty")[0] == 0
    assert cli("profile", "add", t, "kv", "kv cache")[0] == 0
    row = profiles(cli)[(t, "kv")]
    assert (row["query"], row["min_upvotes"], row["max_items"]) == ("kv cache", 5, 7)
    assert (row["alert_threshold"], row["send_when_empty"]) == (3.5, True)

    assert cli("profile", "add", t, "kv", "kv", "--no-send-when-empty")[0] == 0
    assert cli("profile", "add", t, "kv", "kv", "--alert-threshold", "none")[0] == 0
    row = profiles(cli)[(t, "kv")]
    assert (row["alert_threshold"], row["send_when_empty"], row["max_items"]) == (None, False, 7)
    # A new profile gets the defaults.
    assert cli("profile", "add", t, "other", "llm")[0] == 0
    row = profiles(cli)[(t, "other")]
    assert (row["min_upvotes"], row["max_items"], row["alert_threshold"]) == (0, 20, None)


# -- alert thresholds ----------------------------------------------------------------------------


def test_an_alert_threshold_must_be_a_finite_score_above_0(cli: Run) -> None:
    assert cli("subscriber", "add", "t@example.org")[0] == 0
    for bad in ["inf", "nan", "-1", "0"]:
        status, _, err = cli(
            "profile", "add", "t@example.org", "kv", "kv", "--alert-threshold", bad
        )
        assert status == 1, bad
        assert "alert_threshold" in err
    assert profiles(cli) == {}


def test_an_address_in_other_letter_cases_is_the_same_subscriber(cli: Run, tmp_path: Path) -> None:
    assert cli("subscriber", "add", "you@example.org")[0] == 0
    assert cli("subscriber", "add", "YOU@Example.org", "--instant")[0] == 0
    assert cli("profile", "add", "You@EXAMPLE.org", "KV", "kv")[0] == 0
    assert list(subscribers(cli)) == ["you@example.org"]  # the address as first given
    assert subscribers(cli)["you@example.org"]["schedule"] == "instant"
    assert list(profiles(cli)) == [("you@example.org", "KV")]
    status, out, _ = cli("profile", "list", "YOU@example.ORG")
    assert status == 0 and "KV: kv" in out
    # The profiles file finds the same mailbox, and declaring it twice is refused.
    declare(tmp_path, DECLARED.replace("jane@example.org", "You@Example.Org"))
    assert list(subscribers(cli)) == ["you@example.org"]
    twice = DECLARED + DECLARED.replace("jane@example.org", "JANE@example.org")
    declare(tmp_path, twice)
    status, _, err = cli("subscriber", "list")
    assert status != 0 and "declared twice" in err
    declare(tmp_path, DECLARED.replace("jane@example.org", "You@Example.Org"))
    # Declared by the file, in any case, it is left alone by the CLI ...
    assert cli("subscriber", "remove", "YOU@EXAMPLE.ORG")[0] != 0
    # ... and removed when the file no longer declares it.
    declare(tmp_path, DECLARED)
    assert list(subscribers(cli)) == ["jane@example.org"]
