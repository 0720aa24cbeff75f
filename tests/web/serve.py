"""The web side for tests: a real uvicorn server on 127.0.0.1 in a thread, an app whose links
point at it, and a visitor (httpx with a cookie jar) that reads forms as a browser would."""

from __future__ import annotations

import html
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from service.app import App, build
from service.clock import Clock
from service.config import MailSettings, Settings, WebSettings
from service.web.server import create_app

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def web_app(
    tmp_path: Path,
    database_url: str,
    clock: Clock,
    port: int,
    *,
    mail: dict[str, Any] | None = None,
    sources: list[dict[str, Any]] | None = None,
    templates_dir: Path | None = None,
    **web: Any,
) -> App:
    """An app whose mail links point at ``http://127.0.0.1:<port>``; ``web`` settings as given
    (a light proof of work unless told otherwise)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        sources=sources or [],
        templates_dir=templates_dir,
        mail=MailSettings.model_validate(
            {"from_address": "paperboy <paperboy@papers.example.org>"}
            | (mail or {})
            | {"base_url": f"http://{HOST}:{port}"}
        ),
        web=WebSettings.model_validate({"pow_bits": 8} | web),
    )
    return build(settings, clock=clock)


@contextmanager
def serving(app: App, port: int) -> Iterator[str]:
    """``create_app(app)`` served by uvicorn on ``port`` until the block ends; its base URL."""
    config = uvicorn.Config(
        create_app(app), host=HOST, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Visitor:
    """A client with cookies that remembers the hidden fields of the last page it read, and
    the CSRF token of the last page that had one."""

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, follow_redirects=True, timeout=10)
        self.last: httpx.Response | None = None
        self.csrf: str | None = None

    def close(self) -> None:
        self.client.close()

    def _read(self, response: httpx.Response) -> httpx.Response:
        self.last = response
        found = re.search(r'name="csrf" value="([^"]*)"', response.text)
        if found is not None:
            self.csrf = found.group(1)
        return response

    def get(self, path: str) -> httpx.Response:
        return self._read(self.client.get(path))

    def hidden(self, name: str) -> str:
        """The value of the last page's hidden field ``name`` (the first one)."""
        assert self.last is not None
        found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', self.last.text)
        assert found is not None, f"no field {name} on {self.last.url}"
        return html.unescape(found.group(1))

    def post(
        self, path: str, data: dict[str, str], *, csrf: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """Post ``data`` (with the last page's CSRF token unless told not to)."""
        if csrf:
            assert self.csrf is not None, "no page with a form was read yet"
            data = {"csrf": self.csrf} | data
        return self._read(self.client.post(path, data=data, **kwargs))


def field_errors(page: str) -> dict[str, str]:
    """The problems a page shows, by field id."""
    return {
        name: html.unescape(text)
        for name, text in re.findall(
            r'class="field-error[^"]*" id="([^"]+)-error">(.*?)</p>', page, re.S
        )
    }


def links(message_text: str) -> list[str]:
    return re.findall(r"https?://\S+", message_text)
