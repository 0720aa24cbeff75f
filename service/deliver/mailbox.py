"""The bounce mailbox: where returned mail (bounces, complaints, unsubscribe mails) is read from,
a Maildir the MTA delivers to or an IMAP folder.

Each message is read, then moved once handled: to the ``processed`` sub-folder, or to
``rejected`` when it could not be read (kept for a person), so that no message is read twice
and none is lost. A message is moved only after what it said was stored.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from service.config import ImapSettings
from service.errors import MailConfigError

PROCESSED = "processed"
REJECTED = "rejected"


class ReturnBox(Protocol):
    """What the bounce reading needs of a mailbox."""

    def messages(self) -> Iterator[tuple[str, bytes]]:
        """(key, the raw bytes) of each message waiting, oldest first."""
        ...

    def file(self, key: str, folder: str) -> None:
        """Move a message read to ``folder`` (``PROCESSED`` or ``REJECTED``)."""
        ...

    def close(self) -> None: ...


class MaildirBox:
    """A Maildir (``new/`` and ``cur/``); handled messages go to its Maildir++ sub-folders
    ``.processed`` and ``.rejected``."""

    def __init__(self, path: Path) -> None:
        if not path.is_dir():
            raise MailConfigError(f"{path}: no such Maildir (bounces.maildir or --maildir)")
        self.path = path
        self.box = mailbox.Maildir(path, create=False)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        # Python and most MTAs name Maildir files "<seconds>.<unique>": about oldest first.
        for key in sorted(self.box.keys()):
            try:
                raw = self.box.get_bytes(key)
            except KeyError:  # taken by another reader meanwhile
                continue
            yield key, raw

    def file(self, key: str, folder: str) -> None:
        target = self._folder(folder)
        target.add(self.box.get_bytes(key))
        self.box.discard(key)

    def _folder(self, name: str) -> mailbox.Maildir:
        if name in self.box.list_folders():
            return self.box.get_folder(name)
        return self.box.add_folder(name)

    def close(self) -> None:
        self.box.close()


_LIST_REPLY = re.compile(rb'\((?P<flags>[^)]*)\) (?:"(?P<delim>[^"]*)"|NIL) ')


class ImapBox:
    """An IMAP folder; handled messages are moved (MOVE, or COPY and expunge) to the
    sub-folders ``<folder><delimiter>processed`` and ``...rejected``, created when missing."""

    def __init__(
        self, settings: ImapSettings, *, tls_context: ssl.SSLContext | None = None
    ) -> None:
        if settings.host is None:
            raise MailConfigError("no IMAP mailbox is configured (bounces.imap.host)")
        self.settings = settings
        where = f"{settings.host}:{settings.port}"
        context = tls_context or ssl.create_default_context()
        if not settings.validate_certs and tls_context is None:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            if settings.security == "tls":
                self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    settings.host, settings.port, ssl_context=context, timeout=30
                )
            else:
                self.imap = imaplib.IMAP4(settings.host, settings.port, timeout=30)
        except OSError as exc:
            raise MailConfigError(f"IMAP {where}: {exc} (check [bounces.imap])") from exc
        try:
            if settings.security == "starttls":
                self.imap.starttls(context)
            password = settings.password.get_secret_value() if settings.password else ""
            self.imap.login(settings.username or "", password)
            status, _ = self.imap.select(_quoted(settings.folder))
            if status != "OK":
                raise imaplib.IMAP4.error(f"no folder {settings.folder!r}")
        except (OSError, imaplib.IMAP4.error) as exc:
            self.imap.shutdown()
            raise MailConfigError(f"IMAP {where}: {exc} (check [bounces.imap])") from exc
        except BaseException:
            self.imap.shutdown()
            raise
        self.where = where
        self.delimiter = self._delimiter()
        # Asked again after the login: servers announce more (MOVE) to a logged-in client.
        status, data = self.imap.capability()
        words = data[0].upper().split() if status == "OK" and isinstance(data[0], bytes) else []
        self.can_move = b"MOVE" in words
        self._made: set[str] = set()

    def _delimiter(self) -> str:
        status, data = self.imap.list('""', _quoted(self.settings.folder))
        for line in data if status == "OK" else []:
            if isinstance(line, bytes):
                found = _LIST_REPLY.match(line)
                if found and found.group("delim"):
                    return found.group("delim").decode()
        return "."

    def messages(self) -> Iterator[tuple[str, bytes]]:
        status, data = self.imap.uid("SEARCH", "ALL")
        if status != "OK":
            raise MailConfigError(f"IMAP {self.where}: SEARCH failed: {data!r}")
        uids = data[0].split() if data and isinstance(data[0], bytes) else []
        for uid in (u.decode() for u in uids):
            status, parts = self.imap.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((p[1] for p in parts if isinstance(p, tuple)), None)
            if status == "OK" and isinstance(raw, bytes):
                yield uid, raw

    def file(self, key: str, folder: str) -> None:
        target = f"{self.settings.folder}{self.delimiter}{folder}"
        if target not in self._made:
            self.imap.create(_quoted(target))  # NO when it exists: fine
            self._made.add(target)
        if self.can_move:
            status, data = self.imap.uid("MOVE", key, _quoted(target))
        else:
            status, data = self.imap.uid("COPY", key, _quoted(target))
            if status == "OK":
                self.imap.uid("STORE", key, "+FLAGS.SILENT", r"(\Deleted)")
                self.imap.expunge()
        if status != "OK":
            raise MailConfigError(f"IMAP {self.where}: could not move message {key}: {data!r}")

    def close(self) -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):  # gone: nothing to tidy
            self.imap.close()
            self.imap.logout()


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
