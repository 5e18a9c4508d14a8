"""How an architecture's result becomes a chat completion: the top-n distinct answers, finish reasons, usage.

`usage` is the sum over every internal call (cache hits count as zero tokens); the extension field
`thinktank` carries calls, $, cache hits, wall latency, budget cut and a per-node breakdown.
Streaming (`streaming`) sends the same choices and extension as chunks.
"""

from __future__ import annotations

import uuid

from thinktank.arch import ArchResult
from thinktank.serve.errors import ServeError
from thinktank.serve.passthrough import Replies, Reply
from thinktank.serve.wire import (
    ChatCompletion,
    ChoiceOut,
    Extension,
    FunctionCall,
    Message,
    NodeUsage,
    ToolCallOut,
    UsageOut,
)
from thinktank.techniques.base import Candidate


def top_choices(result: ArchResult, n: int) -> list[Candidate]:
    """The first `n` candidates with distinct answers (the architecture orders them best first)."""
    seen: set[str] = set()
    chosen: list[Candidate] = []
    for candidate in result.candidates:
        key = (candidate.answer if candidate.answer is not None else candidate.text).strip()
        if key not in seen:
            seen.add(key)
            chosen.append(candidate)
    return chosen[:n]


def answer_choices(result: ArchResult, n: int, replies: Replies | None) -> list[Candidate | None]:
    """The top-n choices to answer with, passing over candidates whose tool calls or JSON are malformed; 502 with
    the reason when every candidate's is (a reply the token limit cut is answered as it is, `length`)."""
    chosen = top_choices(result, len(result.candidates) + 1)
    if replies is not None:
        readable = [c for c in chosen if not _malformed(replies.get(c))]
        if chosen and not readable:
            reason = replies.get(chosen[0]).malformed  # type: ignore[union-attr]
            raise ServeError(f"the model's reply is malformed: {reason}", 502, type="server_error", code="malformed_reply")
        chosen = readable
    return [*chosen[:n]] or [None]


def _malformed(reply: Reply | None) -> bool:
    return reply is not None and reply.malformed is not None and reply.finish_reason != "length"


def message(candidate: Candidate | None, replies: Replies | None) -> Message:
    """A choice's message: its text, the tool calls it makes (content null when it only calls) and its reasoning."""
    reply = replies.get(candidate) if replies is not None else None
    text = candidate.text if candidate else ""
    if reply is None:
        return Message(content=text)
    calls = [
        ToolCallOut(
            id=call.id or f"call_{uuid.uuid4().hex[:24]}", function=FunctionCall(name=call.name, arguments=call.arguments)
        )
        for call in reply.tool_calls
    ]
    return Message(content=text or (None if calls else ""), tool_calls=calls or None, reasoning_content=reply.reasoning)


def distinct_count(result: ArchResult) -> int:
    return len(top_choices(result, len(result.candidates) + 1))


def finish_reason(result: ArchResult, candidate: Candidate | None, replies: Replies | None = None) -> str:
    """ "length" when the budget cut the run; "tool_calls" when the candidate calls tools; else the reason of the
    calls of the candidate's node when they agree."""
    if result.budget_cut or candidate is None:
        return "length"
    reply = replies.get(candidate) if replies is not None else None
    if reply is not None:
        return "tool_calls" if reply.tool_calls else reply.finish_reason
    node = next((n for n in result.trace.walk() if n.name == candidate.node), None)
    reasons = {r for call in (node.calls if node else []) for r in call.finish_reasons}
    return reasons.pop() if len(reasons) == 1 else "stop"


def check_answer(result: ArchResult) -> ArchResult:
    """A result to answer with: one with an answer, or one the budget cut (answered with what there is)."""
    if result.answer is None and not result.budget_cut:
        raise ServeError(f"the architecture produced no answer: {result.error}", 500, type="server_error", code="no_answer")
    return result


def usage_out(result: ArchResult) -> UsageOut:
    u = result.usage
    return UsageOut(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, total_tokens=u.total_tokens)


def passages_used(result: ArchResult) -> list[str] | None:
    """The passage ids the reader was shown: the `passages` notes of the last trace node with any (`read`,
    `permute`, after any retrieval or reranking step); None when nothing was retrieved."""
    found = [node.notes["passages"] for node in result.trace.walk() if node.notes.get("passages")]
    return [str(p) for p in found[-1]] if found else None


def extension(arch_name: str, result: ArchResult, latency_s: float) -> Extension:
    u = result.usage
    nodes = [
        NodeUsage(
            name=child.name,
            calls=(cu := child.usage).calls,
            prompt_tokens=cu.prompt_tokens,
            completion_tokens=cu.completion_tokens,
            cost_usd=cu.cost_usd,
            cache_hits=cu.cache_hits,
        )
        for child in result.trace.children
    ]
    return Extension(
        architecture=arch_name,
        calls=u.calls,
        cost_usd=u.cost_usd,
        cache_hits=u.cache_hits,
        latency_s=round(latency_s, 4),
        budget_cut=result.budget_cut,
        choices_available=distinct_count(result),
        error=result.error,
        nodes=nodes,
        passages=passages_used(result),
    )


def completion(
    request_id: str, created: int, arch_name: str, result: ArchResult, n: int, latency_s: float,
    replies: Replies | None = None,
) -> ChatCompletion:  # fmt: skip
    chosen = answer_choices(result, n, replies)
    choices = [
        ChoiceOut(index=i, message=message(c, replies), finish_reason=finish_reason(result, c, replies))
        for i, c in enumerate(chosen)
    ]
    return ChatCompletion(
        id=request_id,
        created=created,
        model=arch_name,
        choices=choices,
        usage=usage_out(result),
        thinktank=extension(arch_name, result, latency_s),
    )
