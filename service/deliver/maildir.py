"""The ``maildir`` sender: each message becomes a file in a Maildir that any mail client reads.

Each message is written into ``tmp/``, flushed to disk and linked into ``new/`` (as the Maildir
convention asks), so a reader never sees half a message; names follow Python's ``mailbox``
(``<seconds>.M<microseconds>P<pid>Q<count>.<host>``). There is no envelope: the message's own
To header says who it is for.

Messages handed over together are stored together (a group commit): all written, then all
flushed (by ``FLUSHERS`` threads at once), then all linked, then ``new/`` flushed once, in a
thread. A disk flushes a run of files written together several times faster than it flushes
them one by one as each is written (0.2 against 1.0 ms a message of 28 KB here); each ``send``
still returns only once its own message is on disk.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

from service.deliver import Closing
from service.errors import DeliveryError

WRITERS = 100
"""Messages in flight at once, stored together: the mailroom hands over this many (a claimed
batch) between two writes of their outcomes."""

FLUSHERS = 8
"""Threads that flush a group's files at once: the disk takes several flushes together in
little more time than one."""


class MaildirSender(Closing):
    concurrency = WRITERS

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp, self._new = str(path / "tmp"), str(path / "new")
        self._ready = False
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        self._count = itertools.count(1)
        self._waiting: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._storing: asyncio.Task[None] | None = None
        self._flushers: ThreadPoolExecutor | None = None

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> str:
        try:
            if not self._ready:
                for sub in ("tmp", "new", "cur"):
                    (self.path / sub).mkdir(parents=True, exist_ok=True)
                self._ready = True
            # Named here, in the order messages are handed over; stored with the others
            # handed over meanwhile.
            now = time.time()
            name = (
                f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._count)}.{self._host}"
            )
            loop = asyncio.get_running_loop()
            if self._storing is not None and self._storing.get_loop() is not loop:
                # Left by an event loop that has ended: what it did not store was never
                # counted as sent, and is sent again.
                self._waiting, self._storing = [], None
            stored = loop.create_future()
            self._waiting.append((name, message, stored))
            if self._storing is None or self._storing.done():
                self._storing = loop.create_task(self._store_waiting())
            await stored
        except OSError as exc:
            raise DeliveryError(f"maildir {self.path}: {exc}", transient=True) from exc
        return f"stored as {name}"

    async def _store_waiting(self) -> None:
        """Store what is waiting, a group at a time, until nothing is: what is handed over
        while a group is being stored goes in the next."""
        while self._waiting:
            group, self._waiting = self._waiting, []
            if self._flushers is None:
                self._flushers = ThreadPoolExecutor(FLUSHERS, thread_name_prefix="maildir")
            try:
                errors = await asyncio.to_thread(
                    store_group,
                    self._tmp,
                    self._new,
                    [(name, body) for name, body, _ in group],
                    self._flushers,
                )
            except BaseException as exc:  # each sender whose message it was gets it
                for _, _, stored in group:
                    if not stored.done():
                        stored.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, _, stored), error in zip(group, errors, strict=True):
                if stored.done():  # its sender stopped waiting
                    continue
                if error is None:
                    stored.set_result(None)
                else:
                    stored.set_exception(error)

    async def close(self) -> None:
        """Wait for the messages being stored (each sender hears how its own went)."""
        storing, self._storing = self._storing, None
        if storing is not None and storing.get_loop() is asyncio.get_running_loop():
            await asyncio.gather(storing, return_exceptions=True)
        flushers, self._flushers = self._flushers, None
        if flushers is not None:
            flushers.shutdown()
        self._ready = False


def store_group(
    tmp: str, new: str, messages: Sequence[tuple[str, bytes]], flushers: Executor | None = None
) -> list[OSError | None]:
    """Store messages as files named ``name``: each written into ``tmp``, all flushed (in
    ``flushers`` when given), each linked into ``new`` (never over another message) and
    ``new`` flushed; the files in ``tmp`` removed. Plain ``os`` calls on string paths: a day's
    mail is 100,000 files. Per message: None once it is stored, or the error that kept it out
    (the others are stored all the same)."""
    errors: list[OSError | None] = [None] * len(messages)
    opened: dict[int, int] = {}
    try:
        for at, (name, body) in enumerate(messages):
            try:
                fd = opened[at] = os.open(
                    f"{tmp}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666
                )
                written = os.write(fd, body)
                while written < len(body):
                    written += os.write(fd, memoryview(body)[written:])
            except OSError as exc:
                errors[at] = exc
        whole = [at for at in opened if errors[at] is None]
        flushed = (flushers.map if flushers else map)(_flush, [opened[at] for at in whole])
        for at, error in zip(whole, flushed, strict=True):
            errors[at] = error
    finally:
        for fd in opened.values():
            os.close(fd)
    try:
        for at, (name, _) in enumerate(messages):
            if errors[at] is None:
                try:
                    os.link(f"{tmp}/{name}", f"{new}/{name}")
                except OSError as exc:
                    errors[at] = exc
        if any(error is None for error in errors):
            folder = os.open(new, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)  # the links themselves survive a crash
            finally:
                os.close(folder)
    finally:
        for at, (name, _) in enumerate(messages):
            if at in opened:
                Path(f"{tmp}/{name}").unlink(missing_ok=True)
    return errors


def _flush(fd: int) -> OSError | None:
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    return None
