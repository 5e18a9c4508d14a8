"""What an OpenAI app asks of the final generation (tools, tool_choice, response_format, its own messages), and
the architectures that can honour it: those whose last step is one `generate` node, or `generate` then `vote`.

The tail `generate` runs as a `ClientGenerate`: the same calls with the client's fields added. Each candidate's
answer is what votes: its tool calls by name and canonical JSON arguments, or its JSON reply canonically dumped
(a malformed one casts no vote, so the other samples win); `Replies` keeps each candidate's tool calls and
reasoning for the response.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from thinktank._aio import gather_all
from thinktank.arch import Architecture, Node
from thinktank.engine.engine import Context
from thinktank.tasks.answers import extract
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, Technique
from thinktank.techniques.generate import Generate
from thinktank.techniques.vote import Vote
from thinktank.types import Completion, Message, ToolCall


@dataclass(frozen=True)
class ClientFields:
    """The request's fields for the final generation (None: not asked for)."""

    tools: tuple[dict[str, Any], ...] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    messages: list[Message] | None = None  # the client's own turns (tool use), instead of the folded prompt

    @property
    def asked(self) -> list[str]:
        names = ["tools", "tool_choice", "response_format", "parallel_tool_calls"]
        asked = [n for n in names if getattr(self, n) is not None]
        return [*asked, "tool messages"] if self.messages is not None else asked

    @property
    def wants_json(self) -> bool:
        return (self.response_format or {}).get("type") in ("json_object", "json_schema")


@dataclass(frozen=True)
class Reply:
    """What a candidate's message carries besides its text."""

    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None
    malformed: str | None = None  # why its tool calls or JSON could not be read
    finish_reason: str = "stop"


@dataclass
class Replies:
    """Each candidate's `Reply`, by (text, answer): what survives the copies that later layers make."""

    by_key: dict[tuple[str, str | None], Reply] = field(default_factory=dict)

    def get(self, candidate: Candidate | None) -> Reply | None:
        return None if candidate is None else self.by_key.get((candidate.text, candidate.answer))


def tail_generate(arch: Architecture) -> int | None:
    """The layer index of the `generate` whose samples are the answer (directly, or through one `vote`), else None."""

    def single_generate(layer: list[Node]) -> bool:
        only = layer[0].technique if len(layer) == 1 else None
        return isinstance(only, Generate) and not only.keep_previous

    last = len(arch.layers) - 1
    if single_generate(arch.layers[last]):
        return last
    vote_last = len(arch.layers[last]) == 1 and isinstance(arch.layers[last][0].technique, Vote)
    if vote_last and last >= 1 and single_generate(arch.layers[last - 1]):
        return last - 1
    return None


def describe(arch: Architecture) -> str:
    """The shape of an architecture's layers, for an error message: `generate -> rank -> fuse`."""
    return " -> ".join("+".join(type(n.technique).__name__.lower() for n in layer) for layer in arch.layers)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_WRAPPING = re.compile(r"^\s*(?:<tool_call>|```(?:json)?)\s*|\s*(?:</tool_call>|```)\s*$")


def calls_in_text(text: str, fields: ClientFields) -> tuple[ToolCall, ...]:
    """Tool calls a model wrote as its reply's whole text (`{"name": ..., "arguments": {...}}`, in Qwen/Hermes
    `<tool_call>` tags or a JSON fence) when the server did not parse them (small models often drop the tags, and
    a server then returns them as content); only calls of the request's tools, and never with tool_choice "none"."""
    names = {t["function"]["name"] for t in fields.tools or ()}
    if not names or fields.tool_choice == "none" or not text.strip():
        return ()
    try:
        found = json.loads(_WRAPPING.sub("", text))
    except ValueError:
        return ()
    calls = []
    for item in found if isinstance(found, list) else [found]:
        arguments = item.get("arguments", item.get("parameters")) if isinstance(item, dict) else None
        if not isinstance(item, dict) or item.get("name") not in names or not isinstance(arguments, dict):
            return ()
        calls.append(ToolCall(f"call_{uuid.uuid4().hex[:24]}", item["name"], json.dumps(arguments)))
    return tuple(calls)


def read_answer(task: TaskInput, completion: Completion, fields: ClientFields) -> tuple[str | None, str | None]:
    """(the answer that votes, why there is none when the reply is malformed)."""
    if completion.tool_calls:
        calls = []
        for call in completion.tool_calls:
            try:
                arguments = json.loads(call.arguments) if call.arguments.strip() else {}
            except ValueError as exc:
                return None, f"the arguments of tool call {call.name!r} are not JSON ({exc}): {call.arguments[:200]!r}"
            calls.append({"name": call.name, "arguments": arguments})
        return canonical({"tool_calls": calls}), None
    if fields.wants_json:
        try:
            return canonical(json.loads(completion.text)), None
        except ValueError as exc:
            return None, f"the reply is not the JSON response_format asked for ({exc}): {completion.text[:200]!r}"
    return extract(task, completion.text), None


class ClientGenerate(Technique):
    """A tail `generate` that makes the same calls with the client's tools / response_format / messages."""

    def __init__(self, generate: Generate, name: str, fields: ClientFields, replies: Replies) -> None:
        self.generate, self.name, self.fields, self.replies = generate, name, fields, replies
        self.models = generate.models

    def messages(self, task: TaskInput) -> list[Message] | None:
        if self.fields.messages is None:
            return None
        has_system = any(m["role"] in ("system", "developer") for m in self.fields.messages)
        own = [{"role": "system", "content": self.generate.system}] if self.generate.system and not has_system else []
        return [*own, *self.fields.messages]

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        f = self.fields
        messages = self.messages(task)

        async def sample(model: str) -> list[Candidate]:
            request = self.generate.request(task, model).with_(
                tools=f.tools, tool_choice=f.tool_choice, response_format=f.response_format
            )
            if messages is not None:
                request = request.with_(messages=messages)
            if f.parallel_tool_calls is not None:
                request = request.with_(extra_body={**request.extra_body, "parallel_tool_calls": f.parallel_tool_calls})
            out = []
            for c in await ctx.generate(request):
                if not c.tool_calls and (calls := calls_in_text(c.text, f)):
                    c = dataclasses.replace(c, text="", tool_calls=calls, finish_reason="tool_calls")
                answer, malformed = read_answer(task, c, f)
                self.replies.by_key.setdefault((c.text, answer), Reply(c.tool_calls, c.reasoning, malformed, c.finish_reason))
                out.append(Candidate(c.text, answer, model, self.name, c.usage, cached=c.cached))
            return out

        return [c for batch in await gather_all(sample(m) for m in self.models) for c in batch]


def honouring(arch: Architecture, fields: ClientFields, replies: Replies) -> Architecture | None:
    """`arch` with its tail generate honouring `fields`; None when its last step is not a generation."""
    index = tail_generate(arch)
    if index is None:
        return None
    (tail,) = arch.layers[index]
    assert isinstance(tail.technique, Generate)
    node = Node(tail.name, ClientGenerate(tail.technique, tail.name, fields, replies), tail.on_error)
    layers = [*arch.layers[:index], [node], *arch.layers[index + 1 :]]
    return Architecture(arch.name, layers, arch.spec)


def for_request(arch: Architecture, fields: ClientFields | None, *, streaming: bool) -> tuple[Architecture, Replies | None, bool]:
    """(the architecture to run, where its candidates' tool calls and reasoning are kept, whether the client's own
    messages go to the model). Without client fields a non-streamed run still keeps its replies' reasoning; a
    streamed one keeps its tail streaming delta by delta (its reasoning is then counted in usage, not returned)."""
    if fields is None and streaming:
        return arch, None, False
    replies = Replies()
    wrapped = honouring(arch, fields or ClientFields(), replies)
    if wrapped is None:  # only without fields: `mapping.client_fields` refuses them on such an architecture
        return arch, None, False
    return wrapped, replies, fields is not None and fields.messages is not None
