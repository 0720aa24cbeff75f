"""The hand-assembled MIME reads back, through the ``email`` parser, exactly as meant."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default

import pytest

from service.render import mime


def read(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    assert not message.defects
    for part in message.walk():
        assert not part.defects, part.defects
    return message


@pytest.mark.parametrize(
    "subject",
    [
        "7 new papers: KV cache (4), privacy (3)",
        "Ünïcode ⚡ profile — ✓ (1)",
        "a long subject " * 12,
        "x" * 300,  # no space to fold at
        "Injected\r\nBcc: victim@example.org",
    ],
)
def test_headers_read_back(subject: str) -> None:
    headers = [
        mime.header_line("Subject", subject),
        mime.header_line("From", "=?utf-8?q?P=C3=A4per?= <p@example.org>"),
        mime.address_line("To", "ann@example.org"),
        mime.address_list_line("List-Unsubscribe", ["<https://x.org/u/1.abc>", "<mailto:u@x.org>"]),
    ]
    raw = mime.alternative(headers, "text", "<p>html</p>", "==paperboy-1==")
    message = read(raw)
    assert message["Subject"] == " ".join(subject.split())
    assert message["Bcc"] is None
    assert str(message["From"]) == "Päper <p@example.org>"
    assert message["To"] == "ann@example.org"
    assert message["List-Unsubscribe"] == "<https://x.org/u/1.abc>, <mailto:u@x.org>"
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert all(len(line) <= 78 for line in head.split(b"\r\n")[:-4] if b" " in line.strip())


def test_bodies_read_back_exactly() -> None:
    text = "Line one\nünïcode ✓\n.leading dot\n" + "long " * 60 + "\nlast line without newline"
    html = "<p>" + "a&amp;b " * 5000 + "</p>\n<p>ü</p>"
    message = read(mime.alternative([mime.header_line("Subject", "s")], text, html, "==b=="))
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None and rich is not None
    assert plain.get_content() == text.replace("\n", "\r\n")
    assert rich.get_content() == html  # base64 keeps it byte for byte
    raw = mime.alternative([], text, html, "==b==")
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))


def test_an_international_address_is_kept_as_utf8() -> None:
    line = mime.address_line("To", "jürgen@bücher.example")
    assert line == "To: jürgen@bücher.example\r\n"


def test_bodies_encoded_in_pieces_read_back_as_the_pieces_put_together() -> None:
    pieces = [
        "Line one\nünïcode ✓\n",
        "no line end, trailing space ",
        "x" * 200,  # one line longer than a line may be, split by soft breaks
        "=3D is not a code here\r\n.leading dot\rbare CR\n",
        '<p style="a: b;">' + "a&amp;b " * 40 + "</p>\n",
    ]
    text = "".join(pieces) + "\n"
    encoded = [mime.quoted_printable(piece) for piece in pieces] + [mime.quoted_printable("\n")]
    raw = mime.alternative_encoded([mime.header_line("Subject", "s")], encoded, encoded, "==b==")
    message = read(raw)
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and rich is not None
    expected = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    assert plain.get_content() + "\r\n" == expected  # the last line end is the boundary's
    assert rich.get_content() + "\r\n" == expected
    assert all(len(line) <= 76 for line in raw.split(b"\r\n"))


def test_a_body_in_pieces_must_end_a_line() -> None:
    with pytest.raises(ValueError, match="text body"):
        mime.alternative_encoded([], [mime.quoted_printable("no end")], [b"x\r\n"], "==b==")
