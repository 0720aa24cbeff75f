"""Settings: the example file ``config/paperboy.toml`` documents every one.

Precedence, highest first: keyword arguments (the CLI), ``PAPERBOY_*`` environment variables
(nested with ``__``, e.g. ``PAPERBOY_FETCH__TIMEOUT=10``), the TOML file, the defaults here.
The file is ``--config PATH`` or ``$PAPERBOY_CONFIG``, else ``./config/paperboy.toml``, else
``$XDG_CONFIG_HOME/paperboy/paperboy.toml``; with none of them the defaults alone apply.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from service import cron
from service.errors import ConfigError
from service.model import SourceKind

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    """Read ``90``, ``"90s"``, ``"15m"``, ``"1h30m"``, ``"7d"`` as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text.replace(".", "", 1).isdigit():
            return timedelta(seconds=float(text))
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
    raise ValueError(f"expected a duration such as 90, '90s', '15m', '1h' or '7d', got {value!r}")


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SourceSettings(BaseModel):
    """One declared source.

    A location is an http(s) URL, a file or a folder. A relative path is inside data_dir, and
    a missing folder there is created on the first poll (the drop-in inbox of a fresh data
    directory); an absolute path must exist when the settings are loaded, since nothing
    paperboy does would make it appear. Options are checked against what the source's kind and
    location use (see ``source_options``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    kind: SourceKind | None = None  # None: recognised from each snapshot's content
    location: str
    interval: timedelta = timedelta(hours=1)
    cron: str | None = None
    jitter: timedelta = timedelta(0)
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)

    _durations = field_validator("interval", "jitter", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("expected a time longer than 0, such as '15m' or '1h'")
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        scheme = _SCHEME.match(value)
        if scheme is not None and scheme[1].lower() not in ("http", "https"):
            raise ValueError(
                f"unknown scheme {scheme[1]!r}: expected an http(s) URL, a file or a folder"
            )
        if scheme is None and Path(value).is_absolute() and not Path(value).exists():
            raise ValueError(
                f"no such file or folder {value!r} (an absolute location must exist; a relative"
                " one is inside data_dir, where a missing folder is created)"
            )
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            cron.validate(value)
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        location = info.data.get("location")
        if location is None:  # the location was refused already
            return value
        known = source_options(info.data.get("kind"), _SCHEME.match(location) is not None)
        for name, option in value.items():
            if name not in known:
                where = "an http(s)" if _SCHEME.match(location) else "a file or folder"
                kind = info.data.get("kind")
                what = f"a {kind.value!r} source" if kind else "a source of any kind"
                raise ValueError(
                    f"unknown option {name!r} for {what} at {where} location"
                    f" (known: {', '.join(sorted(known)) or 'none'})"
                )
            known[name](name, option)
        return value

    @property
    def is_http(self) -> bool:
        return self.location.startswith(("http://", "https://"))


def source_options(kind: SourceKind | None, over_http: bool) -> dict[str, Any]:
    """The options a source of ``kind`` (None: recognised per snapshot) understands, each with
    the check of its value; config/paperboy.toml's [[sources]] comments describe them."""
    known: dict[str, Any] = {}
    if over_http:
        known |= {"host_interval": _duration_option, "params": _table_option}
        if kind in (None, SourceKind.HF_DAILY):
            known["pages"] = _count_option
    if kind in (None, SourceKind.FEED):
        known["new_announce_types"] = _words_option
    return known


def _duration_option(name: str, value: object) -> None:
    if parse_duration(value) <= timedelta(0):
        raise ValueError(f"option {name!r}: expected a time longer than 0, such as '3s'")


def _table_option(name: str, value: object) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value.values()
    ):
        raise ValueError(f"option {name!r}: expected a table of text or numbers, got {value!r}")


def _count_option(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"option {name!r}: expected a whole number of at least 1, got {value!r}")


def _words_option(name: str, value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"option {name!r}: expected a list of words, got {value!r}")


def _address(value: str) -> str:
    """``value`` if it is a mail address (``name <local@domain>`` or ``local@domain``)."""
    _, spec = parseaddr(value)
    local, at, domain = spec.rpartition("@")
    clean = all(c.isprintable() and not c.isspace() for c in spec) and value.isprintable()
    if not (at and local and domain and clean) or "@" in domain or domain.startswith("."):
        raise ValueError(
            f"expected a mail address such as 'paperboy <digests@example.org>', got {value!r}"
        )
    return value


class FetchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = Field(default=30.0, gt=0)
    max_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    user_agent: str | None = None
    backoff_base: timedelta = timedelta(minutes=5)
    backoff_max: timedelta = timedelta(hours=24)
    host_interval: timedelta = timedelta(seconds=1)

    _durations = field_validator("backoff_base", "backoff_max", "host_interval", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )


class SmtpSettings(BaseModel):
    """How the ``smtp`` sender reaches the mail server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    timeout: float = Field(default=30.0, gt=0)
    max_per_second: float = Field(default=10.0, gt=0)
    # Connections used at once (messages in flight), all kept to max_per_second together.
    connections: int = Field(default=1, ge=1, le=100)
    validate_certs: bool = True


class DkimSettings(BaseModel):
    """Optional DKIM signing (RFC 6376) of each message as it leaves; all three set, or none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    selector: str | None = None
    domain: str | None = None
    private_key: Path | None = None

    @model_validator(mode="after")
    def _all_or_none(self) -> DkimSettings:
        given = [v is not None for v in (self.selector, self.domain, self.private_key)]
        if any(given) and not all(given):
            raise ValueError("selector, domain and private_key are set together, or none")
        return self

    @property
    def enabled(self) -> bool:
        return self.private_key is not None


class MailSettings(BaseModel):
    """Digests, alerts and how they leave: the sender, the headers, retries and rate limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sender: Literal["maildir", "smtp"] = "maildir"
    maildir: Path = Path("maildir")
    from_address: str = "paperboy <paperboy@localhost>"
    reply_to: str | None = None
    base_url: str = "http://localhost:8000"
    unsubscribe_mailto: str | None = None
    list_id: str | None = None
    alerts_per_hour: int = Field(default=10, ge=0)
    max_attempts: int = Field(default=8, ge=1)
    retry_base: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(hours=6)
    source_failing_after: timedelta = timedelta(days=1)
    keep_sent: timedelta = timedelta(days=30)
    # Processes that compose and render digests when `paperboy plan` composes thousands at
    # once (0: one per core; 1: composed in the planning process).
    render_processes: int = Field(default=0, ge=0, le=64)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    dkim: DkimSettings = Field(default_factory=DkimSettings)

    _durations = field_validator(
        "retry_base", "retry_max", "source_failing_after", "keep_sent", mode="before"
    )(classmethod(lambda cls, v: parse_duration(v)))

    @field_validator("from_address", "reply_to", "unsubscribe_mailto")
    @classmethod
    def _addresses(cls, value: str | None) -> str | None:
        return None if value is None else _address(value)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http(s) URL, e.g. https://papers.example.org")
        return value.rstrip("/")


class FeedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    items: int = Field(default=50, ge=1, le=1000)


class MatchSettings(BaseModel):
    """How matches are scored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Added to every match's score: upvote_boost × ln(1 + the paper's upvotes).
    upvote_boost: float = Field(default=0.0, ge=0.0, le=100.0, allow_inf_nan=False)
    # A profile of liked papers alone matches this share of the papers like its background.
    similar_rate: float = Field(default=0.015, gt=0.0, le=0.5, allow_inf_nan=False)


class WebSettings(BaseModel):
    """The web side: subscription pages, feeds over HTTP, health and metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Unconfirmed (pending) subscriptions are removed after this long.
    confirm_expiry: timedelta = timedelta(days=7)
    # A confirmation or manage-link mail goes to one address at most once in this time.
    resend_after: timedelta = timedelta(hours=1)
    # Largest request body accepted, in bytes.
    max_body: int = Field(default=64 * 1024, ge=1024)
    # State-changing requests per client IP address per minute (429 with Retry-After above).
    requests_per_minute: int = Field(default=30, ge=1)
    # Subscribe attempts per IP address per hour.
    subscribes_per_hour: int = Field(default=10, ge=1)
    # Leading zero bits the subscribe form's proof-of-work must find (0: none asked).
    pow_bits: int = Field(default=18, ge=0, le=28)
    # Client addresses come from X-Forwarded-For only when the peer is one of these proxies.
    trusted_proxies: list[str] = Field(default_factory=list)

    _durations = field_validator("confirm_expiry", "resend_after", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )


class ImapSettings(BaseModel):
    """The IMAP mailbox that bounces, complaints and unsubscribe mails arrive in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = None  # None: no IMAP mailbox is read
    port: int = Field(default=993, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "tls"
    username: str | None = None
    password: SecretStr | None = None
    folder: str = "INBOX"
    validate_certs: bool = True


class BounceSettings(BaseModel):
    """Where bounces come back to (VERP envelope senders) and how they are acted on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Envelope sender ``<local_part>+<delivery id>@<domain>``; None: the From address.
    local_part: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,40}$")
    domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}$")
    soft_limit: int = Field(default=3, ge=1)
    interval: timedelta = timedelta(minutes=10)
    maildir: Path | None = None
    imap: ImapSettings = Field(default_factory=ImapSettings)

    _durations = field_validator("interval", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )


class RetentionSettings(BaseModel):
    """How long the record of each poll is kept (0: for ever); the cleanup job applies it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Events (what each snapshot changed) of snapshots taken longer ago are deleted.
    events: timedelta = timedelta(days=90)
    # Snapshots (one row per poll) older than this, with no events left, are deleted.
    snapshots: timedelta = timedelta(days=90)

    _durations = field_validator("events", "snapshots", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )

    @field_validator("events", "snapshots")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("expected a duration of 0 (keep for ever) or more")
        return value


class Settings(BaseSettings):
    """Every setting paperboy reads."""

    model_config = SettingsConfigDict(
        env_prefix="PAPERBOY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Path("data")
    database_url: SecretStr | None = None
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    profiles_file: Path = Path("config/profiles.toml")
    templates_dir: Path | None = None
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    feeds: FeedSettings = Field(default_factory=FeedSettings)
    matching: MatchSettings = Field(default_factory=MatchSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    bounces: BounceSettings = Field(default_factory=BounceSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    sources: list[SourceSettings] = Field(
        default_factory=lambda: [
            SourceSettings(id="inbox", location="inbox", interval=timedelta(minutes=1)),
            SourceSettings(
                id="hf-daily",
                kind=SourceKind.HF_DAILY,
                location="https://huggingface.co/api/daily_papers",
                interval=timedelta(hours=1),
                jitter=timedelta(minutes=5),
                options={"params": {"limit": 100}, "pages": 3},
            ),
        ]
    )

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in _LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(_LOG_LEVELS)}, got {value!r}")
        return value.upper()

    @model_validator(mode="after")
    def _unique_sources(self) -> Settings:
        seen: set[str] = set()
        for source in self.sources:
            if source.id in seen:
                raise ValueError(f"source id {source.id!r} is declared twice")
            seen.add(source.id)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _CONFIG_FILE.get("path")
        files: tuple[PydanticBaseSettingsSource, ...] = ()
        if path is not None:
            files = (TomlConfigSettingsSource(settings_cls, toml_file=path),)
        return (init_settings, env_settings, *files)

    def database(self) -> str:
        """The SQLAlchemy URL: the configured one, or SQLite inside the data directory."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'paperboy.db'}"

    def maildir(self) -> Path:
        """The maildir that the ``maildir`` sender writes to (relative: inside data_dir)."""
        path = self.mail.maildir
        return path if path.is_absolute() else self.data_dir / path

    def bounce_maildir(self) -> Path | None:
        """The Maildir bounces arrive in, if one is set (relative: inside data_dir)."""
        path = self.bounces.maildir
        if path is None:
            return None
        return path if path.is_absolute() else self.data_dir / path

    def resolve(self, location: str) -> str:
        """A source location: URLs as they are, relative paths under the data directory."""
        if location.startswith(("http://", "https://")) or Path(location).is_absolute():
            return location
        return str(self.data_dir / location)

    def source(self, source_id: str) -> SourceSettings:
        for source in self.sources:
            if source.id == source_id:
                return source
        known = ", ".join(s.id for s in self.sources) or "none"
        raise ConfigError(f"no source {source_id!r} is declared (known: {known})")


_CONFIG_FILE: dict[str, Path | None] = {"path": None}


def config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The settings file to read, by the precedence in the module docstring."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("no such settings file", where=str(path))
        return path
    env = os.environ.get("PAPERBOY_CONFIG")
    if env:
        return config_file(env)
    local = Path("config/paperboy.toml")
    if local.is_file():
        return local
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    user = xdg / "paperboy" / "paperboy.toml"
    return user if user.is_file() else None


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read settings from the file (see ``config_file``), the environment and ``overrides``."""
    from pydantic import ValidationError

    chosen = config_file(path)
    _CONFIG_FILE["path"] = chosen
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        in_file = str(chosen) if chosen else "defaults"
        problems = "; ".join(
            f"{_origin(err['loc'], in_file)}: {_path(err['loc'])}: {_message(err)}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise ConfigError(problems) from None
    except ValueError as exc:  # TOML syntax errors surface as ValueError subclasses
        raise ConfigError(str(exc), where=str(chosen) if chosen else None) from None
    finally:
        _CONFIG_FILE["path"] = None


def _path(loc: tuple[int | str, ...]) -> str:
    """A setting's place as written in the file: ``sources[0].cron``, ``mail.smtp.port``."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return text.lstrip(".") or "(top)"


def _message(error: Any) -> str:
    """Pydantic's message, without the "Value error, " it puts before our own."""
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return str(error["msg"])


def _origin(loc: tuple[int | str, ...], in_file: str) -> str:
    """Where a setting's bad value came from: the environment variable that holds it (the
    setting's own, or an enclosing one as JSON), else the settings file."""
    names = {name.upper() for name in os.environ}
    for end in range(len(loc), 0, -1):
        variable = "PAPERBOY_" + "__".join(str(part) for part in loc[:end]).upper()
        if variable in names:
            return f"environment variable {variable}"
    return in_file
