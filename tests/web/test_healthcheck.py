"""``paperboy healthcheck`` against a real uvicorn server and against a port nobody listens on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.cli import _healthz_url, main
from service.clock import FixedClock

from .serve import free_port, serving, web_app


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A served web side on SQLite: its base URL and port."""
    port = free_port()
    clock = FixedClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    app = web_app(tmp_path, f"sqlite:///{tmp_path / 'paperboy.db'}", clock, port)
    with app, serving(app, port) as base:
        yield base, port


def test_healthcheck_exits_0_when_healthz_answers_200(
    web: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    base, _ = web
    assert main(["healthcheck", "--url", f"{base}/healthz"]) == 0
    assert capsys.readouterr().err == ""


def test_healthcheck_asks_the_configured_port_by_default(
    web: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, port = web
    config = tmp_path / "paperboy.toml"
    # Listening on every address, as in the image: the check asks the loopback.
    config.write_text(f'[web]\nhost = "0.0.0.0"\nport = {port}\n')
    assert main(["healthcheck", "--config", str(config)]) == 0
    config.write_text(f"[web]\nport = {free_port()}\n")
    assert main(["healthcheck", "--config", str(config)]) == 1
    assert "/healthz: ConnectError" in capsys.readouterr().err


def test_healthcheck_exits_1_with_one_line_when_nothing_listens(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    assert main(["healthcheck", "--url", url, "--timeout", "2"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"paperboy: healthcheck: {url}: ConnectError: ")


def test_healthcheck_says_what_is_wrong_with_a_url_it_cannot_ask(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["healthcheck", "--url", "http://[::1"]) == 1
    assert capsys.readouterr().err.startswith("paperboy: healthcheck: http://[::1: InvalidURL: ")
    assert main(["healthcheck", "--url", "ftp://127.0.0.1/healthz"]) == 1
    assert "UnsupportedProtocol" in capsys.readouterr().err


def test_healthcheck_exits_1_on_an_answer_other_than_200(
    web: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    base, _ = web
    assert main(["healthcheck", "--url", f"{base}/no-such-page"]) == 1
    assert capsys.readouterr().err == (
        f"paperboy: healthcheck: {base}/no-such-page: answered 404, expected 200\n"
    )


def test_the_default_url_reaches_a_wildcard_listener_on_the_loopback() -> None:
    assert _healthz_url("0.0.0.0", 8000) == "http://127.0.0.1:8000/healthz"
    assert _healthz_url("::", 8000) == "http://[::1]:8000/healthz"
    assert _healthz_url("10.0.0.5", 9000) == "http://10.0.0.5:9000/healthz"
