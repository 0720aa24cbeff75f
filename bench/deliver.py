"""Benchmark: SMTP delivery throughput of SmtpSender against a bare aiosmtplib loop.

Starts an aiosmtpd sink that accepts and discards, in a subprocess so that it does not share
the GIL with the client, builds ``--messages`` multipart/alternative messages of about 30 KB,
and times, best of ``--runs`` and alternating:
- bare: one aiosmtplib connection, ``await smtp.sendmail(...)`` per message;
- SmtpSender (rate cap out of the way) sending the same bytes over its one connection.
Both include connecting and QUIT. The target is SmtpSender at 80% of bare or better.

    .venv/bin/python bench/deliver.py [--messages 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.policy import SMTP

import aiosmtplib

from service.config import SmtpSettings
from service.deliver.smtp import SmtpSender

HOST = "127.0.0.1"
FROM = "paperboy@example.org"
TO = "reader@example.net"
WORDS = "diffusion transformer sparse attention scaling law benchmark reasoning retrieval \
alignment agents quantisation distillation multimodal résumé naïve café over token context \
window preference optimisation latent video speech graph protein"


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS.split(), k=words))


def build_message(n: int, rng: random.Random) -> bytes:
    """One digest of twelve papers as text and HTML, about 30 KB with CRLF line endings."""
    papers = [(text(rng, 10).capitalize(), text(rng, 120)) for _ in range(12)]
    mail = EmailMessage()
    mail["From"] = f"paperboy <{FROM}>"
    mail["To"] = TO
    mail["Subject"] = f"Your papers for today ({n})"
    mail["Message-ID"] = f"<digest-{n}@example.org>"
    mail.set_content("\n\n".join(f"{title}\n{abstract}" for title, abstract in papers))
    mail.add_alternative(
        "<html><body>"
        + "".join(
            f'<h2><a href="https://example.org/papers/{n}-{i}">{title}</a></h2><p>{abstract}</p>'
            for i, (title, abstract) in enumerate(papers)
        )
        + "</body></html>",
        subtype="html",
    )
    return mail.as_bytes(policy=SMTP)


async def bare(port: int, messages: list[bytes]) -> None:
    smtp = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, timeout=30)
    await smtp.connect()
    for message in messages:
        await smtp.sendmail(FROM, [TO], message)
    await smtp.quit()


async def sender(port: int, messages: list[bytes]) -> None:
    settings = SmtpSettings(host=HOST, port=port, security="none", max_per_second=1e9)
    async with SmtpSender(settings) as smtp:
        for message in messages:
            await smtp.send(FROM, [TO], message)


def timed(
    run: Callable[[int, list[bytes]], Awaitable[None]], port: int, messages: list[bytes]
) -> tuple[float, float]:
    """Wall-clock seconds and this process's CPU seconds (the sink's are not counted)."""

    async def go() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        await run(port, messages)
        return time.perf_counter() - wall, time.process_time() - cpu

    return asyncio.run(go())


def serve_sink() -> None:
    """Run an accept-and-discard SMTP server on a free port; print the port, serve forever."""
    from aiosmtpd.handlers import Sink
    from aiosmtpd.smtp import SMTP as SMTPServer

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTPServer(Sink(), hostname="sink.bench"), HOST, 0
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--messages", type=int, default=2000)
    options.add_argument("--runs", type=int, default=3)
    options.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.sink:
        serve_sink()
        return

    rng = random.Random(2026)
    messages = [build_message(n, rng) for n in range(args.messages)]
    kb = sum(map(len, messages)) / len(messages) / 1024
    runs: dict[str, list[tuple[float, float]]] = {"bare": [], "sender": []}
    command = [sys.executable, __file__, "--sink"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as sink:
        try:
            assert sink.stdout is not None
            port = int(sink.stdout.readline())
            for _ in range(args.runs):
                runs["bare"].append(timed(bare, port, messages))
                runs["sender"].append(timed(sender, port, messages))
        finally:
            sink.terminate()

    best = {name: min(values) for name, values in runs.items()}
    count, mb = len(messages), sum(map(len, messages)) / 1e6
    print(f"SMTP to an aiosmtpd sink: {count} messages of {kb:.1f} KB, best of {args.runs}")
    print(f"  {'':18} {'msg/s':>7} {'MB/s':>6} {'wall s':>7} {'client CPU ms/msg':>18}")
    for name, label in (("bare", "bare aiosmtplib"), ("sender", "SmtpSender")):
        wall, cpu = best[name]
        print(
            f"  {label:18} {count / wall:7.0f} {mb / wall:6.1f} {wall:7.2f}"
            f" {cpu / count * 1000:18.3f}"
        )
    ratio = best["bare"][0] / best["sender"][0]
    print(f"  SmtpSender / bare  {ratio:7.3f}  (msg/s; target >= 0.80)")


if __name__ == "__main__":
    main()
