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
    assert "sources.0.id" in message
    assert "sources.0.interval" in message
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
