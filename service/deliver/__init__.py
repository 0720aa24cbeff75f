"""Senders: hand rendered messages to a mail server or a maildir."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    """``async with sender:`` closes it on the way out (each sender defines ``close``)."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
