"""Who holds an outbox claim: a process, named by its host, pid and start time.

A sender that crashes (kill -9, out of memory, a power cut of a container) leaves the rows it
claimed marked ``sending`` until their lease runs out. The next sender on the same host can do
better: a claim whose process is gone (no such pid, or the pid now belongs to a process that
started at another time, as pid 1 of a restarted container does) is orphaned and is taken at
once. Claims made on other hosts cannot be checked and wait out their lease.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import psutil

_SEPARATOR = "/"  # host names hold no "/", so the first two from the right split the fields


@dataclass(frozen=True, slots=True)
class Claimer:
    """A process that claims deliveries; ``str()`` is what the ``claimed_by`` column holds."""

    host: str
    pid: int
    started: str  # the process's start time (seconds since the epoch, to 1/100 s)

    @classmethod
    def current(cls) -> Claimer:
        """This process."""
        pid = psutil.Process().pid
        return cls(socket.gethostname(), pid, _started(pid) or "?")

    @classmethod
    def parse(cls, text: str | None) -> Claimer | None:
        """The claimer a ``claimed_by`` value names, or None when it names none."""
        if not text:
            return None
        host, _, rest = text.rpartition(_SEPARATOR)
        host, _, pid = host.rpartition(_SEPARATOR)
        if not host or not pid.isdigit():
            return None
        return cls(host, int(pid), rest)

    def is_gone(self) -> bool:
        """Whether this claimer, on this host, has ended: its pid is free, or now another
        process's. A process that cannot be looked at (another user's) counts as alive."""
        started = _started(self.pid)
        return started is None or started not in ("?", self.started)

    def __str__(self) -> str:
        return _SEPARATOR.join((self.host, str(self.pid), self.started))


def _started(pid: int) -> str | None:
    """The start time of process ``pid`` as text, None when there is no such process (a zombie,
    killed but not yet reaped, counts as none), "?" when it cannot be read."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{process.create_time():.2f}"
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return "?"
