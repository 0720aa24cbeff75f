"""Similarity profiles on small hand-made corpora: two topics whose papers share no words with
each other's, so which topic a paper belongs to is known independently of the model."""

from __future__ import annotations

import random

import numpy as np
import pytest
import scipy.sparse as sp

from service.match import similar
from service.match.similar import Features, SimilarityIndex, Text, author_key, train

ASTRO = [
    "galaxy", "redshift", "telescope", "stellar", "supernova", "cosmic", "nebula", "quasar",
    "photometry", "spectra", "exoplanet", "orbit",
]  # fmt: skip
BIO = [
    "protein", "enzyme", "genome", "cell", "membrane", "receptor", "mutation", "folding",
    "ligand", "sequencing", "antibody", "pathway",
]  # fmt: skip
FILLER = ["study", "method", "results", "analysis", "model", "data"]


def corpus(n: int = 60, seed: int = 1) -> tuple[list[Text], dict[int, str]]:
    rng = random.Random(seed)
    texts, topic = [], {}
    for i in range(n):
        name, words = ("astro", ASTRO) if i % 2 == 0 else ("bio", BIO)
        title = " ".join(rng.sample(words, 3))
        abstract = " ".join(rng.sample(words, 6) + rng.sample(FILLER, 3)) + "."
        texts.append(Text(i, title.capitalize(), abstract, (f"Author {name} {i % 7}",)))
        topic[i] = name
    return texts, topic


def rows_for(features: Features, texts: list[Text], ids: list[int]) -> sp.csr_matrix:
    return features.transform([texts[i] for i in ids])


def trained(
    features: Features,
    rows: sp.csr_matrix,
    profile_id: int,
    liked: list[int],
    disliked: list[int],
    background: list[int],
    *,
    rate: float = similar.DEFAULT_RATE,
) -> similar.ProfileModel:
    """``train`` on rows by position, the background's generic scores computed here."""
    sample = rows[background]
    return train(
        profile_id,
        tuple(liked),
        rows[liked],
        rows[disliked],
        sample,
        features.generic(sample),
        rate=rate,
    )


def model_for(
    texts: list[Text],
    features: Features,
    liked: list[int],
    disliked: list[int] = (),  # type: ignore[assignment]
) -> similar.ProfileModel:
    rows = features.transform(texts)
    background = [i for i in range(len(texts)) if i not in liked]
    return trained(features, rows, 7, liked, list(disliked), background)


def raw(features: Features, model: similar.ProfileModel, rows: sp.csr_matrix) -> np.ndarray:
    return model.raw(rows, features.generic(rows))


def liked_rows(features: Features, texts: list[Text]) -> similar.LikedRows:
    """The ``liked_rows`` callback of ``matches``: ``texts`` by position are the papers."""

    def of(models: object) -> dict[int, sp.csr_matrix]:
        return {
            m.profile_id: similar.top_terms(features.transform([texts[i] for i in m.liked]))
            for m in models  # type: ignore[attr-defined]
        }

    return of


def test_liking_one_topic_ranks_that_topic_first() -> None:
    texts, topic = corpus()
    features = Features.fit(texts)
    liked = [0, 2, 4, 6, 8]  # astro
    model = model_for(texts, features, liked)
    scores = raw(features, model, features.transform(texts))
    ranked = [int(i) for i in np.argsort(-scores) if int(i) not in liked]
    assert {topic[i] for i in ranked[:20]} == {"astro"}


def test_one_liked_paper_is_enough() -> None:
    texts, topic = corpus()
    features = Features.fit(texts)
    model = model_for(texts, features, [1])  # one bio paper
    scores = raw(features, model, features.transform(texts))
    ranked = [int(i) for i in np.argsort(-scores) if int(i) != 1]
    assert [topic[i] for i in ranked[:10]] == ["bio"] * 10


def test_a_profile_needs_a_liked_paper() -> None:
    texts, _ = corpus()
    features = Features.fit(texts)
    rows = features.transform(texts)
    with pytest.raises(ValueError, match="at least one liked paper"):
        train(1, (), rows[[]], rows[[]], rows, features.generic(rows))


def test_dislikes_push_papers_down() -> None:
    texts = [
        Text(0, "Quantum error correction codes", "surface codes for qubits and decoders"),
        Text(1, "Quantum error correction decoders", "neural decoders for surface codes"),
        Text(2, "Quantum chemistry on qubits", "molecules simulated on qubits"),
        Text(3, "Surface codes at scale", "decoders for large surface codes"),
        Text(4, "Qubits for chemistry", "molecules and qubits in chemistry"),
        Text(5, "Graph colouring", "colouring planar graphs"),
        Text(6, "Sorting networks", "networks that sort numbers"),
    ]
    features = Features.fit(texts, min_df=1)
    rows = features.transform(texts)
    plain = trained(features, rows, 1, [0], [], [5, 6])
    voted = trained(features, rows, 1, [0], [2], [5, 6])

    def score(model: similar.ProfileModel, i: int) -> float:
        return float(raw(features, model, rows[[i]])[0])

    assert score(voted, 4) < score(plain, 4)  # like the disliked chemistry paper: lower
    assert score(voted, 3) > score(voted, 4)


def test_authors_count_as_overlap() -> None:
    texts = [
        Text(0, "Alpha beta", "gamma delta", ("Jane Q. Doe",)),
        Text(1, "Epsilon zeta", "eta theta", ("J. Doe",)),
        Text(2, "Iota kappa", "lambda mu", ("Max Mustermann",)),
        Text(3, "Nu xi", "omicron pi", ("Erika Mustermann",)),
    ]
    features = Features.fit(texts, min_df=1)
    rows = features.transform(texts)
    model = trained(features, rows, 1, [0], [], [2, 3])
    scores = raw(features, model, rows)
    assert scores[1] > scores[2]
    assert scores[1] > scores[3]
    assert author_key("Jane Q. Doe") == author_key("J. Doe") == "j doe"
    assert author_key("Zoë Ærø-Smith") == "z smith"


def test_the_index_scores_every_profile_in_one_product() -> None:
    texts, topic = corpus(80)
    features = Features.fit(texts[:60])
    rows = features.transform(texts[:60])
    models = []
    for profile_id, liked in ((1, [0, 2, 4]), (2, [1, 3, 5]), (3, [10])):
        background = [i for i in range(60) if i not in liked]
        models.append(trained(features, rows, profile_id, liked, [], background, rate=0.3))
    index = SimilarityIndex(features.width)
    index.put_many(models)
    new = features.transform(texts[60:])
    r, ids, scores = index.score(new, features.generic(new))
    found = {(int(p), 60 + int(i)) for i, p in zip(r, ids, strict=True)}
    assert found, "some new paper matches"
    for profile_id, paper in found:
        assert topic[paper] == ("bio" if profile_id == 2 else "astro")
    assert (scores > 1).all()  # past the cut: above 1 on the similarity scale
    # The same as scoring each profile alone, past its cut, on the same scale.
    for model in models:
        alone = raw(features, model, new)
        expected = {60 + int(i) for i in np.flatnonzero(alone > model.cut)}
        assert {p for q, p in found if q == model.profile_id} == expected
        mine = {(int(q), 60 + int(i)): float(s) for i, q, s in zip(r, ids, scores, strict=True)}
        for paper in expected:
            assert mine[model.profile_id, paper] == pytest.approx(
                float(model.scaled(alone[paper - 60])), rel=1e-4
            )


def test_a_changed_model_replaces_the_old_one_at_once() -> None:
    texts, topic = corpus()
    features = Features.fit(texts)
    rows = features.transform(texts)
    background = list(range(20, 60))
    index = SimilarityIndex(features.width)
    index.put_many([trained(features, rows, 1, [0], [], background)])
    index.put(trained(features, rows, 1, [1], [], background))  # now bio
    r, ids, _ = index.score(rows[:20], features.generic(rows[:20]))
    assert set(ids.tolist()) == {1}
    assert {topic[int(i)] for i in r} == {"bio"}
    index.remove(1)
    assert len(index.score(rows, features.generic(rows))[0]) == 0
    assert len(index) == 0


def test_a_likes_only_profile_matches_a_handful_of_a_day() -> None:
    rng = random.Random(3)
    vocabulary = [f"w{i}" for i in range(3000)]
    texts = [
        Text(i, " ".join(rng.sample(vocabulary, 6)), " ".join(rng.sample(vocabulary, 60)))
        for i in range(3000)
    ]
    features = Features.fit(texts)
    rows = features.transform(texts)
    model = trained(features, rows, 1, [0, 1, 2], [], list(range(3, 2000)))
    day = rows[2000:3000]
    scores = model.raw(day, features.generic(day))
    passed = int((scores > model.cut).sum())
    assert 3 <= passed <= 40
    # The scale: 1 at the cut (the top 1.5% of stored papers), 2 at their top 0.1%; so a
    # threshold of 2 lets about one paper of a thousand through.
    scaled = model.scaled(scores)
    assert int((scaled > 1).sum()) == passed
    assert int((scaled >= 2).sum()) <= 5


def test_matches_say_why_with_the_closest_liked_paper_and_the_terms() -> None:
    texts = [
        Text(0, "Supernova light curves", "we model supernova light curves from photometry"),
        Text(1, "Protein folding kinetics", "enzyme kinetics and protein folding"),
        Text(2, "Bright supernova remnants", "remnants of a supernova and light curves"),
        Text(3, "Galaxy clusters", "weak lensing of galaxy clusters"),
        Text(4, "Receptor binding", "ligand receptor binding energies"),
    ]
    features = Features.fit(texts, min_df=1)
    rows = features.transform(texts)
    model = trained(features, rows, 5, [0, 1], [], [3, 4])
    index = SimilarityIndex(features.width)
    index.put_many([model])
    titles = {t.id: t.title for t in texts}
    found = similar.matches(index, features, [texts[2]], titles, liked_rows(features, texts))
    assert [m.document_id for m in found] == [2]
    reasons = found[0].reasons
    assert reasons[0].term == "like: Supernova light curves"
    assert reasons[0].field == "like"
    terms = {r.term for r in reasons[1:]}
    assert "supernova" in terms
    title = texts[2].title
    for reason in reasons[1:]:
        where = title if reason.field == "title" else texts[2].abstract
        for start, end in reason.positions:
            assert where[start:end].lower() == reason.term


def test_a_query_decides_what_can_match_and_the_likes_rank_it() -> None:
    texts, _ = corpus()
    features = Features.fit(texts)
    rows = features.transform(texts)
    model = trained(features, rows, 1, [0, 2], [], list(range(10, 60)))
    index = SimilarityIndex(features.width)
    index.put_many([model])
    new = [texts[4], texts[6], texts[5]]  # two astro papers, one bio
    likes = liked_rows(features, texts)
    # The query matched one astro paper and the bio one: only those, whatever their score.
    found = similar.matches(index, features, new, {}, likes, only={1: frozenset({6, 5})})
    by_paper = {m.document_id: m.score for m in found}
    assert set(by_paper) == {6, 5}
    assert by_paper[6] > by_paper[5]
    assert similar.matches(index, features, new, {}, likes, only={1: frozenset()}) == []


def test_features_and_models_come_back_from_bytes_as_they_were() -> None:
    texts, _ = corpus()
    features = Features.fit(texts)
    again = Features.from_bytes(features.to_bytes())
    assert again.version == features.version
    assert again.fitted_on == features.fitted_on == len(texts)
    rows, rows_again = features.transform(texts), again.transform(texts)
    assert abs(rows - rows_again).max() == 0
    assert np.array_equal(features.generic(rows), again.generic(rows_again))
    model = model_for(texts, features, [0, 2], [1])
    back = similar.model_from_bytes(7, similar.model_to_bytes(model))
    assert (back.profile_id, back.liked, back.cut, back.top) == (7, (0, 2), model.cut, model.top)
    assert np.array_equal(back.columns, model.columns)
    assert np.array_equal(back.weights, model.weights)
    with pytest.raises(ValueError, match="not whole"):
        similar.model_from_bytes(7, similar.model_to_bytes(model)[:-3])
    # Another fit (other papers) is another version: models of the old one are not reused.
    assert Features.fit(texts[:40]).version != features.version


def test_the_average_stored_paper_counts_against_a_paper() -> None:
    """Two papers with the liked paper's distinctive word: the one made of words every stored
    paper has is the less like it (the 'all others' half of the model)."""
    common = "model data results analysis method study"
    texts = [Text(i, f"Paper {i}", f"{common} filler{i % 5}") for i in range(40)]
    texts += [
        Text(40, "Tokamak plasma", "tokamak plasma confinement"),
        Text(41, "Tokamak", f"tokamak {common}"),
        Text(42, "Tokamak edge plasma", "tokamak plasma edge"),
    ]
    features = Features.fit(texts, min_df=1)
    rows = features.transform(texts)
    model = trained(features, rows, 1, [40], [], list(range(40)))
    scores = raw(features, model, rows)
    assert scores[42] > scores[41]
    assert features.generic(rows)[41] > features.generic(rows)[42]
