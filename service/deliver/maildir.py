"""The ``maildir`` sender: each message becomes a file in a Maildir that any mail client reads.

``mailbox.Maildir`` writes into ``tmp/`` and renames into ``new/``, so a reader never sees half a
message. There is no envelope: the message's own To header says who it is for.
"""

from __future__ import annotations

import mailbox
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from service.errors import DeliveryError


class MaildirSender:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._box: mailbox.Maildir | None = None

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> str:
        try:
            if self._box is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                for sub in ("tmp", "new", "cur"):
                    (self.path / sub).mkdir(parents=True, exist_ok=True)
                self._box = mailbox.Maildir(self.path, create=False)
            key = self._box.add(message)
        except OSError as exc:
            raise DeliveryError(f"maildir {self.path}: {exc}", transient=True) from exc
        return f"stored as {key}"

    async def close(self) -> None:
        self._box = None

    async def __aenter__(self) -> MaildirSender:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
