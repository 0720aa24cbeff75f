"""The bounce reader on hand-written returns in the shapes Postfix, Exim, Gmail, Microsoft
(Outlook.com, Exchange, JMRP) and Yahoo send: tests/bounces/<name>.eml, expected <name>.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.errors import ParseError
from service.parse import bounces

HERE = Path(__file__).parent / "bounces"
CASES = sorted(p.stem for p in HERE.glob("*.eml"))
UNREADABLE = sorted(p.name for p in (HERE / "unreadable").glob("*.eml"))


def test_there_are_cases() -> None:
    assert len(CASES) >= 10 and len(UNREADABLE) >= 3


@pytest.mark.parametrize("name", CASES)
def test_each_return_reads_as_expected(name: str) -> None:
    found = bounces.read((HERE / f"{name}.eml").read_bytes(), source=name)
    expected = json.loads((HERE / f"{name}.json").read_text())
    got = [{key: getattr(r, key) for key in expected[0]} if expected else {} for r in found]
    assert got == expected


@pytest.mark.parametrize("name", UNREADABLE)
def test_an_unreadable_return_is_a_parse_error_naming_it(name: str) -> None:
    with pytest.raises(ParseError) as caught:
        bounces.read((HERE / "unreadable" / name).read_bytes(), source=name)
    assert name in str(caught.value) and "expected" in str(caught.value)


def test_the_verp_local_part_limits_which_addresses_count() -> None:
    raw = (HERE / "postfix-hard.eml").read_bytes()
    [mine] = bounces.read(raw, source="x", local_part="bounces")
    assert mine.delivery_id == 42
    [other] = bounces.read(
        raw.replace(b"bounces+42@", b"list+42@"), source="x", local_part="bounces"
    )
    assert other.delivery_id is None  # not our bounce address: matched by Message-ID instead
    assert other.message_id == "<digest.7.0a1b2c3d4e5f6071@papers.example.org>"


def test_hard_needs_a_permanent_status_and_a_failure() -> None:
    raw = (HERE / "postfix-hard.eml").read_bytes()
    [delayed] = bounces.read(raw.replace(b"Action: failed", b"Action: delayed"), source="x")
    assert delayed.kind is bounces.Kind.SOFT
    [transient] = bounces.read(raw.replace(b"Status: 5.1.1", b"Status: 4.2.0"), source="x")
    assert transient.kind is bounces.Kind.SOFT and transient.status == "4.2.0"
