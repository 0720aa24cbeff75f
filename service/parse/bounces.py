"""What comes back to the bounce address: delivery status notifications (RFC 3464), feedback-loop
complaints (ARF, RFC 5965) and mails to the List-Unsubscribe mailto, read into ``Returned``
values.

``read(raw, source=...)`` returns one ``Returned`` per recipient the message speaks of (none for
a DSN that only reports success, "delivered" or "relayed"), or raises ``ParseError`` for a
message that is none of these (an auto-reply, a bounce in no format known): such a message is
kept aside for a person, never guessed at.

Which delivery a report is about comes from the VERP address it was sent back to (the bounce's
To, Delivered-To, X-Original-To or Envelope-To, Postfix's X-Postfix-Sender, ARF's
Original-Mail-From, the returned headers' Return-Path), else from the returned message's
Message-ID; the failed address from Final-Recipient (or Original-Rcpt-To, or the returned
message's To).
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from enum import StrEnum

from service import identity
from service.errors import ParseError

# An unsubscribe token (service.tokens): "<subscriber id>.<24 base64url characters>".
_UNSUBSCRIBE = re.compile(r"\bunsubscribe\s+(\d{1,18}\.[A-Za-z0-9_-]{24})(?![A-Za-z0-9_-])", re.I)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_VERP_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")


class Kind(StrEnum):
    HARD = "hard"  # permanent failure (5.x.x): the address is suppressed at once
    SOFT = "soft"  # transient failure or delay (4.x.x): suppressed after several in a row
    COMPLAINT = "complaint"  # the recipient reported the mail as abuse (ARF)
    UNSUBSCRIBE = "unsubscribe"  # a mail to the List-Unsubscribe mailto


@dataclass(frozen=True, slots=True)
class Returned:
    """One thing a returned message says about one recipient."""

    kind: Kind
    recipient: str | None  # the failed address, the complainer, the unsubscriber
    delivery_id: int | None = None  # from the VERP address
    message_id: str | None = None  # the returned message's Message-ID
    status: str | None = None  # the RFC 3463 status code, e.g. "5.1.1"
    detail: str = ""  # the diagnostic, the feedback type, the subject
    token: str | None = None  # the unsubscribe token a mailto unsubscribe carries
    envelope_id: str | None = None  # Original-Envelope-Id, when the MTA kept one


def read(raw: bytes, *, source: str, local_part: str | None = None) -> list[Returned]:
    """What ``raw`` (one message, as the MTA stored it) says; ``local_part`` limits which
    VERP addresses count (None: any ``<local>+<digits>@``)."""
    message = email.message_from_bytes(raw, policy=compat32)
    if not message.keys():
        raise ParseError(source=source, expected="a mail message with headers", found=_head(raw))
    verp = _verp(message, local_part)
    if message.get_content_type() == "multipart/report":
        report_type = str(message.get_param("report-type") or "").lower()
        if report_type == "delivery-status":
            return _dsn(message, verp, source, local_part)
        if report_type == "feedback-report":
            return [_arf(message, verp, source, local_part)]
        raise ParseError(
            source=source,
            expected="a report-type of delivery-status or feedback-report",
            found=str(report_type),
        )
    unsubscribe = _unsubscribe(message)
    if unsubscribe is not None:
        return [unsubscribe]
    failed = message.get("X-Failed-Recipients")  # Exim's plain-text bounce
    if failed:
        return [
            Returned(Kind.HARD, address, verp, _returned_id(message), detail="X-Failed-Recipients")
            for _, address in getaddresses([failed])
            if address
        ]
    subject = message.get("Subject", "")
    raise ParseError(
        source=source,
        expected="a delivery status notification, a feedback report or an unsubscribe mail"
        " carrying its token",
        found=f"{message.get_content_type()} {subject!r}",
    )


def _dsn(message: Message, verp: int | None, source: str, local_part: str | None) -> list[Returned]:
    status_part = _part(message, ("message/delivery-status", "message/global-delivery-status"))
    if status_part is None:
        raise ParseError(source=source, expected="a message/delivery-status part")
    payload = status_part.get_payload()
    blocks: list[Message] = (
        [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
    )
    if not blocks:
        raise ParseError(source=source, expected="per-message and per-recipient DSN fields")
    per_message, recipients = blocks[0], blocks[1:]
    if "Final-Recipient" in per_message or "Action" in per_message:
        recipients = blocks  # a DSN with no per-message block (seen from some MTAs)
        per_message = Message()
    if verp is None:
        verp = identity.verp_delivery(_value(per_message.get("X-Postfix-Sender")), local_part)
    envelope_id = _clean(per_message.get("Original-Envelope-Id")) or None
    returned_id = _returned_id(message)
    out = []
    for block in recipients:
        action = _clean(block.get("Action")).lower()
        if action not in ("failed", "delayed"):
            continue  # delivered, relayed, expanded: nothing went wrong
        recipient = _value(block.get("Final-Recipient")) or _value(block.get("Original-Recipient"))
        if not recipient:
            raise ParseError(source=source, expected="a Final-Recipient for each recipient")
        code = _STATUS.search(_clean(block.get("Status")))
        diagnostic = _value(block.get("Diagnostic-Code"))
        if code is None:  # a Status is required; some MTAs put it only in the diagnostic
            code = _STATUS.search(diagnostic)
        if code is None:
            raise ParseError(
                source=source,
                expected="a Status such as 5.1.1 for " + recipient,
                found=_clean(block.get("Status")),
            )
        hard = code.group(1) == "5" and action == "failed"
        out.append(
            Returned(
                Kind.HARD if hard else Kind.SOFT,
                recipient,
                verp,
                returned_id,
                code.group(0),
                diagnostic or action,
                envelope_id=envelope_id,
            )
        )
    return out


def _arf(message: Message, verp: int | None, source: str, local_part: str | None) -> Returned:
    report = _part(message, ("message/feedback-report",))
    if report is None:
        raise ParseError(source=source, expected="a message/feedback-report part")
    fields = report.get_payload()
    if isinstance(fields, list) and fields:
        fields = fields[0]  # parsed as an embedded message: its headers are the fields
    if not isinstance(fields, Message):
        fields = email.message_from_string(str(fields), policy=compat32)
    feedback = _clean(fields.get("Feedback-Type")).lower()
    if not feedback:
        raise ParseError(source=source, expected="a Feedback-Type field in the feedback report")
    if verp is None:
        verp = identity.verp_delivery(_value(fields.get("Original-Mail-From")), local_part)
    original = _original(message)
    recipient = _value(fields.get("Original-Rcpt-To")) or None
    if recipient is None and original is not None:
        recipient = parseaddr(original.get("To", ""))[1] or None
    if verp is None and original is not None:
        verp = identity.verp_delivery(parseaddr(original.get("Return-Path", ""))[1], local_part)
    return Returned(
        Kind.COMPLAINT,
        recipient,
        verp,
        _returned_id(message),
        detail=feedback,
    )


def _unsubscribe(message: Message) -> Returned | None:
    """A mail to the List-Unsubscribe mailto: the token in the subject, or else in a plain-text
    body (a client that puts the link's subject in the body)."""
    subject = _decoded_subject(message)
    found = _UNSUBSCRIBE.search(subject)
    if found is None:
        for part in message.walk():
            if part.get_content_type() != "text/plain":
                continue
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                found = _UNSUBSCRIBE.search(payload.decode("utf-8", "replace"))
                if found:
                    break
    if found is None:
        return None
    sender = parseaddr(message.get("From", ""))[1] or None
    return Returned(Kind.UNSUBSCRIBE, sender, detail=subject[:200], token=found.group(1))


def _verp(message: Message, local_part: str | None) -> int | None:
    for name in _VERP_HEADERS:
        for value in message.get_all(name, []):
            for _, address in getaddresses([str(value)]):
                found = identity.verp_delivery(address, local_part)
                if found is not None:
                    return found
    return None


def _original(message: Message) -> Message | None:
    """The returned message (or its headers), when the report carries it."""
    part = _part(message, ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"))
    if part is None:
        return None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    text = part.get_payload(decode=True)
    if isinstance(text, bytes):
        return email.message_from_bytes(text, policy=compat32)
    return None


def _returned_id(message: Message) -> str | None:
    original = _original(message)
    if original is None:
        return None
    found = _clean(original.get("Message-ID"))
    return found or None


def _part(message: Message, types: tuple[str, ...]) -> Message | None:
    for part in message.walk():
        if part.get_content_type() in types:
            return part
    return None


def _value(field: object) -> str:
    """A typed DSN field's value: ``rfc822; ann@example.org`` → ``ann@example.org``."""
    text = _clean(field)
    _, semicolon, rest = text.partition(";")
    return (rest if semicolon else text).strip().strip("<>")


def _clean(field: object) -> str:
    return " ".join(str(field).split()) if field is not None else ""


def _decoded_subject(message: Message) -> str:
    from email.header import decode_header, make_header

    raw = message.get("Subject", "")
    try:
        return str(make_header(decode_header(str(raw))))
    except (UnicodeDecodeError, LookupError, ValueError):
        return str(raw)


def _head(raw: bytes) -> str:
    return raw[:60].decode("utf-8", "replace")
