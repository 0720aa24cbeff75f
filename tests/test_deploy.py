"""The image and compose.yaml stay in step with the settings: every PAPERBOY_* variable they set
is a documented setting whose value loads, and the services reach each other by name."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from service.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
# Not a setting: which settings file to read (see service.config.config_file).
FILE_VARIABLE = "PAPERBOY_CONFIG"


# What the compose files' ${VARIABLE} interpolations stand for in these tests.
INTERPOLATED = {"DOMAIN": "papers.example.org"}


def compose(name: str = "compose.yaml") -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, from either of compose's two forms (a map or KEY=VALUE lines),
    with ``${VARIABLE}`` and ``${VARIABLE:?message}`` interpolated as compose would."""
    given = service.get("environment") or {}
    if isinstance(given, list):
        given = dict(line.split("=", 1) for line in given)
    return {
        name: re.sub(r"\$\{(\w+)[^}]*\}", lambda m: INTERPOLATED[m[1]], str(value))
        for name, value in given.items()
    }


def dockerfile_environment() -> dict[str, str]:
    """The PAPERBOY_* variables the Dockerfile's ENV instructions set."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found |= dict(re.findall(r"(PAPERBOY_\w+)=(\S+)", line))
    return found


def field_path(name: str) -> list[str]:
    """The setting a PAPERBOY_* variable sets, as attribute names; fails if there is none."""
    path = name.removeprefix("PAPERBOY_").lower().split("__")
    model: type[BaseModel] = Settings
    for depth, part in enumerate(path):
        assert part in model.model_fields, f"{name}: {part!r} is not a setting of {model.__name__}"
        annotation = model.model_fields[part].annotation
        if depth < len(path) - 1:
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), (
                f"{name}: {part!r} has no nested settings"
            )
            model = annotation
    return path


def read_back(settings: Settings, path: list[str]) -> str:
    value: Any = settings
    for part in path:
        value = getattr(value, part)
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list | dict):  # given as JSON, as pydantic-settings reads it
        return json.dumps(value)
    return str(value)


def normal(value: str) -> str:
    """A variable's value as ``read_back`` shows it (JSON in one spelling)."""
    return json.dumps(json.loads(value)) if value.startswith(("[", "{")) else value


def in_container(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> tuple[Settings, dict[str, str]]:
    """The settings a container with ``variables`` (its image's first) reads from the mounted
    config/paperboy.toml; the variables that are settings."""
    settings_variables = {
        name: value
        for name, value in (dockerfile_environment() | variables).items()
        if name != FILE_VARIABLE
    }
    for name, value in settings_variables.items():
        monkeypatch.setenv(name, value)
    return load_settings(ROOT / "config" / "paperboy.toml"), settings_variables


def test_every_variable_the_image_sets_is_a_setting_that_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = dockerfile_environment()
    assert image[FILE_VARIABLE] == "/config/paperboy.toml"
    settings, variables = in_container(monkeypatch, {})
    for name, value in variables.items():
        assert read_back(settings, field_path(name)) == normal(value), name
    assert (settings.web.host, settings.web.port) == ("0.0.0.0", 8000)
    assert "EXPOSE 8000" in (ROOT / "Dockerfile").read_text()


@pytest.mark.parametrize("service", ["paperboy", "worker"])
@pytest.mark.parametrize("files", [["compose.yaml"], ["compose.yaml", "compose.proxy.yaml"]])
def test_every_variable_compose_sets_is_a_setting_that_loads(
    monkeypatch: pytest.MonkeyPatch, service: str, files: list[str]
) -> None:
    # An override file's environment adds to the base's, name by name (compose's merge rule).
    given: dict[str, str] = {}
    for name in files:
        given |= environment(compose(name)["services"][service])
    assert given, f"{service} sets no variables"
    assert all(name.startswith("PAPERBOY_") for name in given), given
    settings, _ = in_container(monkeypatch, given)
    for name, value in given.items():
        assert read_back(settings, field_path(name)) == normal(value), name


def test_a_variable_that_is_no_setting_is_caught() -> None:
    with pytest.raises(AssertionError, match="'smtp_host' is not a setting of MailSettings"):
        field_path("PAPERBOY_MAIL__SMTP_HOST")
    with pytest.raises(AssertionError, match="'port' has no nested settings"):
        field_path("PAPERBOY_WEB__PORT__NUMBER")
    assert field_path("PAPERBOY_MAIL__SMTP__SECURITY") == ["mail", "smtp", "security"]


def test_compose_wires_paperboy_to_postgresql_and_the_mail_catcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose()["services"]
    settings, _ = in_container(monkeypatch, environment(services["paperboy"]))
    assert settings.database().startswith("postgresql://")
    database_host = re.search(r"@([^:/]+)", settings.database())
    assert database_host is not None and database_host[1] in services
    assert services[database_host[1]]["healthcheck"]["test"]
    mail = settings.mail
    assert (mail.sender, mail.smtp.security) == ("smtp", "none")
    assert mail.smtp.host in services and services[mail.smtp.host]["image"].startswith(
        "axllent/mailpit"
    )
    assert mail.smtp.port == 1025
    # Mailpit shows every mail (confirm and manage links too): the loopback only.
    assert services["mailpit"]["ports"] == ["127.0.0.1:8025:8025"]
    assert services["paperboy"]["ports"] == ["127.0.0.1:8000:8000"]
    for name in ("paperboy", "worker"):
        assert "paperboy-data:/data" in services[name]["volumes"]
        assert "./config:/config:ro" in services[name]["volumes"]
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # The workers start once paperboy is healthy: one process applies the migrations.
    assert services["worker"]["depends_on"]["paperboy"]["condition"] == "service_healthy"
    assert "ports" not in services["worker"]
    # The workers compose, render and send only; the image's entry point is `paperboy`.
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["healthcheck"] == {"disable": True}  # it serves no /healthz
    assert "command" not in services["paperboy"]  # the image's CMD: `paperboy run`
    from service.cli import _parser, _worker

    assert _parser().parse_args(services["worker"]["command"]).handler is _worker


def test_the_image_labels_carry_the_projects_version_and_licence() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG VERSION={project['version']}\n" in dockerfile
    assert f'org.opencontainers.image.licenses="{project["license"]["text"]}"' in dockerfile


def test_behind_the_proxy_links_are_https_and_the_proxy_is_believed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose()["services"]
    proxy = compose("compose.proxy.yaml")["services"]
    for name in ("paperboy", "worker"):  # both send mail: both need the public base_url
        settings, _ = in_container(
            monkeypatch, environment(services[name]) | environment(proxy[name])
        )
        assert settings.mail.base_url == "https://papers.example.org"
        # Docker's default address pools, where the proxy's container gets its address.
        assert settings.web.trusted_proxies == ["172.16.0.0/12", "192.168.0.0/16"]
    assert "--to paperboy:8000" in proxy["caddy"]["command"]
    assert "443:443" in proxy["caddy"]["ports"]
