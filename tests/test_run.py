"""``paperboy run`` as a user starts it: a real process, a real scheduler, SIGTERM to stop."""

from __future__ import annotations

import mailbox
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mail import listing, parse

CONFIG = """
data_dir = "{data}"
profiles_file = "{profiles}"

[[sources]]
id = "inbox"
kind = "listing"
location = "inbox"
interval = "1s"
"""

PROFILES = """
[[subscribers]]
email = "ann@example.org"
timezone = "Europe/Berlin"
schedule = "instant"

[[subscribers.profiles]]
name = "KV cache"
query = '"kv cache"'
"""


def wait_for(check, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_run_polls_the_inbox_mails_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "paperboy.toml"
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(PROFILES)
    config.write_text(CONFIG.format(data=data, profiles=profiles))
    env = {**os.environ, "PAPERBOY_CONFIG": str(config)}
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "run", "--tick", "0.5", "--send-every", "30"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        inbox = data / "inbox"
        assert wait_for(inbox.is_dir), "the inbox was not created"
        part = inbox / "capture.txt.part"
        part.write_text(listing("Jun 1", ("A kv cache for everyone", "x", "May 30 3")))
        part.rename(inbox / "capture.txt")
        maildir = data / "maildir"

        def delivered() -> bool:
            return (maildir / "new").is_dir() and any((maildir / "new").iterdir())

        # The poll queues an instant digest and wakes the sender at once (not in 30 s).
        assert wait_for(delivered, 20), "no message arrived"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output.decode()
    box = mailbox.Maildir(maildir, create=False)
    [key] = box.keys()
    message = parse(box.get_bytes(key))
    assert message["To"] == "ann@example.org"
    assert message["Subject"] == "1 new paper: KV cache (1)"
