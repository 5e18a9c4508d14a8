"""Speculative decoding on the real llama-server: lossless at temperature 0, sampling still works, bad drafts refused.

The 1.5B pack is drafted by the 0.5B pack (and n-gram lookup, the default); the n-gram source alone is checked
on the 0.5B with a call that copies its input. Outputs are kept short so the module stays well under 3 min.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from thinktank.backends.llama_server import LlamaServer, server_metrics
from thinktank.backends.speculation import Speculation, SpeculationSettings
from thinktank.engine import Engine
from thinktank.models.gguf import read_vocab, vocab_mismatch
from thinktank.models.packs import resolve
from thinktank.types import GenerationRequest

pytestmark = pytest.mark.integration

BIG, SMALL, TINY = "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct"
PROMPTS = [
    "Write a Python function `fib(n)` that returns the n-th Fibonacci number. Only code.",
    "Write a Python function that reverses the words of a sentence. Only code.",
    "Explain in two sentences what a hash table is.",
]
CODE = '''def moving_average(values, window):
    """Return the averages of each run of `window` consecutive values."""
    if window <= 0:
        raise ValueError("window must be positive")
    averages = []
    for start in range(len(values) - window + 1):
        chunk = values[start:start + window]
        averages.append(sum(chunk) / window)
    return averages
'''
COPY_PROMPT = (
    f"Rename the function below to `rolling_mean` and change nothing else. Reply with the code only.\n\n```python\n{CODE}```"
)


def start(model: str, speculation: Speculation, slots: int = 2) -> LlamaServer:
    """Weights unrepacked either way, as a speculating server keeps them: the comparison is of speculation alone."""
    server = LlamaServer(model, slots=slots, ctx_per_slot=2048, threads=2, speculation=speculation, repack=False)
    asyncio.run(server.start())
    return server


@pytest.fixture(scope="module")
def big_servers():
    """The 1.5B as shipped (0.5B draft + n-grams) and with speculation off."""
    speculating = start(BIG, SpeculationSettings(enabled=True).for_model(BIG))
    plain = start(BIG, Speculation())
    yield speculating, plain
    speculating.terminate()
    plain.terminate()


def drafted(server: LlamaServer) -> tuple[float, float]:
    metrics = server_metrics(server.base_url)
    return metrics["llamacpp:spec_decode_num_draft_tokens_total"], metrics["llamacpp:spec_decode_num_accepted_tokens_total"]


async def texts(server: LlamaServer, prompt: str, **options: object) -> list[str]:
    async with server.backend() as backend:
        ctx = Engine({server.model: backend}).context(use_cache=False)
        request = GenerationRequest.from_prompt(prompt, server.model, **options)  # type: ignore[arg-type]
        return [c.text for c in await ctx.generate(request)]


def test_the_shipped_packs_share_a_vocabulary_and_smollm_does_not():
    small, big, tiny = (read_vocab(resolve(name)) for name in (SMALL, BIG, TINY))
    assert small.checksum == big.checksum and vocab_mismatch(big, small) is None
    assert "vocabulary size 49152 differs from the target's 151936" in (vocab_mismatch(big, tiny) or "")


def test_greedy_outputs_are_identical_with_and_without_the_draft(big_servers):
    speculating, plain = big_servers
    assert speculating.draft_refused is None and speculating.speculation_failed is None
    before = drafted(speculating)

    async def both(prompt: str) -> tuple[list[str], list[str]]:
        options = {"temperature": 0.0, "max_tokens": 40}
        return await texts(speculating, prompt, **options), await texts(plain, prompt, **options)

    for prompt in PROMPTS:
        with_draft, without = asyncio.run(both(prompt))
        assert with_draft == without, prompt
    after = drafted(speculating)
    assert after[0] > before[0] and after[1] > before[1]  # the draft guessed, and the 1.5B kept some guesses
    assert drafted(plain) == (0.0, 0.0)


def test_sampled_calls_still_work_and_sample_from_the_target(big_servers):
    """At temperature > 0 llama-server draws every token from the target's distribution with the request's own
    sampler and seed, and keeps a drafted token only when it equals the one drawn: the same seeded samples."""
    speculating, plain = big_servers
    options = {"temperature": 0.8, "max_tokens": 32, "n": 2, "seed": 11}
    with_draft = asyncio.run(texts(speculating, PROMPTS[1], **options))
    without = asyncio.run(texts(plain, PROMPTS[1], **options))
    assert len(with_draft) == 2 and all(with_draft) and with_draft[0] != with_draft[1]
    assert with_draft == without


def test_ngram_lookup_speeds_a_copying_call_without_changing_it():
    ngram = start(SMALL, Speculation(ngram="ngram-mod"), slots=1)
    plain = start(SMALL, Speculation(), slots=1)
    try:
        options = {"temperature": 0.0, "max_tokens": 160}
        copied, reference = (asyncio.run(texts(s, COPY_PROMPT, **options)) for s in (ngram, plain))
        assert copied == reference and "rolling_mean" in copied[0]
        guessed, kept = drafted(ngram)
        assert guessed > 0 and kept > 0  # the copy was looked up in the prompt
    finally:
        ngram.terminate()
        plain.terminate()


def test_a_draft_of_another_vocabulary_is_refused_and_the_server_starts_without_it(caplog):
    server = start(TINY, Speculation(draft=SMALL, ngram="ngram-mod"), slots=1)
    try:
        assert server.draft_refused is not None and "vocabulary size 151936 differs" in server.draft_refused
        assert server.process is not None
        command = Path(f"/proc/{server.process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"--spec-draft-model" not in command and b"ngram-mod" in command  # n-grams stay on
        assert asyncio.run(texts(server, "Say hi.", temperature=0.0, max_tokens=8))[0]
        assert server.speculation_failed is None
    finally:
        server.terminate()
    assert "refused" in caplog.text


def test_llama_servers_own_refusal_drops_all_speculation_and_is_reported(monkeypatch):
    """Without thinktank's check, llama-server loads the draft, finds the vocabularies differ and serves with no
    speculation at all (n-grams included): the reason is read from its log."""
    server = LlamaServer(TINY, slots=1, ctx_per_slot=1024, threads=2, speculation=Speculation(draft=SMALL, ngram="ngram-mod"))
    monkeypatch.setattr(server, "_checked_draft", lambda model_path: resolve(SMALL))
    asyncio.run(server.start())
    try:
        assert server.speculation_failed is not None and "speculative decoding" in server.speculation_failed
        assert asyncio.run(texts(server, "Say hi.", temperature=0.0, max_tokens=8))[0]
    finally:
        server.terminate()
