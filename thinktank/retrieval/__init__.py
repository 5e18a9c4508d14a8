"""Retrieval over a corpus: BM25 (bm25s), dense (any `/v1/embeddings` model through the engine) and hybrid (RRF).

passages = await ctx.resources.get(Retrievers).search(ctx, "docs/", question, k=5, mode="bm25")
"""

from __future__ import annotations

from thinktank.retrieval.corpus import Corpus, read_corpus
from thinktank.retrieval.dense import DenseVectors
from thinktank.retrieval.errors import RetrievalError
from thinktank.retrieval.fusion import RRF_K, reciprocal_rank_fusion
from thinktank.retrieval.index import INDEX_VERSION, CorpusIndex, LoadStats, load_index
from thinktank.retrieval.metrics import recall_at_k
from thinktank.retrieval.retrievers import Mode, Retrievers

__all__ = [
    "INDEX_VERSION",
    "RRF_K",
    "Corpus",
    "CorpusIndex",
    "DenseVectors",
    "LoadStats",
    "Mode",
    "RetrievalError",
    "Retrievers",
    "load_index",
    "read_corpus",
    "recall_at_k",
    "reciprocal_rank_fusion",
]
