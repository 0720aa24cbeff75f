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


def model_for(
    texts: list[Text],
    features: Features,
    liked: list[int],
    disliked: list[int] = (),  # type: ignore[assignment]
) -> similar.ProfileModel:
    rows = features.transform(texts)
    background = [i for i in range(len(texts)) if i not in liked]
    return train(7, tuple(liked), rows[liked], rows[list(disliked)], rows[background])


def test_liking_one_topic_ranks_that_topic_first() -> None:
    texts, topic = corpus()
    features = Features.fit(texts)
    liked = [0, 2, 4, 6, 8]  # astro
    model = model_for(texts, features, liked)
    scores = features.transform(texts)[:, model.columns] @ model.weights
    ranked = [int(i) for i in np.argsort(-scores) if int(i) not in liked]
    assert {topic[i] for i in ranked[:20]} == {"astro"}


def test_one_liked_paper_is_enough() -> None:
    texts, topic = corpus()
    features = Features.fit(texts)
    model = model_for(texts, features, [1])  # one bio paper
    scores = features.transform(texts)[:, model.columns] @ model.weights
    ranked = [int(i) for i in np.argsort(-scores) if int(i) != 1]
    assert [topic[i] for i in ranked[:10]] == ["bio"] * 10


def test_a_profile_needs_a_liked_paper() -> None:
    texts, _ = corpus()
    features = Features.fit(texts)
    rows = features.transform(texts)
    with pytest.raises(ValueError, match="at least one liked paper"):
        train(1, (), rows[[]], rows[[]], rows)


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
    plain = train(1, (0,), rows[[0]], rows[[]], rows[[5, 6]])
    voted = train(1, (0,), rows[[0]], rows[[2]], rows[[5, 6]])

    def score(model: similar.ProfileModel, i: int) -> float:
        return float((rows[[i]][:, model.columns] @ model.weights)[0])

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
    model = train(1, (0,), rows[[0]], rows[[]], rows[[2, 3]])
    scores = rows[:, model.columns] @ model.weights
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
        background = rows[[i for i in range(60) if i not in liked]]
        models.append(train(profile_id, tuple(liked), rows[liked], rows[[]], background, rate=0.3))
    index = SimilarityIndex(features.width)
    index.put_many(models)
    new = features.transform(texts[60:])
    r, ids, scores = index.score(new)
    found = {(int(p), 60 + int(i)) for i, p in zip(r, ids, strict=True)}
    assert found, "some new paper matches"
    for profile_id, paper in found:
        assert topic[paper] == ("bio" if profile_id == 2 else "astro")
    assert (scores > 0).all()
    # The same as scoring each profile alone, past its cut.
    for model in models:
        alone = new[:, model.columns] @ model.weights
        expected = {60 + int(i) for i in np.flatnonzero(alone > model.cut)}
        assert {p for q, p in found if q == model.profile_id} == expected


def test_a_changed_model_replaces_the_old_one_at_once() -> None:
    texts, topic = corpus()
    features = Features.fit(texts)
    rows = features.transform(texts)
    background = rows[list(range(20, 60))]
    index = SimilarityIndex(features.width)
    index.put_many([train(1, (0,), rows[[0]], rows[[]], background)])
    index.put(train(1, (1,), rows[[1]], rows[[]], background))  # now bio
    r, ids, _ = index.score(rows[:20])
    assert set(ids.tolist()) == {1}
    assert {topic[int(i)] for i in r} == {"bio"}
    index.remove(1)
    assert len(index.score(rows)[0]) == 0
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
    model = train(1, (0, 1, 2), rows[[0, 1, 2]], rows[[]], rows[3:2000])
    day = rows[2000:3000]
    passed = int(((day[:, model.columns] @ model.weights) > model.cut).sum())
    assert 3 <= passed <= 40


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
    model = train(5, (0, 1), rows[[0, 1]], rows[[]], rows[[3, 4]])
    index = SimilarityIndex(features.width)
    index.put_many([model])
    titles = {t.id: t.title for t in texts}
    found = similar.matches(index, features, [texts[2]], titles)
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
    model = train(1, (0, 2), rows[[0, 2]], rows[[]], rows[10:])
    index = SimilarityIndex(features.width)
    index.put_many([model])
    new = [texts[4], texts[6], texts[5]]  # two astro papers, one bio
    # The query matched one astro paper and the bio one: only those, whatever their score.
    found = similar.matches(index, features, new, {}, only={1: frozenset({6, 5})})
    by_paper = {m.document_id: m.score for m in found}
    assert set(by_paper) == {6, 5}
    assert by_paper[6] > by_paper[5]
    assert similar.matches(index, features, new, {}, only={1: frozenset()}) == []
