"""Settings: the example file documents every setting; files and environment are read."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from service.config import Settings, SourceSettings, load_settings, parse_duration
from service.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "paperboy.toml"


def documented_keys(text: str) -> dict[str, str]:
    """Each setting named in the example (set, or commented out) with the comment above it."""
    section = ""
    keys: dict[str, str] = {}
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped.strip("[]") + "."
            comment = []
            continue
        key = re.match(r"#?\s*([a-z_]+)\s*=", stripped)
        if key:
            keys[section + key.group(1)] = " ".join(comment)
            if not stripped.startswith("#"):
                comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("# "))
        elif not stripped:
            comment = []
    return keys


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= model_keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_every_setting_is_documented_in_the_example() -> None:
    documented = documented_keys(EXAMPLE.read_text())
    expected = model_keys(Settings) | {f"sources.{k}" for k in model_keys(SourceSettings)}
    expected.discard("sources")
    assert expected <= set(documented), expected - set(documented)
    assert set(documented) <= expected | {"sources"}, set(documented) - expected
    undocumented = [key for key in expected if not documented[key] and "sources." not in key]
    assert not undocumented


def test_the_example_loads_and_equals_the_defaults() -> None:
    from_file = load_settings(EXAMPLE)
    assert from_file == Settings()
    assert tomllib.loads(EXAMPLE.read_text())["sources"][0]["id"] == "inbox"


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERBOY_FETCH__TIMEOUT", "7")
    monkeypatch.setenv("PAPERBOY_DATA_DIR", "/srv/paperboy")
    settings = load_settings(EXAMPLE)
    assert settings.fetch.timeout == 7
    assert settings.data_dir == Path("/srv/paperboy")


def test_a_bad_value_names_the_environment_variable_it_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAPERBOY_FETCH__TIMEOUT", "abc")
    monkeypatch.setenv("PAPERBOY_MAIL", '{"alerts_per_hour": -1}')
    with pytest.raises(ConfigError) as caught:
        load_settings(EXAMPLE)
    problems = str(caught.value).split("; ")
    assert sorted(p.split(": ")[0] for p in problems) == [
        "environment variable PAPERBOY_FETCH__TIMEOUT",
        "environment variable PAPERBOY_MAIL",
    ]
    monkeypatch.delenv("PAPERBOY_MAIL")
    monkeypatch.setenv("PAPERBOY_FETCH__TIMEOUT", "7")
    monkeypatch.setenv("PAPERBOY_MATCHING__UPVOTE_BOOST", "inf")
    with pytest.raises(
        ConfigError, match=r"PAPERBOY_MATCHING__UPVOTE_BOOST: matching\.upvote_boost"
    ):
        load_settings(EXAMPLE)


def test_secrets_are_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERBOY_DATABASE_URL", "postgresql://u:hunter2@db/paperboy")
    settings = load_settings(EXAMPLE)
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)
    assert settings.database().endswith("hunter2@db/paperboy")


def test_bad_settings_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[sources]]\nid = "a b"\nlocation = "x"\ninterval = "soon"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(bad)
    message = str(caught.value)
    assert message.startswith(str(bad))
    assert f"{bad}: sources[0].id: String should match pattern" in message
    assert f"{bad}: sources[0].interval: expected a duration such as 90" in message
    bad.write_text("data_dir = [unclosed\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_settings(bad)
    with pytest.raises(ConfigError, match="no such settings file"):
        load_settings(tmp_path / "missing.toml")


def test_duplicate_source_ids_are_refused(tmp_path: Path) -> None:
    twice = tmp_path / "twice.toml"
    twice.write_text(
        '[[sources]]\nid = "a"\nlocation = "x"\n[[sources]]\nid = "a"\nlocation = "y"\n'
    )
    with pytest.raises(ConfigError, match="declared twice"):
        load_settings(twice)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90),
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1h30m", 5400),
        ("7d", 604800),
        ("250ms", 0.25),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["soon", "1x", "", "-5m", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


def settings_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "paperboy.toml"
    path.write_text(text)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return str(caught.value)


SOURCE = '[[sources]]\nid = "arxiv"\nlocation = "https://rss.arxiv.org/rss/cs.LG"\n'


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            SOURCE + 'cron = "0 25 * * *"\n',
            "sources[0].cron: invalid cron expression '0 25 * * *':"
            " Error validating expression '25'",
        ),
        (
            SOURCE + 'cron = "every day"\n',
            "sources[0].cron: cron expression 'every day' has 2 fields; expected 5",
        ),
        (
            'log_level = "LOUD"\n',
            "log_level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            '[mail]\nfrom_address = "not"\n',
            "mail.from_address: expected a mail address such as 'paperboy <digests@example.org>',"
            " got 'not'",
        ),
        ('[mail]\nreply_to = "a b@c"\n', "mail.reply_to: expected a mail address"),
        (
            '[mail]\nfrom_address = "x@example.org\\r\\nBcc: y@example.org"\n',
            "mail.from_address: expected a mail address",
        ),
        (
            '[[sources]]\nid = "x"\nlocation = "ftp://example.org/list.txt"\n',
            "sources[0].location: unknown scheme 'ftp':"
            " expected an http(s) URL, a file or a folder",
        ),
        (
            '[[sources]]\nid = "x"\nlocation = "/nowhere/paperboy/inbox"\n',
            "sources[0].location: no such file or folder '/nowhere/paperboy/inbox'",
        ),
        (
            SOURCE + 'kind = "feed"\noptions = {host_intervall = "3s"}\n',
            "sources[0].options: unknown option 'host_intervall' for a 'feed' source at an"
            " http(s) location (known: host_interval, new_announce_types, params)",
        ),
        (
            '[[sources]]\nid = "x"\nkind = "listing"\nlocation = "inbox"\noptions = {pages = 2}\n',
            "sources[0].options: unknown option 'pages' for a 'listing' source at a file or folder"
            " location (known: none)",
        ),
        (
            SOURCE + 'kind = "hf-daily"\noptions = {pages = "3"}\n',
            "sources[0].options: option 'pages': expected a whole number of at least 1, got '3'",
        ),
        (
            SOURCE + 'options = {host_interval = "soon"}\n',
            "sources[0].options: expected a duration such as 90",
        ),
        (SOURCE + 'interval = "0s"\n', "sources[0].interval: expected a time longer than 0"),
    ],
)
def test_a_bad_setting_is_refused_at_load_with_one_line_naming_it(
    tmp_path: Path, text: str, says: str
) -> None:
    path = settings_file(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}: {says}"), message
    assert "\n" not in message
    assert "Value error" not in message


def test_a_bad_setting_from_the_environment_names_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAPERBOY_LOG_LEVEL", "chatty")
    assert load_error(EXAMPLE).startswith("environment variable PAPERBOY_LOG_LEVEL: log_level:")


def test_good_settings_pass_and_are_normalised(tmp_path: Path) -> None:
    folder = tmp_path / "captures"
    folder.mkdir()
    path = settings_file(
        tmp_path,
        'log_level = "debug"\n[mail]\nfrom_address = "digests@papers.example.org"\n'
        + SOURCE
        + 'kind = "feed"\ncron = "30 5 * * 1-5"\n'
        + 'options = {host_interval = "3s", new_announce_types = ["new"]}\n'
        + f'[[sources]]\nid = "mine"\nlocation = "{folder}"\n'
        + '[[sources]]\nid = "inbox"\nlocation = "not/yet/made"\n'
        + '[[sources]]\nid = "hf"\nkind = "hf-daily"\nlocation = "https://huggingface.co/api"\n'
        + 'options = {params = {limit = 100, date = "2025-03-03"}, pages = 3}\n',
    )
    settings = load_settings(path)
    assert settings.log_level == "DEBUG"
    assert [s.id for s in settings.sources] == ["arxiv", "mine", "inbox", "hf"]


def test_a_bad_setting_is_shown_by_the_cli_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main

    path = settings_file(tmp_path, SOURCE + 'cron = "61 * * * *"\n')
    assert main(["--config", str(path), "sources"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"paperboy: {path}: sources[0].cron: invalid cron expression '61 * * * *': "
    )
    assert "Traceback" not in err
    assert err.count("\n") == 1
