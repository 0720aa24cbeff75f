"""The ``maildir`` sender: each message becomes a file in a Maildir that any mail client reads.

Each message is written into ``tmp/``, flushed to disk and renamed into ``new/`` (as the Maildir
convention asks), so a reader never sees half a message; names follow Python's ``mailbox``
(``<seconds>.M<microseconds>P<pid>Q<count>.<host>``). Several are written at once, in threads.
There is no envelope: the message's own To header says who it is for.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from service.deliver import Closing
from service.errors import DeliveryError

WRITERS = 8
"""Messages written at once: each is flushed to disk (fsync) before it counts as sent, and a
disk takes several flushes at once about as quickly as one."""


class MaildirSender(Closing):
    concurrency = WRITERS

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp, self._new = str(path / "tmp"), str(path / "new")
        self._ready = False
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        self._count = itertools.count(1)

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> str:
        try:
            if not self._ready:
                for sub in ("tmp", "new", "cur"):
                    (self.path / sub).mkdir(parents=True, exist_ok=True)
                self._ready = True
            # Named here, in the order messages are handed over; written in a thread.
            now = time.time()
            name = (
                f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._count)}.{self._host}"
            )
            await asyncio.to_thread(self._write, name, message)
        except OSError as exc:
            raise DeliveryError(f"maildir {self.path}: {exc}", transient=True) from exc
        return f"stored as {name}"

    def _write(self, name: str, message: bytes) -> None:
        """Write into ``tmp/``, flush to disk, then move into ``new/`` (a reader never sees
        half a message). Plain ``os`` calls on string paths: a day's mail is 100,000 files."""
        temporary = f"{self._tmp}/{name}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            try:
                written = os.write(fd, message)
                while written < len(message):
                    written += os.write(fd, memoryview(message)[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(temporary, f"{self._new}/{name}")  # never over another message
        finally:
            Path(temporary).unlink(missing_ok=True)

    async def close(self) -> None:
        self._ready = False
