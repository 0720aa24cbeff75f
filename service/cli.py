"""The ``paperboy`` command. Each subcommand builds the app and calls one pipeline method."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from service import __version__, subscribers
from service.app import App, build
from service.clock import as_utc
from service.config import load_settings, parse_duration
from service.errors import ConfigError, PaperboyError
from service.identity import mailbox_key
from service.latex import to_text
from service.logs import use_json
from service.match.query import parse_query
from service.model import (
    DeliveryStatus,
    Paper,
    ProfileSpec,
    SourceKind,
    Subscriber,
    Summary,
    Suppression,
)
from service.parse import library
from service.pipeline import BAD_OUTCOMES, reasons_json
from service.pipeline.records import to_json
from service.render.papers import byline, marked
from service.store import backup as backups
from service.store.database import create_engine, current, head, upgrade

Handler = Callable[[argparse.Namespace], int]

NO_THRESHOLD = "none"  # ``--alert-threshold none``: the profile sends no alerts

QUERY_HELP = """The query language (matching ignores case, accents and plurals, and matches
whole words):

  kv cache                  both words, anywhere (AND is implicit)
  "kv cache"                the phrase (also KV-cache, (KV) cache)
  rag OR retrieval          either word
  llm NOT survey, llm -survey
                            llm but not survey
  (kv OR attention) cache   parentheses group
  title:quantiz*            a title word starting with quantiz
  abstract:"speculative decoding"
                            the phrase in the abstract
  author:"Jane Doe"         an author; org:ByteDance-Seed an organisation
  source:hf-daily           papers seen in that source
  upvotes>=10               at least 10 upvotes (also >, <, <=, =)

AND, OR and NOT are operators only in capitals. A query that starts with - goes after --:
paperboy preview -- '-survey llm'."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    _configure_logging(args.verbose, service=handler in _SERVICES)
    if handler is None:
        parser.print_help()
        return 2
    try:
        status = handler(args)
        sys.stdout.flush()  # a reader that went away shows here, not at exit
        return status
    except PaperboyError as exc:
        print(f"paperboy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `paperboy papers | head -1`: the reader has what it wanted. Stop quietly, and keep
        # Python's last flush at exit from failing on the closed pipe again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, what a shell reports for a writer stopped by a closed pipe


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paperboy",
        description="Daily digests and alerts for new research papers.",
    )
    parser.add_argument("--version", action="version", version=f"paperboy {__version__}")
    _global_options(parser, default=None)
    commands = parser.add_subparsers(metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="ingest snapshot files now")
    ingest.add_argument("files", nargs="+", type=Path, metavar="FILE")
    ingest.add_argument("--source", metavar="ID", help="a declared source (default: 'files')")
    ingest.add_argument(
        "--kind",
        choices=[k.value for k in SourceKind],
        help="the files' format (default: the source's, else recognised from the content)",
    )
    ingest.add_argument(
        "--captured-at",
        metavar="WHEN",
        type=_moment,
        help="when the files were captured (ISO date or time); default: mtime or inferred",
    )
    ingest.add_argument("--json", action="store_true", help="print JSON lines for scripts")
    ingest.set_defaults(handler=_ingest)

    poll = commands.add_parser("poll", help="poll sources now")
    poll.add_argument("--source", metavar="ID", help="only this source")
    poll.add_argument("--due", action="store_true", help="only sources whose next check is due")
    poll.add_argument("--json", action="store_true", help="print JSON lines for scripts")
    poll.set_defaults(handler=_poll)

    papers = commands.add_parser("papers", help="list stored papers, newest first")
    papers.add_argument(
        "--since", metavar="WHEN", help="first seen since: a duration (30d, 12h) or a date"
    )
    papers.add_argument(
        "--search",
        metavar="QUERY",
        help="only papers that QUERY matches (the profiles' query language: see profile add -h)",
    )
    papers.add_argument("--source", metavar="ID", help="only papers seen in this source")
    papers.add_argument(
        "--limit", type=_positive, default=50, metavar="N", help="at most N papers (default 50)"
    )
    papers.add_argument("--json", action="store_true", help="print JSON lines for scripts")
    papers.set_defaults(handler=_papers)

    sources = commands.add_parser("sources", help="list sources and their health")
    sources.add_argument("--json", action="store_true", help="print JSON lines for scripts")
    sources.set_defaults(handler=_sources)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(metavar="ACTION", required=True)
    db_upgrade = db_commands.add_parser("upgrade", help="apply migrations up to this version's")
    db_upgrade.set_defaults(handler=_db_upgrade)
    db_current = db_commands.add_parser("current", help="show the database's migration")
    db_current.set_defaults(handler=_db_current)
    _care_commands(db_commands)

    _subscription_commands(commands)

    _mail_commands(commands)

    run = commands.add_parser(
        "run", help="run the service: poll, match, send digests and alerts on schedule"
    )
    run.add_argument(
        "--tick", type=float, default=30.0, help="seconds between looks for due work (default 30)"
    )
    run.add_argument(
        "--send-every",
        type=float,
        default=60.0,
        help="seconds between outbox runs (default 60; new mail also wakes the sender)",
    )
    _listen_options(run)
    run.set_defaults(handler=_run)

    worker = commands.add_parser(
        "worker",
        help="compose, render and send due mail, and nothing else (start as many as you like)",
    )
    worker.add_argument(
        "--send-every",
        type=float,
        default=10.0,
        help="seconds between looks at the outbox (default 10)",
    )
    worker.set_defaults(handler=_worker)

    web = commands.add_parser(
        "web", help="serve only the web: feeds, subscription pages, health and metrics"
    )
    _listen_options(web)
    web.set_defaults(handler=_web)

    _healthcheck_command(commands)
    _global_options_after_commands(parser)
    return parser


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """``--config``, ``--data-dir`` and ``-v``, which every command takes."""
    parser.add_argument(
        "--config", metavar="PATH", default=default, help="settings file (default: see README)"
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", default=default, help="data directory (default ./data)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if default is None else default,
        help="log what happens (-vv: also what the libraries do)",
    )


def _global_options_after_commands(parser: argparse.ArgumentParser) -> None:
    """Let the global options come after the command too (``paperboy papers -v``). A command's
    copy leaves the value alone when not given, so one given before the command holds."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):
                _global_options(command, default=argparse.SUPPRESS)
                _global_options_after_commands(command)


def _listen_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--host", metavar="ADDRESS", help="where the web listens (default: web.host, 127.0.0.1)"
    )
    command.add_argument(
        "--port", type=_port, metavar="PORT", help="the web's port (default: web.port, 8000)"
    )


def _healthcheck_command(commands: Any) -> None:
    check = commands.add_parser(
        "healthcheck",
        help="ask the running web's /healthz: exit 0 when it answers 200, else 1 (for containers)",
    )
    check.add_argument(
        "--url",
        metavar="URL",
        help="what to ask (default: http://127.0.0.1:<web.port>/healthz, from the settings)",
    )
    check.add_argument(
        "--timeout", type=float, default=5.0, metavar="SECONDS", help="wait this long (default 5)"
    )
    check.set_defaults(handler=_healthcheck)


def _mail_commands(commands: Any) -> None:
    digest = commands.add_parser("digest", help="render a subscriber's digest now")
    digest.add_argument("--subscriber", required=True, metavar="EMAIL")
    digest.add_argument(
        "--dry-run", action="store_true", help="render only: record nothing, queue nothing"
    )
    digest.add_argument("--out", type=Path, metavar="DIR", help="also write the message to DIR")
    digest.set_defaults(handler=_digest)

    send = commands.add_parser("send", help="send what the outbox holds that is due, once")
    send.add_argument("--json", action="store_true", help="print JSON for scripts")
    send.set_defaults(handler=_send)

    plan = commands.add_parser("plan", help="close due digest windows now (queue their digests)")
    plan.add_argument("--json", action="store_true", help="print JSON lines for scripts")
    plan.set_defaults(handler=_plan)

    outbox = commands.add_parser("outbox", help="list deliveries by status")
    outbox.add_argument("--status", choices=[s.value for s in DeliveryStatus])
    outbox.add_argument("--json", action="store_true", help="print JSON lines for scripts")
    outbox.set_defaults(handler=_outbox)

    feeds = commands.add_parser("feeds", help="RSS and Atom feeds of the matches")
    actions = feeds.add_subparsers(metavar="ACTION", required=True)
    export = actions.add_parser(
        "export", help="write every subscriber's feeds to DIR/<feed token>/ (atomically)"
    )
    export.add_argument("directory", type=Path, metavar="DIR")
    export.set_defaults(handler=_feeds_export)


def _subscription_commands(commands: Any) -> None:
    subscriber = commands.add_parser("subscriber", help="add, list or remove subscribers")
    actions = subscriber.add_subparsers(metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a subscriber, or change one")
    add.add_argument("email")
    add.add_argument(
        "--timezone", help="IANA name, e.g. Europe/Berlin (default UTC; a change keeps it)"
    )
    when = add.add_mutually_exclusive_group()
    when.add_argument(
        "--daily",
        metavar="HH:MM",
        help="a digest every day at HH:MM (default daily 07:00; a change keeps the schedule)",
    )
    when.add_argument(
        "--weekly",
        nargs=2,
        metavar=("DAY", "HH:MM"),
        help="a digest every week on DAY (mon, tue, ... sun, or the full name) at HH:MM, "
        "e.g. --weekly mon 07:30",
    )
    when.add_argument("--instant", action="store_true", help="a message after each poll")
    add.set_defaults(handler=_subscriber_add)
    listing = actions.add_parser("list", help="list subscribers")
    listing.add_argument("--json", action="store_true", help="print JSON lines for scripts")
    listing.set_defaults(handler=_subscriber_list)
    remove = actions.add_parser("remove", help="remove a subscriber and their profiles")
    remove.add_argument("email")
    remove.add_argument(
        "--erase",
        action="store_true",
        help="also erase what came back for the address (bounces, complaints); a suppression"
        " stays until unsuppress",
    )
    remove.set_defaults(handler=_subscriber_remove)
    export = actions.add_parser(
        "export", help="everything stored about a subscriber, as one JSON document"
    )
    export.add_argument("email")
    export.set_defaults(handler=_subscriber_export)
    lift = actions.add_parser(
        "unsuppress", help="lift the suppression of an address (bounced, complained)"
    )
    lift.add_argument("email")
    lift.set_defaults(handler=_subscriber_unsuppress)
    _bounce_commands(commands)

    profile = commands.add_parser("profile", help="add, list or remove interest profiles")
    actions = profile.add_subparsers(metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        help="add a profile, or change one (options not given keep their values)",
        description="Add an interest profile, or change one (options not given keep their "
        "values).\n\n" + QUERY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument("email")
    add.add_argument("name")
    add.add_argument(
        "query",
        nargs="?",
        help="what to look for (the query language is below); optional with --like/--like-file",
    )
    add.add_argument(
        "--like",
        nargs="+",
        default=[],
        metavar="PAPER",
        help="papers the profile is like: arXiv id, DOI or exact title of a stored paper",
    )
    add.add_argument(
        "--like-file",
        metavar="FILE",
        help="liked papers from a library: BibTeX (.bib), Zotero CSV or RIS",
    )
    add.add_argument("--min-upvotes", type=int, metavar="N", help="default 0")
    add.add_argument("--max-items", type=int, metavar="N", help="default 20")
    add.add_argument(
        "--alert-threshold",
        type=_threshold,
        metavar="SCORE",
        help=f"alert on matches scoring at least SCORE ('{NO_THRESHOLD}', the default: no alerts)",
    )
    add.add_argument(
        "--send-when-empty",
        action=argparse.BooleanOptionalAction,
        help="send a note when nothing matched (default: no)",
    )
    add.set_defaults(handler=_profile_add)
    _feedback_parser(commands)
    listing = actions.add_parser("list", help="list profiles")
    listing.add_argument("email", nargs="?")
    listing.add_argument("--json", action="store_true", help="print JSON lines for scripts")
    listing.set_defaults(handler=_profile_list)
    remove = actions.add_parser("remove", help="remove a profile")
    remove.add_argument("email")
    remove.add_argument("name")
    remove.set_defaults(handler=_profile_remove)

    many = commands.add_parser("profiles", help="export or import every profile as TOML")
    actions = many.add_subparsers(metavar="ACTION", required=True)
    export = actions.add_parser(
        "export", help="write subscribers and profiles to FILE (- for stdout)"
    )
    export.add_argument("file")
    export.set_defaults(handler=_profiles_export)
    load = actions.add_parser(
        "import", help="add or update the subscribers and profiles in FILE (- for stdin)"
    )
    load.add_argument("file")
    load.set_defaults(handler=_profiles_import)

    preview = commands.add_parser(
        "preview",
        help="what a query matches among stored papers",
        description="What a query matches among stored papers, best first, with its reasons.\n\n"
        + QUERY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    preview.add_argument("query", nargs="?", help="a query (the query language is below)")
    preview.add_argument("--profile", metavar="NAME", help="use this profile's query instead")
    preview.add_argument("--subscriber", metavar="EMAIL", help="whose profile, when several")
    preview.add_argument("--since", metavar="WHEN", help="first seen since: 30d, 12h or a date")
    preview.add_argument(
        "--limit", type=_positive, default=20, metavar="N", help="at most N papers (default 20)"
    )
    preview.add_argument("--json", action="store_true", help="print JSON lines for scripts")
    preview.set_defaults(handler=_preview)


# -- commands -----------------------------------------------------------------------------------


def _ingest(args: argparse.Namespace) -> int:
    with _app(args) as app, _outcomes_reported_here(args.verbose):
        summaries = app.pipeline.ingest.ingest_files(
            args.files,
            source_id=args.source,
            kind=SourceKind(args.kind) if args.kind else None,
            captured_at=args.captured_at,
        )
    return _report(summaries, args.json)


def _poll(args: argparse.Namespace) -> int:
    with _app(args) as app, _outcomes_reported_here(args.verbose):
        summaries = app.pipeline.ingest.poll(args.source, force=not args.due)
    if not summaries and not args.json:
        if args.source:
            print(f"nothing new in {args.source}")
        elif args.due:
            print("nothing new in the sources that were due (if any)")
        else:
            print("nothing new in any source")
    return _report(summaries, args.json)


@contextmanager
def _outcomes_reported_here(verbose: bool) -> Iterator[None]:
    """Hold back the pipeline's warnings (each rejected snapshot, each failed source) while a
    command prints every outcome itself, as its ``error:`` lines; ``-v`` shows both."""
    if verbose:
        yield
        return
    logger = logging.getLogger("service.pipeline.ingest")

    def not_a_warning(record: logging.LogRecord) -> bool:
        return record.levelno != logging.WARNING

    logger.addFilter(not_a_warning)
    try:
        yield
    finally:
        logger.removeFilter(not_a_warning)


def _papers(args: argparse.Namespace) -> int:
    since = _since(args.since) if args.since else None
    with _app(args) as app:
        if args.search:
            found = app.pipeline.matching.search(
                args.search, since=since, source_id=args.source, limit=args.limit
            )
        else:
            found = app.store.papers(since=since, source_id=args.source, limit=args.limit)
    if args.json:
        for paper in found:
            print(json.dumps(_paper_json(paper), ensure_ascii=False))
        return 0
    for paper in found:
        print(f"{to_text(paper.title)}\n    {_about(paper)}")
    print(f"({_count(len(found), 'paper')})", file=sys.stderr)
    return 0


def _about(paper: Paper) -> str:
    """What a reader wants under a title: arXiv id, who, when, upvotes (what is known)."""
    day = paper.published.isoformat() if paper.published else ""
    arxiv = f"arXiv:{paper.arxiv_id}" if paper.arxiv_id else ""
    parts = (arxiv, byline(paper), day, _count(paper.upvotes, "upvote"))
    return " · ".join(part for part in parts if part)


def _sources(args: argparse.Namespace) -> int:
    with _app(args) as app:
        rows = app.store.list_sources()
    if args.json:
        for row in rows:
            print(
                json.dumps(
                    {
                        "id": row.id,
                        "kind": row.kind,
                        "location": row.location,
                        "papers": row.papers,
                        "last_captured_at": _iso(row.last_captured_at),
                        **{k: _iso(v) for k, v in asdict(row.state).items() if k != "source_id"},
                    },
                    ensure_ascii=False,
                )
            )
        return 0
    table = [("SOURCE", "KIND", "PAPERS", "LAST SUCCESS", "NEXT CHECK", "ERRORS", "STATUS")]
    for row in rows:
        state = row.state
        status = state.disabled or (f"failing: {state.last_error}" if state.errors else "ok")
        if not state.errors and state.last_error:
            status = f"ok (last: {state.last_error})"
        table.append(
            (
                row.id,
                row.kind or "auto",
                str(row.papers),
                _short(state.last_success_at),
                _short(state.next_check_at),
                str(state.errors),
                status,
            )
        )
    _print_table(table)
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings(args)
    engine = create_engine(settings.database())
    upgrade(engine)
    print(f"database at migration {current(engine)} (this version's newest: {head()})")
    engine.dispose()
    return 0


def _db_current(args: argparse.Namespace) -> int:
    engine = create_engine(_settings(args).database())
    print(current(engine) or "empty (no migration applied)")
    engine.dispose()
    return 0


def _subscriber_add(args: argparse.Namespace) -> int:
    with _app(args) as app:
        known = _stored(app, args.email)
        if args.instant:
            schedule = "instant"
        elif args.weekly:
            schedule = f"weekly {args.weekly[0]} {args.weekly[1]}"
        elif args.daily:
            schedule = f"daily {args.daily}"
        else:
            schedule = str(known.schedule) if known else "daily 07:00"
        timezone = args.timezone or (known.timezone if known else "UTC")
        saved = app.pipeline.roster.save_subscriber(args.email, timezone, schedule)
    print(f"{saved.email}: {saved.schedule} ({saved.timezone})")
    return 0


def _stored(app: App, email: str) -> Subscriber | None:
    """The stored subscriber (None when there is none yet), whose options a change keeps."""
    return app.pipeline.subscriptions.subscriber(subscribers.check_email(email))


def _subscriber_list(args: argparse.Namespace) -> int:
    with _app(args) as app:
        found = app.pipeline.subscriptions.subscribers()
        counts = {s.id: len(app.pipeline.subscriptions.profiles(s.id)) for s in found}
        suppressed = app.pipeline.returns.suppressions()
        keys = {owner.id: app.pipeline.returns.key(owner.email) for owner in found if suppressed}
    for owner in found:
        held = suppressed.get(keys.get(owner.id, ""))
        status = "suppressed" if held else owner.status.value
        if args.json:
            row = {
                "email": owner.email,
                "timezone": owner.timezone,
                "schedule": str(owner.schedule),
                "status": status,
                "subscription": owner.status.value,
                "declared": owner.declared,
                "profiles": counts[owner.id],
                "suppressed": _suppression_json(held) if held else None,
            }
            print(json.dumps(row, ensure_ascii=False))
        else:
            why = f" ({owner.status}; {_why(held)})" if held else ""
            print(
                f"{owner.email}  {status}{why}  {owner.schedule} ({owner.timezone})  "
                f"{_count(counts[owner.id], 'profile')}"
            )
    return 0


def _why(held: Suppression) -> str:
    detail = held.detail if len(held.detail) <= 60 else held.detail[:59] + "…"
    return f"{held.reason}: {detail}, since {_short(held.at)}"


def _suppression_json(held: Suppression) -> dict[str, Any]:
    return {"reason": held.reason, "detail": held.detail, "at": _iso(held.at)}


def _subscriber_unsuppress(args: argparse.Namespace) -> int:
    with _app(args) as app:
        lifted = app.pipeline.returns.unsuppress(args.email)
    print(
        f"lifted the suppression of {args.email}" if lifted else f"{args.email} is not suppressed"
    )
    return 0 if lifted else 1


def _bounce_commands(commands: Any) -> None:
    bounces = commands.add_parser(
        "bounces", help="read the bounce mailbox once: bounces, complaints, unsubscribe mails"
    )
    bounces.add_argument(
        "--maildir", metavar="DIR", help="read this Maildir instead of the configured mailboxes"
    )
    bounces.add_argument("--json", action="store_true", help="print JSON lines for scripts")
    bounces.set_defaults(handler=_bounces)


def _bounces(args: argparse.Namespace) -> int:
    with _app(args) as app:
        if args.maildir is None and not app.bounce_mailboxes():
            raise ConfigError(
                "no bounce mailbox is configured: set bounces.maildir or bounces.imap.host,"
                " or give --maildir"
            )
        done = app.check_bounces(Path(args.maildir) if args.maildir else None)
    for handled in done:
        if args.json:
            print(json.dumps(asdict(handled), ensure_ascii=False))
            continue
        print(
            f"{_count(handled.read, 'message')} read: {handled.hard} hard, {handled.soft} soft,"
            f" {_count(handled.complaints, 'complaint')}, {handled.unsubscribed} unsubscribed,"
            f" {handled.unmatched} unmatched"
        )
        for email in handled.suppressed:
            print(f"suppressed {email}")
        for why in handled.rejected:
            print(f"set aside (in the rejected folder): {why}")
    return 1 if any(h.rejected for h in done) else 0


def _care_commands(db_commands: Any) -> None:
    save = db_commands.add_parser(
        "backup", help="write a consistent copy of the database to FILE (safe while running)"
    )
    save.add_argument("file")
    save.set_defaults(handler=_db_backup)
    load = db_commands.add_parser(
        "restore", help="replace the database by the backup FILE (stop paperboy first)"
    )
    load.add_argument("file")
    load.set_defaults(handler=_db_restore)


def _db_backup(args: argparse.Namespace) -> int:
    settings = _settings(args)
    how = backups.backup(settings.database(), Path(args.file))
    print(f"backed up to {args.file} ({how})")
    return 0


def _db_restore(args: argparse.Namespace) -> int:
    settings = _settings(args)
    how = backups.restore(settings.database(), Path(args.file))
    engine = create_engine(settings.database())
    try:
        upgrade(engine)
        people = backups.row_count(engine, "subscribers")
        print(
            f"restored {args.file} ({how}): {_count(people, 'subscriber')},"
            f" at migration {current(engine)}"
        )
    finally:
        engine.dispose()
    return 0


def _subscriber_export(args: argparse.Namespace) -> int:
    with _app(args) as app:
        document = app.pipeline.records.export(args.email)
    print(to_json(document))
    return 0


def _subscriber_remove(args: argparse.Namespace) -> int:
    with _app(args) as app:
        if args.erase:
            removed = app.pipeline.records.erase(args.email)
        else:
            removed = app.pipeline.roster.remove_subscriber(args.email)
    print(f"removed {args.email}" if removed else f"no subscriber {args.email}")
    return 0 if removed else 1


def _profile_add(args: argparse.Namespace) -> int:
    references = [library.reference(text) for text in args.like]
    if args.like_file is not None:
        origin, text = _read_profiles_file(args.like_file)
        references += library.read_library(text, origin)
    given: dict[str, Any] = {} if args.query is None else {"query": args.query}
    for field in ("min_upvotes", "max_items", "alert_threshold", "send_when_empty"):
        if getattr(args, field) is not None:
            given[field] = getattr(args, field)
    if given.get("alert_threshold") == NO_THRESHOLD:
        given["alert_threshold"] = None
    with _app(args) as app:
        owner = _stored(app, args.email)
        stored = [p.spec for p in app.pipeline.subscriptions.profiles(owner.id)] if owner else []
        known = next((spec for spec in stored if spec.name == args.name), None)
        if known is None and args.query is None and not references:
            raise ConfigError("give a QUERY, --like or --like-file", where=args.name)
        spec = replace(known or ProfileSpec(name=args.name, query=""), **given)
        saved = app.pipeline.roster.save_profile(args.email, spec)
        likes = app.pipeline.tastes.like(args.email, args.name, references, "cli")
    print(f"{args.email}: profile {saved.spec.name!r} saved")
    waiting = [like for like in likes if like.paper_id is None]
    if likes:
        note = f", {len(waiting)} not stored yet (kept: they join when they arrive)"
        print(f"{_count(len(likes) - len(waiting), 'liked paper')} found{note if waiting else ''}")
        for like in waiting:
            print(f"  not stored yet: {like.label}")
    return 0


def _feedback_parser(commands: Any) -> None:
    feedback = commands.add_parser(
        "feedback", help="say whether a paper was what a profile wants (up, down or clear)"
    )
    feedback.add_argument("email")
    feedback.add_argument("paper", help="arXiv id, DOI or exact title of a stored paper")
    feedback.add_argument("vote", choices=["up", "down", "clear"])
    feedback.add_argument("--profile", metavar="NAME", help="which profile (when several)")
    feedback.set_defaults(handler=_feedback)


def _feedback(args: argparse.Namespace) -> int:
    with _app(args) as app:
        profile, _ = app.pipeline.tastes.feedback(args.email, args.paper, args.vote, args.profile)
    done = {"up": "liked", "down": "refused (not shown again)", "clear": "vote cleared"}
    print(f"{args.email}: {args.paper} {done[args.vote]} for {profile.spec.name!r}")
    return 0


def _profile_list(args: argparse.Namespace) -> int:
    with _app(args) as app:
        subs = app.pipeline.subscriptions
        owners = {s.id: s for s in subs.subscribers()}
        key = mailbox_key(subscribers.check_email(args.email)) if args.email else None
        chosen = [s for s in owners.values() if key in (None, mailbox_key(s.email))]
        rows = [(o, p) for o in chosen for p in subs.profiles(o.id)]
    for owner, profile in rows:
        spec = profile.spec
        if args.json:
            print(json.dumps({"email": owner.email, **asdict(spec)}, ensure_ascii=False))
        else:
            print(f"{owner.email}  {spec.name}: {spec.query}")
    return 0


def _profile_remove(args: argparse.Namespace) -> int:
    with _app(args) as app:
        removed = app.pipeline.roster.remove_profile(args.email, args.name)
    print(f"removed {args.name!r}" if removed else f"no profile {args.name!r} for {args.email}")
    return 0 if removed else 1


def _profiles_export(args: argparse.Namespace) -> int:
    with _app(args) as app:
        text = app.pipeline.roster.export_profiles()
    if args.file == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.file)
    try:
        path.write_text(text, encoding="utf-8")
    except IsADirectoryError:
        raise PaperboyError(f"{path}: is a directory; name a file to write") from None
    except FileNotFoundError:
        raise PaperboyError(f"{path}: cannot write it: no such directory") from None
    except OSError as exc:
        raise PaperboyError(f"{path}: cannot write it: {exc.strerror}") from None
    return 0


def _profiles_import(args: argparse.Namespace) -> int:
    origin, text = _read_profiles_file(args.file)
    declared = subscribers.read_profiles(text, origin, check_query=parse_query)
    with _app(args) as app:
        people, kept = app.pipeline.roster.import_profiles(declared)
    print(f"imported {_count(people, 'subscriber')} with {_count(kept, 'profile')}")
    return 0


def _read_profiles_file(name: str) -> tuple[str, str]:
    """(origin, text) of a profiles file to import; ``-`` is standard input."""
    origin = "<stdin>" if name == "-" else name
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such file", where=origin) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a profiles file", where=origin) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror}", where=origin) from None
    try:
        return origin, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})", where=origin
        ) from None


def _preview(args: argparse.Namespace) -> int:
    if (args.query is None) == (args.profile is None):
        print("paperboy: preview takes a QUERY or --profile NAME", file=sys.stderr)
        return 2
    since = _since(args.since) if args.since else None
    with _app(args) as app:
        query = (
            app.pipeline.matching.profile_query(args.profile, args.subscriber)
            if args.profile
            else args.query
        )
        found = app.pipeline.matching.preview(query, since=since, limit=args.limit)
    colour = sys.stdout.isatty()
    for paper, match in found:
        if args.json:
            row = {
                "key": paper.key,
                "title": paper.title,
                "score": round(match.score, 4),
                "reasons": reasons_json(match),
            }
            print(json.dumps(row, ensure_ascii=False))
            continue
        terms = ", ".join(dict.fromkeys(f"{r.term} ({r.field})" for r in match.reasons))
        title_spans = [p for r in match.reasons if r.field == "title" for p in r.positions]
        print(f"{match.score:6.2f}  {_highlight(paper.title, title_spans, colour)}")
        print(f"        {_about(paper)} · matched {terms}")
    if not args.json:
        print(f"({_count(len(found), 'paper')})", file=sys.stderr)
    return 0


def _highlight(text: str, spans: Sequence[tuple[int, int]], colour: bool) -> str:
    """Mark the matched spans: bold yellow on a terminal, [brackets] elsewhere."""
    start_mark, end_mark = ("\x1b[1;33m", "\x1b[0m") if colour else ("[", "]")
    return "".join(
        f"{start_mark}{part.text}{end_mark}" if part.hit else part.text
        for part in marked(text, spans)
    )


def _run(args: argparse.Namespace) -> int:
    from service.runner import run

    with _app(args) as app:
        run(app, tick=args.tick, send_every=args.send_every, listen=_listen(args, app))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from service.runner import work

    with _app(args) as app:
        work(app, send_every=args.send_every)
    return 0


def _web(args: argparse.Namespace) -> int:
    from service.runner import run_web

    with _app(args) as app:
        run_web(app, _listen(args, app))
    return 0


def _listen(args: argparse.Namespace, app: App) -> Any:
    from service.runner import Listen

    web = app.settings.web
    return Listen(args.host or web.host, web.port if args.port is None else args.port)


def _healthcheck(args: argparse.Namespace) -> int:
    import httpx

    if args.url:
        url = args.url
    else:
        web = _settings(args).web
        url = _healthz_url(web.host, web.port)
    try:
        # No proxy from the environment and no redirect followed: the answer is this server's.
        with httpx.Client(timeout=args.timeout, trust_env=False) as client:
            status = client.get(url).status_code
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        print(f"paperboy: healthcheck: {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"paperboy: healthcheck: {url}: answered {status}, expected 200", file=sys.stderr)
        return 1
    return 0


def _healthz_url(host: str, port: int) -> str:
    """Where a process on this machine reaches the web listening on ``host:port``."""
    if host in ("", "0.0.0.0"):  # every IPv4 address: the loopback is one of them
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}/healthz" if ":" in host else f"http://{host}:{port}/healthz"


def _port(text: str) -> int:
    """A TCP port: 0 to 65535 (0: any free port)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return int(text)


def _digest(args: argparse.Namespace) -> int:
    with _app(args) as app:
        owner = app.pipeline.roster.subscriber(args.subscriber)
        composed, rendered = app.mailroom.render_now(owner)
        if rendered is None or composed is None:
            print("nothing to render")
            return 0
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            name = re.sub(
                r"[^A-Za-z0-9.@_-]", "_", f"{owner.email}-{composed.window.end:%Y%m%dT%H%M%SZ}"
            )
            path = args.out / f"{name}.eml"
            path.write_bytes(rendered.message)
            print(f"wrote {path}")
        if args.dry_run:
            if not args.out:
                sys.stdout.write(rendered.message.decode("utf-8", "replace"))
            return 0
        planned = app.mailroom.close_now(owner)
        if planned.delivery_id is None:
            print(
                f"nothing is due for {owner.email}: no new matches since "
                f"{_short(planned.window.start)} UTC; nothing queued"
            )
            return 0
        print(
            f"queued: {_count(planned.papers or 0, 'paper')} for {owner.email} "
            "(paperboy send delivers it)"
        )
    return 0


def _send(args: argparse.Namespace) -> int:
    import asyncio

    with _app(args) as app:

        async def drain() -> Any:
            try:
                return await app.mailroom.send()
            finally:
                assert app.mailroom.sender is not None
                await app.mailroom.sender.close()

        result = asyncio.run(drain())
        if args.json:
            print(json.dumps(asdict(result)))
        else:
            print(
                f"sent {result.sent}, to retry {result.retried}, failed {result.failed}, "
                f"dead {result.dead}"
            )
    return 1 if result.failed or result.dead else 0


def _plan(args: argparse.Namespace) -> int:
    with _app(args) as app:
        planned = app.mailroom.plan()
    for item in planned:
        row = {
            "email": item.email,
            "kind": item.kind.value,
            "window": item.window.key,
            "papers": item.papers,
            "delivery_id": item.delivery_id,
        }
        print(
            json.dumps(row)
            if args.json
            else f"{item.email}: {_count(item.papers or 0, 'paper')} ({item.window.key})"
        )
    return 0


def _outbox(args: argparse.Namespace) -> int:
    with _app(args) as app:
        status = DeliveryStatus(args.status) if args.status else None
        rows = app.mailroom.outbox.deliveries(status)
    if args.json:
        for delivery in rows:
            print(json.dumps({k: _iso(v) for k, v in asdict(delivery).items()}, ensure_ascii=False))
        return 0
    table = [("ID", "STATUS", "KIND", "TO", "CREATED", "TRIES", "PAPERS", "SUBJECT / ERROR")]
    for d in rows:
        detail = d.last_error if d.status is not DeliveryStatus.SENT and d.last_error else d.subject
        table.append(
            (
                str(d.id),
                d.status.value,
                d.kind.value,
                d.recipient,
                _short(d.created_at),
                str(d.attempts),
                str(d.papers),
                _tail(detail, 60),
            )
        )
    if rows:
        _print_table(table)
    else:
        print("the outbox is empty")
    return 0


def _feeds_export(args: argparse.Namespace) -> int:
    with _app(args) as app:
        done = app.mailroom.export_feeds(args.directory)
    removed = f", removed {_count(len(done.removed), 'feed')}" if done.removed else ""
    print(f"wrote {_count(len(done.written), 'feed')} under {args.directory}{removed}")
    return 0


# -- plumbing -----------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Any:
    overrides: dict[str, Any] = {}
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    return load_settings(args.config, **overrides)


def _app(args: argparse.Namespace) -> App:
    settings = _settings(args)
    if settings.log_format == "json":
        use_json()
    if getattr(args, "handler", None) in _SERVICES and not args.verbose:
        logging.getLogger("service").setLevel(settings.log_level)
        # The access log (tokens redacted) is the web's account of its work, as ours is.
        logging.getLogger("uvicorn.access").setLevel(settings.log_level)
    return build(settings)


# Commands that run as a service: their log is their output (see _configure_logging).
_SERVICES: frozenset[Handler] = frozenset({_run, _web, _worker})

# The libraries whose logs tell about their own workings: WARNING unless -vv.
_LIBRARIES = (
    "aiosmtplib",
    "alembic",
    "apscheduler",
    "asyncio",
    "httpcore",
    "httpx",
    "psycopg",
    "sqlalchemy",
    "uvicorn",
)


def _configure_logging(verbosity: int, *, service: bool) -> None:
    """Log to stderr. paperboy's own messages: under a service command (``run``) at the
    ``log_level`` setting (set in ``_app`` once settings are read), under the other commands,
    which print what they did, warnings only; DEBUG with ``-v``. Libraries: WARNING, DEBUG with
    ``-vv``."""
    logging.basicConfig(
        format=("%(asctime)s " if service else "") + "%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger().setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    for name in _LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    logging.getLogger("service").setLevel(logging.DEBUG if verbosity else logging.WARNING)


def _report(summaries: Sequence[Summary], as_json: bool) -> int:
    bad = [s for s in summaries if s.outcome in BAD_OUTCOMES]
    if as_json:
        for summary in summaries:
            print(json.dumps({k: _iso(v) for k, v in asdict(summary).items()}, ensure_ascii=False))
        return 1 if bad else 0
    table = [
        ("SOURCE", "SNAPSHOT", "CAPTURED", "OUTCOME", "PAPERS", "NEW", "LISTED", "UPD", "DROP")
    ]
    for s in summaries:
        table.append(
            (
                s.source_id,
                _tail(s.origin),
                s.captured_at.date().isoformat() if s.captured_at else "-",
                s.outcome.value,
                str(s.papers),
                str(s.new),
                str(s.listed),
                str(s.updated),
                str(s.dropped),
            )
        )
    if summaries:
        _print_table(table)
    for s in bad:
        print(f"error: {s.error}", file=sys.stderr)
    return 1 if bad else 0


def _count(number: int, noun: str) -> str:
    """``1 paper``, ``2 papers``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _paper_json(paper: Paper) -> dict[str, Any]:
    data = asdict(paper)
    data["organisation"] = (
        {"handle": paper.organisation.handle, "name": paper.organisation.name}
        if paper.organisation
        else None
    )
    data["links"] = dict(paper.links)
    return {k: _iso(v) for k, v in data.items()}


def _iso(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def _short(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def _tail(text: str, width: int = 48) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _moment(text: str) -> datetime:
    """An ISO date or date-time; a date means its midnight in UTC, a naive time is UTC."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date or time such as 2025-12-26 or 2025-12-26T08:00Z, got {text!r}"
        ) from None


def _positive(text: str) -> int:
    """A whole number of 1 or more."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return number


def _threshold(text: str) -> float | str:
    """A score, or ``none``; whether the score is one a profile may have is checked on save."""
    if text.strip().lower() == NO_THRESHOLD:
        return NO_THRESHOLD
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a score such as 8.5, or '{NO_THRESHOLD}', got {text!r}"
        ) from None


def _since(text: str) -> datetime:
    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        return _moment(text)
    except argparse.ArgumentTypeError:
        raise SystemExit(
            f"paperboy: --since: expected a duration (30d, 12h) or a date, got {text!r}"
        ) from None
