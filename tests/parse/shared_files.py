"""Where the parser tests find ``../shared/fixtures``, and their expected-output files.

``shared_dir()`` skips the calling test with a clear reason when the fixtures are absent, and
fails it instead when ``CI=true``, where they must be present. An expected-output file in
``tests/parse/expected/`` names its input (relative to the fixtures), says how it was checked,
and holds the papers as ``record()`` writes them: long texts and author lists shortened to a
head, a tail and a length, so a reader can check them against the fixture by eye.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from service.model import Organisation, PaperIn, Parsed, Snapshot

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
EXPECTED = Path(__file__).resolve().parent / "expected"
FETCHED_AT = datetime(2030, 1, 1, tzinfo=UTC)
MISSING = "placeholder: ../shared/fixtures is absent"


def shared_dir() -> Path:
    """Return ``../shared/fixtures``; skip the test if it is absent (fail under ``CI=true``)."""
    if SHARED.is_dir():
        return SHARED
    reason = f"third-party fixtures not found at {SHARED} (they live beside the repository)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must have them")
    pytest.skip(reason)


def shared_files(folder: str, pattern: str = "*") -> list[Any]:
    """Parameters for every file in a fixtures folder, collected when the module is imported.

    When the fixtures are absent this is one placeholder, so that the test runs, calls
    ``shared_dir()`` and skips or fails with the reason instead of vanishing.
    """
    directory = SHARED / folder
    if not directory.is_dir():
        return [pytest.param(None, id=MISSING)]
    return [
        pytest.param(path, id=path.name)
        for path in sorted(directory.glob(pattern))
        if path.is_file()
    ]


def snapshot_of(path: Path, **changes: Any) -> Snapshot:
    """A snapshot of a fixture file, as the file fetcher would make it."""
    values: dict[str, Any] = {
        "source_id": "test",
        "origin": str(path),
        "body": path.read_bytes(),
        "fetched_at": FETCHED_AT,
    }
    values.update(changes)
    return Snapshot(**values)


def record(paper: PaperIn) -> dict[str, Any]:
    """A paper as JSON, with the fields left at their defaults omitted."""
    out: dict[str, Any] = {}
    for spec in fields(paper):
        value = getattr(paper, spec.name)
        if value in (None, "", (), {}):
            continue
        out[spec.name] = _json_value(spec.name, value)
    return out


def _json_value(name: str, value: Any) -> Any:
    if isinstance(value, Organisation):
        return {"handle": value.handle, "name": value.name}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str) and len(value) > 240:
        return f"{value[:150]} … {value[-60:]} ({len(value)} chars)"
    if isinstance(value, tuple) and len(value) > 20:
        return [*value[:8], f"… ({len(value)} in all) …", *value[-3:]]
    if isinstance(value, tuple):
        return list(value)
    if name == "links":
        return dict(value)
    return value


def check_expected(name: str, parse: Callable[[Snapshot], Parsed]) -> Parsed:
    """Parse the input named in ``expected/<name>.json`` and compare with what it holds.

    ``count`` is the number of papers; ``papers`` the records of the first ones (all of them
    for small inputs); ``notes`` the parser's notes.
    """
    expected = json.loads((EXPECTED / f"{name}.json").read_text(encoding="utf-8"))
    parsed = parse(snapshot_of(shared_dir() / expected["input"]))
    assert len(parsed.papers) == expected["count"]
    got = [record(paper) for paper in parsed.papers[: len(expected["papers"])]]
    for index, (want, have) in enumerate(zip(expected["papers"], got, strict=True)):
        assert have == want, f"paper {index} differs"
    assert list(parsed.notes) == expected.get("notes", [])
    return parsed


def write_expected(name: str, source: str, checked: str, parsed: Parsed, first: int) -> None:
    """Write ``expected/<name>.json`` once, to be checked by eye and then kept by hand."""
    data = {
        "input": source,
        "checked": checked,
        "count": len(parsed.papers),
        "papers": [record(paper) for paper in parsed.papers[:first]],
        "notes": list(parsed.notes),
    }
    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    (EXPECTED / f"{name}.json").write_text(text, encoding="utf-8")
