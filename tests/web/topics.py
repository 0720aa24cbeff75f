"""Papers of two topics that share no word, for the likes and feedback tests: liking papers
of one topic must bring that topic first."""

from __future__ import annotations

import random

SKY = ["galaxy", "redshift", "telescope", "stellar", "supernova", "cosmic", "nebula", "quasar"]
BIO = ["protein", "enzyme", "genome", "membrane", "receptor", "mutation", "folding", "ligand"]


def papers(start: int, count: int, seed: int) -> list[tuple[str, str, str]]:
    """(arXiv id, title, abstract): even numbers about the sky, odd ones about proteins."""
    rng = random.Random(seed)
    made = []
    for n in range(start, start + count):
        words = SKY if n % 2 == 0 else BIO
        title = " ".join(rng.sample(words, 4)).capitalize() + f" {n}"
        made.append((f"2603.{n:05d}", title, " ".join(rng.sample(words, 7)) + " results."))
    return made
