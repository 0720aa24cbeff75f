"""The similarity features and profile models, stored so that a restart or another worker
loads them instead of refitting and retraining (bytes in, bytes out: the store does not read
them)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from service.store.tables import similarity_features, similarity_models

# Models written per statement: a refit stores every profile's model.
WRITE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class StoredFeatures:
    version: str
    fitted_on: int
    background: tuple[int, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class StoredModel:
    profile_id: int
    version: str
    liked: tuple[int, ...]
    refused: tuple[int, ...]
    data: bytes


class SimilarityStore:
    """Reads and writes of the similarity features and models; each call one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def features(self) -> StoredFeatures | None:
        """The features fitted last, if any."""
        with self.engine.connect() as db:
            row = db.execute(
                sa.select(similarity_features)
                .order_by(similarity_features.c.created_at.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        return StoredFeatures(row.version, row.fitted_on, tuple(row.background), bytes(row.data))

    def save_features(self, features: StoredFeatures, now: datetime) -> None:
        """Store newly fitted features in place of the old ones (and drop the models trained
        on the old ones: they read other columns)."""
        with self.engine.begin() as db:
            db.execute(
                similarity_models.delete().where(similarity_models.c.version != features.version)
            )
            db.execute(similarity_features.delete())
            db.execute(
                similarity_features.insert().values(
                    version=features.version,
                    fitted_on=features.fitted_on,
                    background=list(features.background),
                    data=features.data,
                    created_at=now,
                )
            )

    def models(
        self, version: str, profile_ids: Sequence[int] | None = None
    ) -> Iterator[StoredModel]:
        """The stored models trained on the features of ``version`` (of ``profile_ids``)."""
        query = sa.select(similarity_models).where(similarity_models.c.version == version)
        if profile_ids is not None:
            query = query.where(similarity_models.c.profile_id.in_(profile_ids))
        with self.engine.connect() as db:
            for row in db.execute(query.order_by(similarity_models.c.profile_id)):
                liked, refused = row.trained_on
                yield StoredModel(
                    row.profile_id, row.version, tuple(liked), tuple(refused), bytes(row.data)
                )

    def save_models(self, models: Iterable[StoredModel], now: datetime) -> int:
        """Store models in place of the profiles' old ones; how many."""
        saved = 0
        batch: list[StoredModel] = []
        for model in models:
            batch.append(model)
            if len(batch) >= WRITE_BATCH:
                saved += self._write(batch, now)
                batch = []
        if batch:
            saved += self._write(batch, now)
        return saved

    def _write(self, batch: list[StoredModel], now: datetime) -> int:
        with self.engine.begin() as db:
            db.execute(
                similarity_models.delete().where(
                    similarity_models.c.profile_id.in_([m.profile_id for m in batch])
                )
            )
            db.execute(
                similarity_models.insert(),
                [
                    {
                        "profile_id": m.profile_id,
                        "version": m.version,
                        "trained_on": [list(m.liked), list(m.refused)],
                        "data": m.data,
                        "updated_at": now,
                    }
                    for m in batch
                ],
            )
        return len(batch)

    def drop_models(self, profile_ids: Sequence[int]) -> None:
        """Forget the models of profiles that no longer like any paper."""
        if not profile_ids:
            return
        with self.engine.begin() as db:
            for start in range(0, len(profile_ids), WRITE_BATCH):
                chunk = list(profile_ids[start : start + WRITE_BATCH])
                db.execute(
                    similarity_models.delete().where(similarity_models.c.profile_id.in_(chunk))
                )
