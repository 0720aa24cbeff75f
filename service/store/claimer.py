"""Who holds an outbox claim: a process, named by its host, pid namespace, pid and start time.

A sender that crashes (kill -9, out of memory, a power cut) leaves the rows it claimed marked
``sending`` until their lease runs out. The next sender that can see the crashed one's
processes does better: a claim whose process is gone (no such pid, or the pid now belongs to a
process that started at another time) is orphaned and is taken at once.

"Can see" means the same host and the same pid namespace (Linux containers each have their
own). Two containers given the same host name see none of each other's processes: telling
them apart by namespace keeps one from taking the other's live claims, which would send those
messages twice. A claim from another host or namespace, a restarted container's included,
cannot be checked and waits out its lease.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

_SEPARATOR = "/"  # no host name, namespace, pid or start time holds one


@dataclass(frozen=True, slots=True)
class Claimer:
    """A process that claims deliveries; ``str()`` is what the ``claimed_by`` column holds."""

    host: str
    namespace: str  # the pid namespace ("pid:[4026531836]"), "" where there are none
    pid: int
    started: str  # the process's start time (seconds since the epoch, to 1/100 s)

    @classmethod
    def current(cls) -> Claimer:
        """This process."""
        pid = os.getpid()
        return cls(socket.gethostname(), _namespace(), pid, _started(pid) or "?")

    @classmethod
    def parse(cls, text: str | None) -> Claimer | None:
        """The claimer a ``claimed_by`` value names, or None when it names none."""
        parts = (text or "").split(_SEPARATOR)
        if len(parts) != 4 or not parts[0] or not parts[2].isdigit():
            return None
        host, namespace, pid, started = parts
        return cls(host, namespace, int(pid), started)

    def sees(self, other: Claimer) -> bool:
        """Whether this process can tell if ``other`` is alive: same host and pid namespace."""
        return (self.host, self.namespace) == (other.host, other.namespace)

    def is_gone(self) -> bool:
        """Whether this claimer, seen from a process that ``sees`` it, has ended: its pid is
        free, or now another process's. One that cannot be looked at counts as alive."""
        started = _started(self.pid)
        return started is None or started not in ("?", self.started)

    def __str__(self) -> str:
        return _SEPARATOR.join((self.host, self.namespace, str(self.pid), self.started))


def _namespace() -> str:
    try:
        return str(Path("/proc/self/ns/pid").readlink())
    except OSError:  # not Linux: the host is the namespace
        return ""


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
