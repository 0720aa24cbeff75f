"""Reading snapshots from the file system: one file, or each new file of a drop-in folder."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from service.errors import FetchError
from service.model import Snapshot

# Files a writer has not finished yet, or that an editor or the OS leaves behind.
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".swp", ".crdownload", "~")


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file of a drop-in folder: its path and a stamp (size and mtime) that changes with it."""

    path: Path
    stamp: str
    mtime: datetime


def entry(path: Path) -> FileEntry:
    stat = path.stat()
    return FileEntry(
        path=path,
        stamp=f"{stat.st_size}:{stat.st_mtime_ns}",
        mtime=datetime.fromtimestamp(stat.st_mtime, UTC),
    )


def new_files(folder: Path, seen: Iterable[tuple[str, str]]) -> list[FileEntry]:
    """Files below ``folder`` not yet taken with their current stamp, oldest first."""
    if not folder.is_dir():
        raise FetchError("no such folder", source=str(folder))
    taken = set(seen)
    found = []
    for path in folder.rglob("*"):
        name = path.name
        if name.startswith(".") or name.endswith(IGNORED_SUFFIXES) or not path.is_file():
            continue
        item = entry(path)
        if (str(path), item.stamp) not in taken:
            found.append(item)
    found.sort(key=lambda item: (item.mtime, str(item.path)))
    return found


def read_file(
    source_id: str,
    path: Path,
    *,
    max_bytes: int,
    fetched_at: datetime,
    captured_at: datetime | None = None,
) -> Snapshot:
    """The file as a snapshot, its mtime as a capture-time hint; refuse files over the limit."""
    origin = str(path)
    try:
        stat = path.stat()
        if stat.st_size > max_bytes:
            raise FetchError(
                f"the file is {_mib(stat.st_size)}, larger than fetch.max_bytes "
                f"({_mib(max_bytes)}); raise the setting to take it",
                source=origin,
            )
        body = path.read_bytes()
    except FileNotFoundError:
        raise FetchError("no such file", source=origin) from None
    except IsADirectoryError:
        raise FetchError("is a folder, not a file", source=origin) from None
    except PermissionError:
        raise FetchError("permission denied", source=origin) from None
    return Snapshot(
        source_id=source_id,
        origin=origin,
        body=body,
        fetched_at=fetched_at,
        captured_at=captured_at,
        mtime=datetime.fromtimestamp(stat.st_mtime, UTC),
    )


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"
