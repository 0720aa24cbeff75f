"""The composition root: the only place that builds adapters and wires them to the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from service.clock import Clock, SystemClock
from service.config import Settings
from service.deliver.mailbox import ReturnBox
from service.deliver.maildir import MaildirSender
from service.mailroom import Mailroom, Sender
from service.pipeline import Pipeline
from service.pipeline.returns import Handled
from service.store.database import create_engine, upgrade
from service.store.repository import Store


@dataclass
class App(AbstractContextManager["App"]):
    settings: Settings
    store: Store
    pipeline: Pipeline

    def close(self) -> None:
        fetcher = self.pipeline.ingest.fetcher
        if fetcher is not None and hasattr(fetcher, "close"):
            fetcher.close()
        self.store.engine.dispose()

    @property
    def mailroom(self) -> Mailroom:
        return self.pipeline.mailroom

    def bounce_mailboxes(self) -> bool:
        """Whether a bounce mailbox is configured (a Maildir, an IMAP folder or both)."""
        return (
            self.settings.bounce_maildir() is not None
            or self.settings.bounces.imap.host is not None
        )

    def check_bounces(self, maildir: Path | None = None) -> list[Handled]:
        """Read the bounce mailboxes once: ``maildir`` if given, else the configured ones."""
        done = []
        for name, opener in _bounce_boxes(self.settings, maildir):
            box = opener()
            try:
                done.append(self.pipeline.returns.process(box, name))
            finally:
                box.close()
        return done

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _bounce_boxes(
    settings: Settings, maildir: Path | None
) -> list[tuple[str, Callable[[], ReturnBox]]]:
    from service.deliver.mailbox import ImapBox, MaildirBox

    if maildir is not None:
        return [(str(maildir), lambda: MaildirBox(maildir))]
    boxes: list[tuple[str, Callable[[], ReturnBox]]] = []
    configured = settings.bounce_maildir()
    if configured is not None:
        boxes.append((str(configured), lambda: MaildirBox(configured)))
    imap = settings.bounces.imap
    if imap.host is not None:
        boxes.append((f"imap://{imap.host}:{imap.port}/{imap.folder}", lambda: ImapBox(imap)))
    return boxes


def build_sender(settings: Settings) -> Sender:
    """The configured sender: a maildir under the data directory, or an SMTP server."""
    if settings.mail.sender == "smtp":
        from service.deliver.smtp import SmtpPool, SmtpSender

        if settings.mail.smtp.connections > 1:
            return SmtpPool(settings.mail.smtp)
        return SmtpSender(settings.mail.smtp)
    return MaildirSender(settings.maildir())


def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    migrate: bool = True,
    sender: Sender | None = None,
) -> App:
    """Open the database (migrating it to this version's schema) and wire the pipeline."""
    from service.fetch.http import HttpFetcher

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database())
    if migrate:
        upgrade(engine)
    store = Store(engine)
    pipeline = Pipeline(
        settings,
        store,
        clock or SystemClock(),
        HttpFetcher(settings.fetch),
        sender=sender if sender is not None else build_sender(settings),
    )
    pipeline.ingest.declare_sources()
    if settings.profiles_file.is_file():
        pipeline.roster.sync_profiles(
            settings.profiles_file.read_text(), str(settings.profiles_file)
        )
    return App(settings, store, pipeline)
