"""Similarity profiles ("more like these"): tf-idf over title and abstract beside author and
organisation overlap, a linear model per profile (its liked papers' centroid, less its refused
ones', less the average stored paper), and every profile scored at once as one sparse product.

Why this model: arxiv-sanity's per-tag linear SVM (balanced classes, C = 0.01) is regularised
so hard that nearly every training paper sits inside the margin, and then its weights are
``mean(liked) - mean(all others)`` (the two rank alike on bench/similar_eval.py). Here each
half has norm 1 and the second weighs ``GENERIC_WEIGHT``. In closed form a profile needs no
solver (a click retrains it in milliseconds), learns against every stored paper rather than a
sample, and the "all others" half is one vector shared by every profile: a paper's likeness
to the average stored paper (its ``generic`` score) is computed once per paper, not per
profile, and the profile matrix stays sparse. bench/similar_eval.py measures the choices.

Pure: papers, liked ids and samples come in as values; nothing here reads a store or a file.
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer

from service.match.results import Match, Reason, new_match, new_reason
from service.model import Paper

__all__ = [
    "Features",
    "ProfileModel",
    "SimilarityIndex",
    "Text",
    "explain",
    "model_from_bytes",
    "model_to_bytes",
    "text_from_paper",
    "train",
]

# Author and organisation columns: hashed (no vocabulary to refit), after the tf-idf columns.
AUTHOR_COLUMNS = 2**18
# How much a shared author or organisation counts beside the text (the text row has norm 1).
AUTHOR_WEIGHT = 0.35
# How much a paper's likeness to the average stored paper counts against it, beside its
# likeness to the liked papers (both directions of norm 1). 0 is the bare centroid; on the
# fixtures' evaluation (bench/similar_eval.py) 0.5 ranks best of 0.3-1.25.
GENERIC_WEIGHT = 0.5
# How much the refused papers' centroid counts against the liked papers' (norm 1 each).
DISLIKE_WEIGHT = 0.5
# Weights kept per profile: the largest in size. Scoring cost and memory grow with it: 300
# scores 1,000 papers against 100,000 profiles in ~9 s and 1.1 GB (1,000: 35 s, 1.9 GB); the
# evaluation ranks as well with 300 as with all of them.
KEPT_WEIGHTS = 300
# Terms kept per liked paper to find the closest one for a reason.
KEPT_LIKE_TERMS = 40
# Share of the background a likes-only profile matches: ~15 of a 1,000-paper day.
DEFAULT_RATE = 0.015
# The similarity scale: a score of 1 is the profile's cut (what the top ``rate`` of stored
# papers reach), 2 what the top TOP_RATE of them reach. An alert threshold of 2 on a likes
# profile alerts about one paper in 1,000.
TOP_RATE = 0.001

_TOKEN = r"(?u)\b\w\w+\b"


@dataclass(frozen=True, slots=True)
class Text:
    """What the similarity model reads of a paper."""

    id: int
    title: str
    abstract: str = ""
    authors: tuple[str, ...] = ()
    organisation: str | None = None


def text_from_paper(paper: Paper) -> Text:
    org = paper.organisation.handle if paper.organisation else None
    return Text(paper.id, paper.title, paper.abstract, paper.authors, org)


def author_key(name: str) -> str:
    """An author as compared across papers: first initial and surname, without accents."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    parts = re.findall(r"[a-z]+", plain)
    if not parts:
        return ""
    return parts[-1] if len(parts) == 1 else f"{parts[0][0]} {parts[-1]}"


def _people(text: Text) -> list[str]:
    keys = [f"a:{k}" for k in map(author_key, text.authors) if k]
    if text.organisation:
        keys.append(f"o:{text.organisation.lower()}")
    return keys


def _words(text: Text) -> str:
    return f"{text.title}\n{text.abstract}"


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def _unit(vector: NDArray[np.float64]) -> NDArray[np.float64]:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _vectoriser(
    *,
    min_df: int = 1,
    max_df: float = 1.0,
    max_features: int | None = None,
    vocabulary: Mapping[str, int] | None = None,
) -> TfidfVectorizer:
    return TfidfVectorizer(
        vocabulary=vocabulary,
        ngram_range=(1, 2),
        sublinear_tf=True,
        stop_words="english",
        token_pattern=_TOKEN,
        min_df=min_df,
        max_df=max_df,
        max_features=max_features,
        dtype=np.float32,
    )


class Features:
    """Rows for papers: tf-idf of 1–2-grams over title and abstract (sublinear tf, norm 1),
    fitted on the stored papers, then hashed author and organisation columns; and the
    direction of the average stored paper, against which every profile is trained."""

    def __init__(
        self, vectoriser: TfidfVectorizer, mean: NDArray[np.float32], fitted_on: int
    ) -> None:
        self._tfidf = vectoriser
        self._people = HashingVectorizer(
            analyzer=_identity, n_features=AUTHOR_COLUMNS, alternate_sign=False, norm="l2"
        )
        self._names: NDArray[np.str_] = vectoriser.get_feature_names_out()
        self.text_width = len(self._names)
        self.width = self.text_width + AUTHOR_COLUMNS
        if mean.shape != (self.width,):
            raise ValueError(f"the mean has {mean.shape[0]} columns, the features {self.width}")
        self.mean = mean
        self.fitted_on = fitted_on
        digest = hashlib.sha256(np.asarray(vectoriser.idf_, dtype=np.float32).tobytes())
        digest.update("\n".join(self._names.tolist()).encode())
        digest.update(mean.tobytes())
        self.version = digest.hexdigest()[:24]

    @classmethod
    def fit(
        cls, texts: Sequence[Text], *, min_df: int = 2, max_features: int | None = 200_000
    ) -> Features:
        """Fit the vocabulary and idf on ``texts`` (the stored papers), and their mean."""
        if not texts:
            raise ValueError("no papers to fit the similarity features on")
        vectoriser = _vectoriser(
            min_df=min(min_df, len(texts)),
            max_df=0.5 if len(texts) >= 50 else 1.0,
            max_features=max_features,
        )
        words = vectoriser.fit_transform([_words(t) for t in texts])
        people = HashingVectorizer(
            analyzer=_identity, n_features=AUTHOR_COLUMNS, alternate_sign=False, norm="l2"
        ).transform([_people(t) for t in texts])
        mean = np.concatenate(
            [
                np.asarray(words.mean(axis=0), dtype=np.float64).ravel(),
                np.asarray(people.mean(axis=0), dtype=np.float64).ravel() * AUTHOR_WEIGHT,
            ]
        )
        return cls(vectoriser, _unit(mean).astype(np.float32), len(texts))

    def transform(self, texts: Sequence[Text]) -> sp.csr_matrix:
        """One row per text, ``width`` columns."""
        words = self._tfidf.transform([_words(t) for t in texts])
        people = self._people.transform([_people(t) for t in texts]) * AUTHOR_WEIGHT
        return sp.hstack([words, people.astype(np.float32)], format="csr", dtype=np.float32)

    def generic(self, rows: sp.csr_matrix) -> NDArray[np.float32]:
        """Each row's likeness to the average stored paper (what every profile discounts)."""
        return np.asarray(rows @ self.mean, dtype=np.float32).ravel()

    def term(self, column: int) -> str | None:
        """The 1- or 2-gram of a column; ``None`` for author and organisation columns."""
        return str(self._names[column]) if column < self.text_width else None

    def to_bytes(self) -> bytes:
        """The fitted features as bytes (numpy's npz, no pickle), for ``from_bytes``."""
        out = io.BytesIO()
        nonzero = np.flatnonzero(self.mean).astype(np.int32)
        names = "\n".join(self._names.tolist()).encode()  # a term never holds a line break
        np.savez_compressed(
            out,
            names=np.frombuffer(names, dtype=np.uint8),
            idf=np.asarray(self._tfidf.idf_, dtype=np.float32),
            mean_at=nonzero,
            mean=self.mean[nonzero],
            fitted_on=np.array([self.fitted_on], dtype=np.int64),
        )
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Features:
        """The features ``to_bytes`` wrote."""
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            names = saved["names"].tobytes().decode().split("\n")
            vectoriser = _vectoriser(vocabulary={name: n for n, name in enumerate(names)})
            vectoriser.idf_ = saved["idf"].astype(np.float64)
            mean = np.zeros(len(names) + AUTHOR_COLUMNS, dtype=np.float32)
            mean[saved["mean_at"]] = saved["mean"]
            return cls(vectoriser, mean, int(saved["fitted_on"][0]))


@dataclass(frozen=True, slots=True, eq=False)
class ProfileModel:
    """A profile's linear model: sparse ``weights`` over feature ``columns``; a paper's score
    is ``row · weights - GENERIC_WEIGHT × generic``. ``cut`` is what it must pass to match on
    similarity alone (the top ``rate`` of stored papers), ``top`` what the top ``TOP_RATE``
    of them reach: the two ends of the similarity scale (see ``scaled``)."""

    profile_id: int
    columns: NDArray[np.int32]
    weights: NDArray[np.float32]
    cut: float
    top: float
    liked: tuple[int, ...]

    def raw(self, rows: sp.csr_matrix, generic: NDArray[np.float32]) -> NDArray[np.float32]:
        """The model's scores for ``rows`` (whose generic scores are ``generic``)."""
        dense = np.zeros(rows.shape[1], dtype=np.float32)
        dense[self.columns] = self.weights
        dot = np.asarray(rows @ dense, dtype=np.float32).ravel()
        return dot - np.float32(GENERIC_WEIGHT) * generic

    def scaled(self, raw: NDArray[np.float32] | float) -> NDArray[np.float32]:
        """Raw scores on the similarity scale: 1 at the cut, 2 at the top."""
        return np.asarray(1.0 + (np.asarray(raw) - self.cut) / (self.top - self.cut), np.float32)


def train(
    profile_id: int,
    liked: tuple[int, ...],
    liked_rows: sp.csr_matrix,
    disliked_rows: sp.csr_matrix,
    background: sp.csr_matrix,
    background_generic: NDArray[np.float32],
    *,
    rate: float = DEFAULT_RATE,
    keep: int | None = None,
) -> ProfileModel:
    """A profile's model from its ``liked`` papers (one row each, in order) and its refused
    ones; ``background`` (a sample of stored papers, without the liked ones, and their generic
    scores) only calibrates the cut: ``rate`` of it scores past the cut."""
    if liked_rows.shape[0] == 0:
        raise ValueError("a similarity profile needs at least one liked paper")
    keep = KEPT_WEIGHTS if keep is None else keep
    w = _unit_sum(liked_rows)
    if disliked_rows.shape[0]:
        w = w - DISLIKE_WEIGHT * _unit_sum(disliked_rows)
    w = sp.csr_matrix(w)
    w.eliminate_zeros()
    w.sort_indices()  # columns ascending: ``explain`` looks weights up by bisection
    columns, values = w.indices, w.data
    if len(columns) > keep:
        chosen = np.sort(np.argsort(-np.abs(values), kind="stable")[:keep])
        columns, values = columns[chosen], values[chosen]
    weights = _unit(values.astype(np.float64)).astype(np.float32)
    model = ProfileModel(profile_id, columns.astype(np.int32), weights, 0.0, 1.0, liked)
    cut, top = _calibrate(model.raw(background, background_generic), rate)
    return ProfileModel(profile_id, model.columns, weights, cut, top, liked)


def _unit_sum(rows: sp.csr_matrix) -> sp.csr_matrix:
    """The sum of ``rows`` as a sparse row of norm 1."""
    total = sp.csr_matrix(np.ones((1, rows.shape[0]))) @ rows.astype(np.float64)
    norm = float(np.sqrt(total.multiply(total).sum()))
    return total / norm if norm > 0 else total


def _calibrate(scores: NDArray[np.float32], rate: float) -> tuple[float, float]:
    """The cut that the top ``rate`` of ``scores`` passes and the score of their top
    ``TOP_RATE``; the cut is never below a hair above zero (a paper sharing nothing with the
    profile never matches: the sparse product cannot see it) and the top is above the cut."""
    floor = 1e-3
    if len(scores) == 0:
        return 0.1, 0.2
    cut = max(float(np.quantile(scores, 1.0 - rate)), floor)
    top = float(np.quantile(scores, 1.0 - min(TOP_RATE, rate / 2)))
    return cut, max(top, cut * 1.5)


def model_to_bytes(model: ProfileModel) -> bytes:
    """A model's columns, weights, cut, top and liked papers as bytes (little-endian)."""
    head = np.array([len(model.columns), len(model.liked)], dtype="<i4").tobytes()
    ends = np.array([model.cut, model.top], dtype="<f8").tobytes()
    return b"".join(
        [
            head,
            ends,
            np.asarray(model.columns, dtype="<i4").tobytes(),
            np.asarray(model.weights, dtype="<f4").tobytes(),
            np.asarray(model.liked, dtype="<i8").tobytes(),
        ]
    )


def model_from_bytes(profile_id: int, data: bytes) -> ProfileModel:
    """The model ``model_to_bytes`` wrote (for ``profile_id``)."""
    if len(data) < 24:
        raise ValueError(f"a stored similarity model of {len(data)} bytes is not whole")
    n, likes = (int(v) for v in np.frombuffer(data, dtype="<i4", count=2))
    if len(data) != 24 + 8 * n + 8 * likes:
        raise ValueError(f"a stored similarity model of {len(data)} bytes is not whole")
    cut, top = (float(v) for v in np.frombuffer(data, dtype="<f8", count=2, offset=8))
    at = 24
    columns = np.frombuffer(data, dtype="<i4", count=n, offset=at).astype(np.int32)
    at += 4 * n
    weights = np.frombuffer(data, dtype="<f4", count=n, offset=at).astype(np.float32)
    at += 4 * n
    liked = tuple(int(v) for v in np.frombuffer(data, dtype="<i8", count=likes, offset=at))
    return ProfileModel(profile_id, columns, weights, cut, top, liked)


def top_terms(rows: sp.csr_matrix, keep: int = KEPT_LIKE_TERMS) -> sp.csr_matrix:
    """Each row with only its ``keep`` largest entries (a liked paper's main terms, enough to
    tell which liked paper a match is closest to)."""
    out = rows.tolil(copy=True)
    for i in range(out.shape[0]):
        values = np.asarray(out.data[i])
        if len(values) > keep:
            order = sorted(np.argsort(-values, kind="stable")[:keep])
            out.rows[i] = [out.rows[i][j] for j in order]
            out.data[i] = [out.data[i][j] for j in order]
    return out.tocsr()


@dataclass(frozen=True, slots=True)
class _Block:
    matrix: sp.csr_matrix
    ids: NDArray[np.int64]
    cuts: NDArray[np.float32]
    spans: NDArray[np.float32]  # top - cut


class SimilarityIndex:
    """Every similarity profile's model as one sparse (features × profiles) matrix, so that
    a batch of papers is scored against all of them in one product.

    A changed model goes to a small overlay (and its old column is masked), so that a click
    is reflected at once without touching the other profiles; the overlay is folded into the
    main matrix before scoring once it has grown to ``FOLD_AT`` models.
    """

    FOLD_AT = 512

    def __init__(self, width: int) -> None:
        self.width = width
        self._models: dict[int, ProfileModel] = {}
        self._base = _block([], width)
        self._live: NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self._position: dict[int, int] = {}  # profile id -> column in the base, while live
        self._overlay: dict[int, ProfileModel] = {}

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, profile_id: int) -> bool:
        return profile_id in self._models

    def model(self, profile_id: int) -> ProfileModel:
        return self._models[profile_id]

    def models(self) -> list[ProfileModel]:
        return list(self._models.values())

    def put(self, model: ProfileModel) -> None:
        """Add or replace one profile's model (its old column is masked, not rebuilt)."""
        self._drop_base(model.profile_id)
        self._models[model.profile_id] = model
        self._overlay[model.profile_id] = model

    def put_many(self, models: Iterable[ProfileModel]) -> None:
        for model in models:
            self.put(model)
        self.fold()

    def remove(self, profile_id: int) -> None:
        self._drop_base(profile_id)
        self._models.pop(profile_id, None)
        self._overlay.pop(profile_id, None)

    def _drop_base(self, profile_id: int) -> None:
        at = self._position.pop(profile_id, None)
        if at is not None:
            self._live[at] = False

    def fold(self) -> None:
        """Rebuild the main matrix from every current model."""
        models = list(self._models.values())
        self._base = _block(models, self.width)
        self._live = np.ones(len(models), dtype=bool)
        self._position = {m.profile_id: i for i, m in enumerate(models)}
        self._overlay = {}

    def score(
        self, rows: sp.csr_matrix, generic: NDArray[np.float32], *, chunk: int = 256
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
        """Every (row, profile id, score) whose raw score passes the profile's cut, the
        score on the similarity scale (1 at the cut). ``generic``: the rows' generic scores."""
        if len(self._overlay) >= self.FOLD_AT:
            self.fold()
        parts: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]] = []
        blocks = [self._base]
        if self._overlay:
            blocks.append(_block(list(self._overlay.values()), self.width))
        live = self._live
        discount = np.float32(GENERIC_WEIGHT) * np.asarray(generic, dtype=np.float32)
        for start in range(0, rows.shape[0], chunk):
            part = rows[start : start + chunk]
            for n, block in enumerate(blocks):
                if block.matrix.shape[1] == 0:
                    continue
                product = (part @ block.matrix).tocoo()
                raw = product.data - discount[start + product.row]
                passed = raw > block.cuts[product.col]
                if n == 0:
                    passed &= live[product.col]
                r, c = product.row[passed], product.col[passed]
                scaled = 1.0 + (raw[passed] - block.cuts[c]) / block.spans[c]
                parts.append((r.astype(np.int64) + start, block.ids[c], scaled.astype(np.float32)))
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.float32)
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )


def _block(models: Sequence[ProfileModel], width: int) -> _Block:
    """The models as columns, kept row-major: the product with paper rows wants CSR."""
    ids = np.array([m.profile_id for m in models], dtype=np.int64)
    cuts = np.array([m.cut for m in models], dtype=np.float32)
    spans = np.array([m.top - m.cut for m in models], dtype=np.float32)
    if not models:
        return _Block(sp.csr_matrix((width, 0), dtype=np.float32), ids, cuts, spans)
    indptr = np.zeros(len(models) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(m.columns) for m in models])
    indices = np.concatenate([m.columns for m in models])
    data = np.concatenate([m.weights for m in models])
    matrix = sp.csc_matrix((data, indices, indptr), shape=(width, len(models))).tocsr()
    return _Block(matrix, ids, cuts, spans)


_WORD = re.compile(_TOKEN)


def _spans(text: str, term: str) -> tuple[tuple[int, int], ...]:
    """Where a 1- or 2-gram (as the vectoriser wrote it) occurs in ``text``."""
    words = term.split()
    pattern = r"\W+".join(re.escape(w) for w in words)
    found = re.finditer(rf"(?<!\w){pattern}(?!\w)", text, flags=re.IGNORECASE)
    return tuple((m.start(), m.end()) for m in found)


# The liked papers' main terms (``top_terms`` rows, in each model's ``liked`` order) by
# profile id, for the given models.
LikedRows = Callable[[Sequence[ProfileModel]], Mapping[int, sp.csr_matrix]]


def explain(
    features: Features,
    model: ProfileModel,
    liked_rows: sp.csr_matrix,
    row: sp.csr_matrix,
    text: Text,
    titles: Mapping[int, str],
    *,
    terms: int = 3,
) -> tuple[Reason, ...]:
    """Why ``text`` matched: the closest liked paper (``like: <title>``; ``liked_rows`` are the
    liked papers' main terms), then the terms that carried the score, with their places in
    title and abstract."""
    reasons: list[Reason] = []
    closest = liked_rows @ row.T
    if closest.nnz:
        best = model.liked[int(np.argmax(closest.toarray().ravel()))]
        if best in titles:
            reasons.append(new_reason(f"like: {titles[best]}", "like", ()))
    cols = row.indices
    at = np.searchsorted(model.columns, cols)
    at[at >= len(model.columns)] = 0
    hit = model.columns[at] == cols
    weights = np.zeros(len(cols), dtype=np.float32)
    weights[hit] = model.weights[at[hit]]
    carried = row.data * weights
    text_terms = 0
    for i in np.argsort(-carried, kind="stable"):
        if carried[i] <= 0 or text_terms >= terms:
            break
        term = features.term(int(cols[i]))
        if term is None:
            continue
        text_terms += 1
        for name, where in (("title", text.title), ("abstract", text.abstract)):
            spans = _spans(where, term)
            if spans:
                reasons.append(new_reason(term, name, spans))
    return tuple(reasons)


def matches(
    index: SimilarityIndex,
    features: Features,
    texts: Sequence[Text],
    titles: Mapping[int, str],
    liked_rows: LikedRows,
    *,
    only: Mapping[int, frozenset[int]] | None = None,
    rows: sp.csr_matrix | None = None,
) -> list[Match]:
    """Similarity matches of ``texts`` against every profile in ``index``, with reasons.

    ``only`` restricts a profile to the papers its query matched (a query and likes: the
    query decides what can match, the likes rank it); those match whatever their score.
    ``rows``: the texts' feature rows, when the caller has them.
    """
    if not texts or not len(index):
        return []
    if rows is None:
        rows = features.transform(texts)
    generic = features.generic(rows)
    r, ids, scores = index.score(rows, generic)
    passed = [
        (i, profile_id, score)
        for i, profile_id, score in zip(r.tolist(), ids.tolist(), scores.tolist(), strict=True)
        if only is None or profile_id not in only or texts[i].id in only[profile_id]
    ]
    seen = {(profile_id, texts[i].id) for i, profile_id, _ in passed}
    extra = [
        (i, profile_id)
        for profile_id, allowed in (only or {}).items()
        if profile_id in index
        for i, text in enumerate(texts)
        if text.id in allowed and (profile_id, text.id) not in seen
    ]
    involved = {profile_id for _, profile_id, _ in passed} | {p for _, p in extra}
    likes = liked_rows([index.model(p) for p in sorted(involved)])
    found: list[Match] = []
    for i, profile_id, score in passed:
        model = index.model(profile_id)
        reasons = explain(features, model, likes[profile_id], rows[i], texts[i], titles)
        found.append(new_match(profile_id, texts[i].id, float(score), reasons))
    for i, profile_id in extra:
        model = index.model(profile_id)
        row = rows[i]
        score = float(model.scaled(model.raw(row, generic[i : i + 1])[0]))
        reasons = explain(features, model, likes[profile_id], row, texts[i], titles)
        found.append(new_match(profile_id, texts[i].id, score, reasons))
    return found


def words_of(text: str) -> list[str]:
    """The words the vectoriser sees (lower case), for tests and messages."""
    return [w.lower() for w in _WORD.findall(text)]
