"""Dense retrieval: passage and query vectors from an OpenAI-compatible `/v1/embeddings` model, cosine ranked.

Every embedding call goes through `ctx.embed`, so it is accounted in the calling node's usage. Passage
vectors are kept beside the corpus's BM25 index, one file per embedding model, keyed by passage hash:
after a corpus change only new or changed passages are embedded again (on the first query that needs
them). A vector of another dimension than the model's others is a `RetrievalError` naming both.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile

import numpy as np

from thinktank.engine.engine import Context
from thinktank.retrieval.errors import RetrievalError
from thinktank.retrieval.index import CorpusIndex, passage_hash
from thinktank.types import EmbeddingRequest

__all__ = ["DenseVectors"]

#: texts per embeddings call, and the characters of a passage that are embedded (the embedding model's context)
BATCH = 16
MAX_CHARS = 2000


class DenseVectors:
    """The passage vectors of one corpus index under one embedding model, normalised for cosine similarity."""

    def __init__(self, index: CorpusIndex, model: str, *, batch: int = BATCH, max_chars: int = MAX_CHARS) -> None:
        self.index, self.model, self.batch, self.max_chars = index, model, batch, max_chars
        self.path = index.root / "embeddings" / f"{hashlib.sha256(model.encode()).hexdigest()[:24]}.npz"
        self.matrix: np.ndarray | None = None
        self.embedded_passages = 0  # how many passages this object had to embed (0 when all were cached)

    @property
    def dim(self) -> int | None:
        return None if self.matrix is None else int(self.matrix.shape[1])

    def _load(self) -> dict[str, np.ndarray]:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                if str(data["model"]) != self.model:
                    return {}
                return dict(zip((str(h) for h in data["hashes"]), data["vectors"], strict=True))
        except (OSError, KeyError, ValueError):
            return {}

    def _save(self, vectors: dict[str, np.ndarray]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, model=np.array(self.model), hashes=np.array(list(vectors)), vectors=np.stack(list(vectors.values())))
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _text(self, position: int) -> str:
        p = self.index.passages[position]
        return (f"{p.title}\n{p.text}" if p.title else p.text)[: self.max_chars]

    def _check_dim(self, vectors: list[list[float]], expected: int | None, what: str) -> int:
        for v in vectors:
            if expected is None:
                expected = len(v)
            if len(v) != expected:
                raise RetrievalError(
                    f"embedding model {self.model!r} returned a {what} vector of dimension {len(v)}, expected {expected}"
                    " (the dimension of its other vectors); was the model behind this name changed?"
                )
        assert expected is not None
        return expected

    async def ensure(self, ctx: Context) -> None:
        """Embed the passages that have no cached vector (through `ctx`), then build the normalised matrix."""
        if self.matrix is not None:
            return
        hashes = [passage_hash(p) for p in self.index.passages]
        cached = self._load()
        dim = len(next(iter(cached.values()))) if cached else None
        missing = [i for i, h in enumerate(hashes) if h not in cached]
        for start in range(0, len(missing), self.batch):
            chunk = missing[start : start + self.batch]
            response = await ctx.embed(EmbeddingRequest(tuple(self._text(i) for i in chunk), self.model))
            dim = self._check_dim(response.vectors, dim, "passage")
            for i, vector in zip(chunk, response.vectors, strict=True):
                cached[hashes[i]] = np.asarray(vector, dtype=np.float32)
            self.embedded_passages += len(chunk)
        if missing:
            self._save({h: cached[h] for h in hashes})
        matrix = np.stack([cached[h] for h in hashes]).astype(np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.matrix = matrix / np.where(norms == 0, 1.0, norms)

    async def search(self, ctx: Context, query: str, k: int) -> list[tuple[int, float]]:
        """The top `k` passages for `query` as (position in corpus order, cosine similarity), best first."""
        await self.ensure(ctx)
        assert self.matrix is not None
        response = await ctx.embed(EmbeddingRequest((query[: self.max_chars],), self.model))
        self._check_dim(response.vectors, self.dim, "query")
        q = np.asarray(response.vectors[0], dtype=np.float32)
        q = q / (np.linalg.norm(q) or 1.0)
        scores = self.matrix @ q
        order = np.argsort(-scores, kind="stable")[: min(k, len(scores))]
        return [(int(i), float(scores[i])) for i in order]
