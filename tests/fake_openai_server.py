"""The fake OpenAI server now ships in `thinktank.testing`; tests and benchmarks keep importing (and running) it here."""

from thinktank.testing.fake_openai_server import (
    LLAMA_CPP_CONTEXT_ERROR,
    OPENAI_CONTEXT_ERROR,
    FakeOpenAIServer,
    RecordedRequest,
    Reply,
    default_text,
    serve_forever,
    unused_port,
)

__all__ = [
    "LLAMA_CPP_CONTEXT_ERROR",
    "OPENAI_CONTEXT_ERROR",
    "FakeOpenAIServer",
    "RecordedRequest",
    "Reply",
    "default_text",
    "serve_forever",
    "unused_port",
]

if __name__ == "__main__":  # benchmarks/bench_engine_overhead.py runs this file as a script
    serve_forever()
