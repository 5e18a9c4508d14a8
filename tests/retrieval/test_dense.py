"""Embeddings through the engine (accounted like generation), dense and hybrid retrieval, their errors."""

import json
import socket

import httpx
import pytest

from thinktank.backends import OpenAICompatBackend, ScriptedBackend
from thinktank.engine import Engine
from thinktank.exceptions import BackendError, BackendUnreachable
from thinktank.retrieval import RetrievalError, Retrievers
from thinktank.types import EmbeddingRequest

VOCAB = ["cat", "dog", "sea", "moon", "bark", "purr", "ocean"]


def bag(text):
    """A toy embedding: counts of a few words, plus a constant so no vector is zero."""
    low = text.lower()
    return [float(low.count(w)) for w in VOCAB] + [0.1]


def engine(embedder=bag, **kwargs):
    backend = ScriptedBackend(lambda r, i: "unused", embedder=embedder, **kwargs)
    return Engine({"emb": backend}), backend


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.txt").write_text("A cat will purr.")
    (root / "b.txt").write_text("A dog will bark at a dog.")
    (root / "c.txt").write_text("The sea, the ocean, the moon.")
    return root


async def test_embed_is_accounted_in_the_trace_like_a_generation():
    eng, backend = engine()
    ctx = eng.context()
    response = await ctx.embed(EmbeddingRequest(("one two three", "four"), "emb"))
    assert len(response.vectors) == 2 and len(response.vectors[0]) == len(VOCAB) + 1
    [record] = ctx.node.calls
    assert record.status == "ok" and record.model == "emb" and record.backend == "scripted"
    assert record.operation == "embeddings" and record.ended_s is not None  # exported as a GenAI "embeddings" span
    assert record.usage.prompt_tokens == 4 and record.usage.calls == 1 and record.usage.completion_tokens == 0
    assert record.latency_s == response.latency_s == record.usage.latency_s
    assert ctx.usage.prompt_tokens == 4 and ctx.budget.spent.prompt_tokens == 4
    assert backend.embed_requests == [EmbeddingRequest(("one two three", "four"), "emb")]


async def test_embed_on_a_backend_without_embeddings_is_a_clear_error():
    eng = Engine({"m": ScriptedBackend(lambda r, i: "x")})
    with pytest.raises(BackendError, match="does not serve embeddings"):
        await eng.context().embed(EmbeddingRequest(("x",), "m"))
    with pytest.raises(ValueError, match="texts must not be empty"):
        EmbeddingRequest((), "m")


def embeddings_backend(handler):
    return OpenAICompatBackend("http://emb.test/v1", transport=httpx.MockTransport(handler), max_retries=0)


async def test_openai_compat_embed_sends_one_batch_and_reads_the_vectors_in_index_order():
    seen = []

    def handler(request):
        seen.append((request.url.path, json.loads(request.content)))
        data = [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]
        return httpx.Response(200, json={"data": data, "usage": {"prompt_tokens": 5, "total_tokens": 5}, "model": "e"})

    async with embeddings_backend(handler) as backend:
        eng = Engine({"e": backend})
        ctx = eng.context()
        response = await ctx.embed(EmbeddingRequest(("first", "second"), "e"))
    assert seen == [("/v1/embeddings", {"model": "e", "input": ["first", "second"], "encoding_format": "float"})]
    assert response.vectors == [[1.0, 0.0], [0.0, 1.0]]
    assert ctx.usage.prompt_tokens == 5 and ctx.usage.calls == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([{"index": 0, "embedding": [1.0, 0.0]}], "returned 1 embedding"),
        ([{"index": 0, "embedding": [1.0, 0.0]}, {"index": 1, "embedding": [1.0]}], "inconsistent dimension: \\[1, 2\\]"),
        ([{"index": 0}, {"index": 1}], "malformed embeddings answer"),
    ],
)
async def test_openai_compat_embed_rejects_bad_answers(data, message):
    async with embeddings_backend(lambda r: httpx.Response(200, json={"data": data})) as backend:
        with pytest.raises(BackendError, match=message):
            await backend.embed(EmbeddingRequest(("a", "b"), "e"))


async def test_embedding_endpoint_down_is_a_clear_error_and_recorded():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with OpenAICompatBackend(f"http://127.0.0.1:{port}/v1", max_retries=0) as backend:
        ctx = Engine({"e": backend}).context()
        with pytest.raises(BackendUnreachable, match=f"127.0.0.1:{port}"):
            await ctx.embed(EmbeddingRequest(("a",), "e"))
    assert ctx.node.calls[0].status == "error"


async def test_dense_search_ranks_by_cosine_and_accounts_every_embedding(corpus, tmp_path):
    eng, backend = engine()
    ctx = eng.context()
    passages = await Retrievers(tmp_path / "cache").search(ctx, corpus, "barking dog", k=2, mode="dense", embedding_model="emb")
    assert passages[0].id == "b.txt" and len(passages) == 2
    assert passages[0].score > passages[1].score
    [node] = ctx.node.children
    assert node.name == "retrieve" and node.notes["passage_ids"] == [p.id for p in passages] and node.notes["mode"] == "dense"
    assert node.notes["latency_s"] >= 0
    # one call for the three passages, one for the query; their words are the prompt tokens
    assert [len(r.texts) for r in backend.embed_requests] == [3, 1]
    assert node.usage.calls == 2 and node.usage.prompt_tokens == 4 + 7 + 6 + 2


async def test_passage_vectors_are_cached_with_the_index(corpus, tmp_path):
    eng, backend = engine()
    await Retrievers(tmp_path / "cache").search(eng.context(), corpus, "cat", k=1, mode="dense", embedding_model="emb")
    (corpus / "c.txt").write_text("The moon again.")
    ctx = eng.context()
    passages = await Retrievers(tmp_path / "cache").search(ctx, corpus, "moon", k=1, mode="dense", embedding_model="emb")
    assert passages[0].id == "c.txt"
    # a new run: only the changed passage and the query are embedded
    assert [r.texts for r in backend.embed_requests[2:]] == [("The moon again.",), ("moon",)]
    assert ctx.usage.calls == 2


async def test_a_dimension_change_names_expected_and_got(corpus, tmp_path):
    eng, _ = engine()
    await Retrievers(tmp_path / "cache").search(eng.context(), corpus, "cat", k=1, mode="dense", embedding_model="emb")
    (corpus / "d.txt").write_text("A new passage.")
    eng2, _ = engine(embedder=lambda text: [1.0, 2.0])  # the model behind "emb" changed
    with pytest.raises(RetrievalError, match="dimension 2, expected 8"):
        await Retrievers(tmp_path / "cache").search(eng2.context(), corpus, "cat", k=1, mode="dense", embedding_model="emb")


async def test_a_query_vector_of_another_dimension_is_a_clear_error(corpus, tmp_path):
    calls = []

    def embedder(text):
        calls.append(text)
        return [1.0, 0.0, 0.0] if len(calls) <= 3 else [1.0, 0.0]

    eng, _ = engine(embedder=embedder)
    ctx = eng.context()
    with pytest.raises(RetrievalError, match="query vector of dimension 2, expected 3"):
        await Retrievers(tmp_path / "cache").search(ctx, corpus, "cat", k=1, mode="dense", embedding_model="emb")
    assert ctx.node.children[0].error.startswith("RetrievalError")


async def test_bm25_search_costs_no_tokens_and_is_traced(corpus, tmp_path):
    eng, backend = engine()
    ctx = eng.context()
    passages = await Retrievers(tmp_path / "cache").search(ctx, corpus, "purr", k=3)
    assert passages[0].id == "a.txt" and len(passages) == 3
    [node] = ctx.node.children
    assert node.notes["passage_ids"][0] == "a.txt" and node.notes["index"] == "built"
    assert node.usage.total_tokens == 0 and node.usage.calls == 0 and backend.embed_requests == []


async def test_hybrid_fuses_both_rankings(corpus, tmp_path):
    eng, _ = engine()
    ctx = eng.context()
    passages = await Retrievers(tmp_path / "cache").search(ctx, corpus, "ocean moon", k=3, mode="hybrid", embedding_model="emb")
    assert passages[0].id == "c.txt"  # first in both rankings
    assert passages[0].score == pytest.approx(2 / 61)


async def test_the_index_is_built_once_per_retrievers(corpus, tmp_path):
    eng, _ = engine()
    retrievers = Retrievers(tmp_path / "cache")
    first = await retrievers.index(corpus)
    await retrievers.search(eng.context(), corpus, "cat", k=1)
    assert await retrievers.index(str(corpus)) is first
    with pytest.raises(RetrievalError, match="needs an embedding_model"):
        await retrievers.search(eng.context(), corpus, "cat", k=1, mode="dense")
