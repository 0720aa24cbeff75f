"""A multipart/alternative message (RFC 2045/2046/5322) put together directly as bytes.

The ``email`` package builds the same message about eight times slower (its header registry
parses every value back; its generator walks a tree); a digest run renders thousands, so the
few lines of MIME that paperboy needs are written here, with the stdlib's encoders: RFC 2047
encoded words from ``email.header`` for non-ASCII headers, quoted-printable from ``binascii``
for the bodies (base64 for a notice's HTML). A digest's bodies come as pieces encoded one by
one (``quoted_printable``), so that a paper's block, the same in many digests, is encoded once.
``tests/test_mime.py`` checks the result with the ``email`` parser.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from email.header import Header

CRLF = "\r\n"
_FOLD_AT = 78
_SPACE = re.compile(r"\s+")


def header_line(name: str, value: str) -> str:
    """``Name: value`` folded to 78 columns; non-ASCII as RFC 2047 words. Whitespace, CR and
    LF inside ``value`` become single spaces: nothing can start a header of its own."""
    value = _SPACE.sub(" ", value).strip()
    if value.isascii() and len(name) + 2 + len(value) <= _FOLD_AT:
        return f"{name}: {value}{CRLF}"
    # Encoded words can split a word too long to fold; plain ASCII folds only at spaces.
    plain = value.isascii() and max(map(len, value.split(" "))) < _FOLD_AT - len(name) - 2
    charset = "us-ascii" if plain else "utf-8"
    encoded = Header(value, charset, header_name=name).encode(linesep=CRLF, maxlinelen=_FOLD_AT)
    return f"{name}: {encoded}{CRLF}"


def address_list_line(name: str, items: Sequence[str]) -> str:
    """A header of ``<...>`` items (List-Unsubscribe), folded between items."""
    return f"{name}: " + f",{CRLF} ".join(items) + CRLF


def address_line(name: str, address: str) -> str:
    """``To: address``: an ASCII address as usual, an internationalised one as UTF-8."""
    if address.isascii():
        return header_line(name, address)
    return f"{name}: {_SPACE.sub('', address)}{CRLF}"


def _quoted_printable(text: str) -> bytes:
    body = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", CRLF)
    if not body.endswith(CRLF):
        body += CRLF
    return binascii.b2a_qp(body.encode("utf-8"), quotetabs=False, istext=True, header=False)


def quoted_printable(text: str) -> bytes:
    """``text`` as quoted-printable lines ending in CRLF, a piece of a body: text that does not
    end a line ends in a soft line break, so pieces encoded apart and put one after another
    decode to their texts put together (each encoded line stays within 76 columns)."""
    plain = text.replace("\r\n", "\n").replace("\r", "\n")
    encoded = binascii.b2a_qp(plain.encode("utf-8"), quotetabs=False, istext=True, header=False)
    encoded = encoded.replace(b"\n", b"\r\n")
    return encoded if not encoded or plain.endswith("\n") else encoded + b"=\r\n"


def _base64(text: str) -> bytes:
    encoded = binascii.b2a_base64(text.encode("utf-8"), newline=False)
    lines = [encoded[at : at + 76] for at in range(0, len(encoded), 76)]
    return b"\r\n".join(lines) + b"\r\n"


def alternative(headers: Sequence[str], text: str, html: str, boundary: str) -> bytes:
    """The message: ``headers`` (lines from ``header_line``), then a text and an HTML part.

    ``boundary`` must not contain "=" next to hex digits; quoted-printable output never holds
    "==", so a boundary made of "==" and a token is safe."""
    head = "".join(headers)  # ASCII, but for a UTF-8 address (RFC 6532, sent with SMTPUTF8)
    part = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: {}\r\n\r\n'
    return b"".join(
        (
            head.encode("utf-8"),
            b"MIME-Version: 1.0\r\n",
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode(),
            f"--{boundary}\r\n{part.format('plain', 'quoted-printable')}".encode(),
            _quoted_printable(text),
            f"--{boundary}\r\n{part.format('html', 'base64')}".encode(),
            _base64(html),
            f"--{boundary}--\r\n".encode(),
        )
    )


def alternative_encoded(
    headers: Sequence[str], text: Sequence[bytes], html: Sequence[bytes], boundary: str
) -> bytes:
    """The message of ``alternative`` from bodies already encoded, each as pieces from
    ``quoted_printable``; each body's last piece must end a line (not in a soft break).

    ``boundary`` as for ``alternative``."""
    if not (text and text[-1].endswith(b"\r\n") and not text[-1].endswith(b"=\r\n")):
        raise ValueError("the text body must end a line")
    if not (html and html[-1].endswith(b"\r\n") and not html[-1].endswith(b"=\r\n")):
        raise ValueError("the HTML body must end a line")
    part = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable'
    return b"".join(
        (
            "".join(headers).encode("utf-8"),
            b"MIME-Version: 1.0\r\n",
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode(),
            f"--{boundary}\r\n{part.format('plain')}\r\n\r\n".encode(),
            *text,
            f"--{boundary}\r\n{part.format('html')}\r\n\r\n".encode(),
            *html,
            f"--{boundary}--\r\n".encode(),
        )
    )
