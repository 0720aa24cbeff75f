"""What ships and what a client address is: the web's templates and static files are in the
wheel's data files, and X-Forwarded-For is believed only from a trusted proxy."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from starlette.requests import Request

from service.web.limits import Limiter, RateLimited, client_address

ROOT = Path(__file__).resolve().parents[2]


def test_every_template_and_static_file_is_in_the_wheel_data_files() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data_files = config["tool"]["setuptools"]["data-files"]
    shipped = {}
    for target, patterns in data_files.items():
        for pattern in patterns:
            for path in ROOT.glob(pattern):
                if path.is_file():
                    shipped[path.relative_to(ROOT).as_posix()] = target
    files = [p for p in (ROOT / "templates").rglob("*") if p.is_file()]
    assert files
    for path in files:
        name = path.relative_to(ROOT).as_posix()
        assert name in shipped, f"{name} is not in [tool.setuptools.data-files]"
        # Installed under <prefix>/share/paperboy/<its folder>, where the loader looks.
        assert shipped[name] == f"share/paperboy/{path.parent.relative_to(ROOT).as_posix()}"
    assert any(fnmatch.fnmatch(n, "templates/web/static/*.js") for n in shipped)


def request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 1234), "headers": headers})


def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy() -> None:
    assert client_address(request("203.0.113.9", "198.51.100.1"), []) == "203.0.113.9"
    assert client_address(request("203.0.113.9", "198.51.100.1"), ["10.0.0.0/8"]) == "203.0.113.9"
    trusted = ["10.0.0.0/8", "127.0.0.1"]
    # A client may put anything first; the last address the proxies did not add counts.
    chain = "1.2.3.4, 198.51.100.7, 10.1.1.1"
    assert client_address(request("127.0.0.1", chain), trusted) == "198.51.100.7"
    assert client_address(request("10.0.0.2"), trusted) == "10.0.0.2"


def test_the_limiter_counts_a_sliding_window_per_key() -> None:
    limiter = Limiter()
    for second in (0.0, 10.0):
        limiter.hit("a", 2, 60, second)
    limiter.hit("b", 2, 60, 11.0)  # another key has its own count
    try:
        limiter.hit("a", 2, 60, 30.0)
    except RateLimited as exc:
        assert exc.retry_after == 30  # when the first hit leaves the window
    else:
        raise AssertionError("the third hit in a minute was let through")
    limiter.hit("a", 2, 60, 60.5)  # the first hit has left the window


def luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: str, other: str) -> float:
    high, low = sorted((luminance(one), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# (text, background) pairs the stylesheet puts together; text needs 4.5:1 (WCAG AA), the
# focus ring and field borders 3:1 (non-text contrast).
TEXT_PAIRS = [
    ("text", "bg"),
    ("text", "card"),
    ("muted", "bg"),
    ("muted", "card"),
    ("accent", "bg"),
    ("accent", "card"),
    ("accent-text", "accent"),
    ("accent", "accent-soft"),
    ("danger", "card"),
    ("card", "danger"),
    ("ok-text", "ok-bg"),
    ("text", "error-bg"),
    ("mark-text", "mark"),
    ("text", "accent-soft"),
]
OTHER_PAIRS = [("focus", "bg"), ("focus", "card"), ("field-line", "bg"), ("field-line", "card")]


def test_the_stylesheet_keeps_wcag_aa_contrast_in_light_and_dark() -> None:
    import re

    css = (ROOT / "templates" / "web" / "static" / "paperboy.css").read_text()
    light_block = css[css.index(":root {") : css.index("}", css.index(":root {"))]
    dark_start = css.index(":root {", css.index("prefers-color-scheme: dark"))
    dark_block = css[dark_start : css.index("}", dark_start)]
    for block in (light_block, dark_block):
        colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6});", block))
        for text, background in TEXT_PAIRS:
            ratio = contrast(colours[text], colours[background])
            assert ratio >= 4.5, (text, background, round(ratio, 2))
        for fore, background in OTHER_PAIRS:
            assert contrast(colours[fore], colours[background]) >= 3, (fore, background)
