"""A real IMAP server for tests: Debian's dovecot on a free loopback port, with a throwaway
configuration, a passwd-file user and its Maildir in a temporary folder, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER = "bounces"
PASSWORD = "s3cret-for-tests"

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
first_valid_uid = {uid}
{users}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@dataclass(frozen=True)
class Imapd:
    host: str
    port: int
    user: str
    password: str
    root: Path


@contextlib.contextmanager
def imapd() -> Iterator[Imapd]:
    """Start dovecot; yields where it listens. As root, mail is stored as ``nobody`` (dovecot
    will not store it as root); otherwise as the current user."""
    dovecot = shutil.which("dovecot") or "/usr/sbin/dovecot"
    root = Path(tempfile.mkdtemp(prefix="paperboy-imapd-"))
    root.chmod(0o755)  # the login and mail processes run as other users
    if os.geteuid() == 0:
        owner = pwd.getpwnam("nobody")
        users = ""
    else:
        owner = pwd.getpwuid(os.geteuid())
        users = (
            f"default_internal_user = {owner.pw_name}\ndefault_login_user = {owner.pw_name}\n"
            f"default_internal_group = {owner.pw_name}"
        )
    for folder in ("mail", "home"):
        (root / folder).mkdir()
        if os.geteuid() == 0:
            os.chown(root / folder, owner.pw_uid, owner.pw_gid)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    port = _free_port()
    config = root / "dovecot.conf"
    config.write_text(
        _CONFIG.format(root=root, uid=owner.pw_uid, gid=owner.pw_gid, port=port, users=users)
    )
    process = subprocess.Popen(
        [dovecot, "-F", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait_for(port, process, root)
        yield Imapd("127.0.0.1", port, USER, PASSWORD, root)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(port: int, process: subprocess.Popen[bytes], root: Path) -> None:
    for _ in range(200):
        if process.poll() is not None:
            log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"dovecot exited ({process.returncode}): {output}{log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("dovecot did not start listening")
