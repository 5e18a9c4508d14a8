"""`serve --corpus`: requests carry the corpus and the qa kind; the passages read come back in `thinktank.passages`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from rag_fixtures import KIND

from thinktank.serve.mapping import CORPUS_KIND, task_input
from thinktank.serve.wire import ChatCompletionRequest

from .conftest import WordStreamBackend, serving

USER = [{"role": "user", "content": "Where was Zorvan Peltrix born?"}]
RAG = {
    "rag": {
        "name": "rag",
        "layers": [{"rag_fixtures:CorpusTaggedPassages": {"k": 3}}, {"read": {}}],
    },
    "plain": {"name": "plain", "layers": [{"generate": {}}]},
}


def body(**options):
    return ChatCompletionRequest.model_validate({"model": "rag", "messages": USER, **({"thinktank": options} if options else {})})


def test_the_corpus_and_the_qa_kind_go_into_the_task_input():
    task = task_input(body(), "r1", corpus="/data/docs")
    assert (task.corpus, task.kind, task.prompt) == ("/data/docs", CORPUS_KIND, USER[0]["content"])
    assert task_input(body(kind="math"), "r2", corpus="/data/docs").kind == "math"  # a kind the request names wins
    plain = task_input(body(), "r3")
    assert (plain.corpus, plain.kind) == (None, "text")


def test_the_passages_read_come_back_in_the_extension(tmp_path):
    backend = WordStreamBackend(lambda request, i: "Quillmarsh")
    corpus = tmp_path / "docs"
    with serving(backend, RAG, corpus=str(corpus)) as live:
        client = live.client()
        response = client.chat.completions.create(model="rag", messages=USER, extra_body={"thinktank": {"kind": KIND}})
        assert response.choices[0].message.content == "Quillmarsh"
        assert response.model_extra["thinktank"]["passages"] == ["docs/p0", "docs/p1", "docs/p2"]
        assert "(p0)" in backend.requests[0].messages[-1]["content"]
        plain = client.chat.completions.create(model="plain", messages=USER, extra_body={"thinktank": {"kind": KIND}})
        assert plain.model_extra["thinktank"]["passages"] is None


def test_serve_refuses_a_missing_corpus(tmp_path):
    missing = tmp_path / "nope"
    done = subprocess.run(
        [sys.executable, "-m", "thinktank.cli", "serve", "--backend", "http://127.0.0.1:9", "--corpus", str(missing)],
        capture_output=True, text=True, timeout=60, env=os.environ | {"COLUMNS": "400"},
    )  # fmt: skip
    assert done.returncode != 0 and "does not exist" in done.stderr, done.stderr


@pytest.mark.skipif(CORPUS_KIND not in __import__("thinktank.kinds").kinds.KINDS, reason="the qa kind is not merged yet")
def test_a_corpus_request_without_a_kind_is_answered_as_qa(tmp_path):
    backend = WordStreamBackend(lambda request, i: "Answer: Quillmarsh")
    with serving(backend, RAG, corpus=str(tmp_path / "docs")) as live:
        response = live.client().chat.completions.create(model="rag", messages=USER)
        assert response.model_extra["thinktank"]["passages"] == ["docs/p0", "docs/p1", "docs/p2"]


def test_a_retrieval_preset_streams_its_reader_and_reports_the_passages(tmp_path):
    backend = WordStreamBackend(lambda request, i: "Answer: Quillmarsh, by the river")
    with serving(backend, RAG, corpus=str(tmp_path / "docs")) as live:
        stream = live.client().chat.completions.create(
            model="rag", messages=USER, stream=True, extra_body={"thinktank": {"kind": KIND}}
        )
        chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 1 and "".join(deltas) == "Answer: Quillmarsh, by the river"  # delta by delta, not at the end
    assert "(p0)" in backend.requests[0].messages[-1]["content"]  # the grounded prompt streamed
    extensions = [c.model_extra.get("thinktank") for c in chunks if c.model_extra.get("thinktank")]
    assert extensions and extensions[-1]["passages"] == ["docs/p0", "docs/p1", "docs/p2"]
