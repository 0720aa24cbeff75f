"""The README's "Try it", command by command, on a fresh data directory: it ends in a digest
that holds papers."""

from __future__ import annotations

import re
import shlex
import shutil
from email import message_from_bytes
from pathlib import Path

import pytest
from conftest import ROOT

from service.cli import main


def try_it_commands() -> list[list[str]]:
    """Each shell command of the README's "Try it" section, in order, split into words."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        for line in block.splitlines():
            for command in line.split("&&"):
                words = shlex.split(command, comments=True)
                if words:
                    commands.append(words)
    return commands


def test_the_readme_walkthrough_ends_in_a_digest_with_papers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    seeds: list[Path],
) -> None:
    # The README runs from a checkout with ../shared beside it.
    work = tmp_path / "paperboy"
    work.mkdir()
    (tmp_path / "shared").symlink_to(seeds[0].parent.parent, target_is_directory=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv("PAPERBOY_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))

    commands = try_it_commands()
    ran = []
    for words in commands:
        program, args = words[0], [a for w in words[1:] for a in _expand(w)]
        if program == "mkdir":
            Path(args[-1]).mkdir(parents=True)
        elif program == "cp":
            for source in args[:-1]:
                shutil.copy(source, args[-1])
        elif program == "ls":
            assert list(Path(args[0]).iterdir()), f"{args[0]} is empty"
        else:
            assert program == ".venv/bin/paperboy", words
            status = main(args)
            out = capsys.readouterr()
            assert status == 0, (words, out.out, out.err)
            ran.append((args[0], out.out))
    # Every documented command ran: the ones that show the point of the walkthrough included.
    assert [command for command, _ in ran].count("digest") == 2
    queued = next(out for command, out in ran if command == "digest" and "queued" in out)
    assert re.match(r"queued: [1-9]\d* papers? for you@example.org", queued)
    assert any(command == "send" and out.startswith("sent 1,") for command, out in ran)

    (dry_run,) = Path("out").glob("*.eml")
    (sent,) = Path("data/maildir/new").iterdir()
    for eml in (dry_run, sent):
        message = message_from_bytes(eml.read_bytes())
        assert re.match(r"\d+ new papers?: KV cache \(\d+\)", str(message["Subject"]))
    feeds = {p.name for p in Path("public").glob("*/*")}
    assert feeds == {"all.rss", "all.atom", "kv-cache.rss", "kv-cache.atom"}
    assert b"<item>" in next(Path("public").glob("*/kv-cache.rss")).read_bytes()


def _expand(word: str) -> list[str]:
    """A shell word with its glob expanded, as the shell would (sorted; kept when no match)."""
    if "*" not in word:
        return [word]
    folder, _, pattern = word.rpartition("/")
    found = sorted(str(p) for p in Path(folder or ".").glob(pattern))
    return found or [word]
