"""Dense retrieval against the real llama-server in embedding mode (a generative pack, mean-pooled)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from thinktank.backends.llama_server import LlamaServer
from thinktank.engine import Engine
from thinktank.engine.resources import Resources
from thinktank.retrieval import Retrievers
from thinktank.tasks.base import TaskInput
from thinktank.techniques.retrieve import Retrieve
from thinktank.types import EmbeddingRequest

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
ROWS = [
    ("volcano", "A volcano erupts molten lava and ash from deep inside the Earth."),
    ("piano", "The piano is a keyboard instrument whose hammers strike strings."),
    ("bread", "Bakers knead dough made of flour, water and yeast, then bake bread."),
    ("orbit", "Satellites orbit the planet, pulled by gravity as they fall around it."),
]


@pytest.fixture(scope="module")
def embedding_server():
    server = LlamaServer(MODEL, slots=2, ctx_per_slot=512, embedding=True)
    asyncio.run(server.start())
    yield server
    server.terminate()


def server_embedding(server: LlamaServer, text: str) -> tuple[list[float], int]:
    """Ask the server directly (not through thinktank) for one embedding and its prompt tokens."""
    data = httpx.post(f"{server.base_url}/embeddings", json={"model": MODEL, "input": [text]}, timeout=60).json()
    return data["data"][0]["embedding"], data["usage"]["prompt_tokens"]


async def test_embed_through_the_engine_is_accounted(embedding_server):
    async with embedding_server.backend() as backend:
        ctx = Engine({MODEL: backend}).context()
        response = await ctx.embed(EmbeddingRequest(("first text", "a second, longer text"), MODEL))
    assert len(response.vectors) == 2 and len(response.vectors[0]) == len(response.vectors[1]) > 100
    direct, direct_tokens = server_embedding(embedding_server, "first text")
    assert response.vectors[0] == pytest.approx(direct, abs=1e-4)
    [record] = ctx.node.calls
    assert record.status == "ok" and record.usage.calls == 1 and record.latency_s > 0
    assert record.usage.prompt_tokens == response.prompt_tokens > direct_tokens > 0


async def test_dense_retrieve_finds_the_passage_and_accounts_its_calls(embedding_server, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in ROWS))
    resources = Resources()
    resources.provide(Retrievers(tmp_path / "cache", progress=False))
    async with embedding_server.backend() as backend:
        engine = Engine({MODEL: backend}, resources=resources)
        ctx = engine.context()
        # a near copy of one passage: its mean-pooled vector is closest to that passage's
        task = TaskInput("q", "text", "Bakers knead the dough of flour, water and yeast and bake bread.", corpus=str(corpus))
        out = await Retrieve(k=2, mode="dense", embedding_model=MODEL).apply(ctx, task, [])
        assert out[0].passage.id == "bread" and out[0].passage.score > out[1].passage.score
        [node] = ctx.node.children
        assert node.name == "retrieve" and node.notes["passage_ids"][0] == "bread"
        assert [c.status for c in node.calls] == ["ok", "ok"]  # the passages in one batch, then the query
        tokens = (
            sum(server_embedding(embedding_server, t)[1] for _, t in ROWS) + server_embedding(embedding_server, task.prompt)[1]
        )
        assert node.usage.calls == 2 and node.usage.prompt_tokens == tokens

        # a second run with the same cache embeds only the query
        resources2 = Resources()
        resources2.provide(Retrievers(tmp_path / "cache", progress=False))
        ctx2 = Engine({MODEL: backend}, resources=resources2).context()
        again = await Retrieve(k=1, mode="hybrid", embedding_model=MODEL).apply(ctx2, task, [])
        assert again[0].passage.id == "bread" and ctx2.usage.calls == 1
