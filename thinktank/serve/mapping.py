"""How a chat-completions request maps onto an architecture run: its task input, budget and overrides.

Request options -> architecture (every internal generation call goes through the engine, which applies them):

- `model` names a served architecture (a preset or a YAML's `name:`); anything else is 404 `model_not_found`.
- `messages` become the one prompt techniques see (`TaskInput.prompt`): a single user message is the prompt
  as is; system/developer messages and earlier turns are folded in front of the last user message as text.
  The last non-system message must be the user's and content must be text (else 422).
- `max_tokens` / `max_completion_tokens` cap every internal generation call (a cap: never raises a node's own).
- `temperature`, `top_p`, `seed` replace the value of every internal call when given (omitted: the architecture's
  own); `stop` sequences are added to every call's own.
- `n` (1..16) returns the top-n candidates with distinct answers, best first; fewer when the architecture produced
  fewer (`thinktank.choices_available` says how many there were).
- A per-request budget: body field `thinktank: {"budget": {max_tokens, max_usd, max_calls, max_wall_s}}` and the
  headers `X-Thinktank-Budget-Tokens` / `X-Thinktank-Budget-Usd` (the stricter wins). A budget-cut answer is still
  200 with `finish_reason: "length"` and `thinktank.budget_cut: true`.
- `thinktank.kind` (text|code|sql|math), `entry_point` and `public_tests` describe the task for techniques that
  verify or vote by kind (default: text).
- `serve --corpus DIR`: every request's task carries the corpus (`TaskInput.corpus`, what `retrieve` reads) and is
  of kind `qa` unless the request names a kind; the ids of the passages read come back in `thinktank.passages`.
- `tools`, `tool_choice`, `parallel_tool_calls`, `response_format` and tool-use turns (assistant `tool_calls`,
  `tool` messages) go to the final generation of architectures that end in one `generate` (or `generate` + `vote`,
  which votes on tool calls / JSON by canonical value); with those, the client's messages go to the model as they
  are. Any other architecture answers 400 naming itself (`passthrough`).
- The fields of `wire.REFUSED` (logprobs, penalties, ...) and unknown fields are a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from thinktank.arch import Architecture
from thinktank.engine.budget import Budget
from thinktank.engine.engine import Overrides
from thinktank.serve.errors import ServeError
from thinktank.serve.passthrough import ClientFields, describe, tail_generate
from thinktank.serve.wire import ACCEPTED, HONOURED, REFUSED, ChatCompletionRequest, ChatMessage, NamedToolChoice
from thinktank.tasks.base import TaskInput
from thinktank.types import Message

#: the kind of a request answered over a served corpus when it names none
CORPUS_KIND = "qa"

BUDGET_HEADERS = {"x-thinktank-budget-tokens": "max_tokens", "x-thinktank-budget-usd": "max_usd"}


def message_text(message: ChatMessage) -> str:
    """A message's text; 422 for content the architectures cannot read (images, audio, ...)."""
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    if any(part.type != "text" for part in message.content):
        kinds = sorted({part.type for part in message.content} - {"text"})
        raise ServeError(
            f"only text content is supported, got {', '.join(kinds)}", 422, param="messages", code="unsupported_content"
        )
    return "".join(part.text or "" for part in message.content)


def overrides(body: ChatCompletionRequest) -> Overrides:
    stops = [body.stop] if isinstance(body.stop, str) else body.stop or []
    cap = min((t for t in (body.max_tokens, body.max_completion_tokens) if t is not None), default=None)
    return Overrides(max_tokens=cap, temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=tuple(stops))


def budget(body: ChatCompletionRequest, headers: Mapping[str, str]) -> Budget | None:
    """The body's budget, tightened by the budget headers."""
    limits: dict[str, Any] = body.options.budget.model_dump() if body.options.budget else {}
    for header, field in BUDGET_HEADERS.items():
        if header not in headers:
            continue
        try:
            value = int(headers[header]) if field == "max_tokens" else float(headers[header])
            if not value > 0:
                raise ValueError(value)
        except ValueError:
            raise ServeError(f"header {header} must be a positive number", 400, param=header, code="invalid_value") from None
        limits[field] = value if limits.get(field) is None else min(limits[field], value)
    return Budget(**limits) if any(v is not None for v in limits.values()) else None


def task_input(body: ChatCompletionRequest, request_id: str, *, corpus: str | None = None, tool_turns: bool = False) -> TaskInput:
    """The one prompt the techniques see, with the task options of the `thinktank` extension (and the served corpus).

    `tool_turns`: the messages go to the model as they are (tool use), so they may end in a tool result.
    """
    system = [message_text(m) for m in body.messages if m.role in ("system", "developer")]
    turns = [m for m in body.messages if m.role not in ("system", "developer")]
    if tool_turns and any(m.role == "user" for m in turns):
        while turns[-1].role != "user":
            turns = turns[:-1]
    if not turns or turns[-1].role != "user":
        raise ServeError(
            "the last message (after any system messages) must be the user's",
            422,
            param="messages",
            code="unsupported_messages",
        )
    prompt = message_text(turns[-1])
    if len(turns) > 1:
        history = "\n".join(f"{m.role.capitalize()}: {message_text(m)}" for m in turns[:-1])
        prompt = f"Conversation so far:\n{history}\n\n{prompt}"
    if system:
        prompt = "\n\n".join([*system, prompt])
    opts = body.options
    kind = CORPUS_KIND if corpus is not None and "kind" not in opts.model_fields_set else opts.kind
    return TaskInput(request_id, kind, prompt, entry_point=opts.entry_point, public_tests=tuple(opts.public_tests), corpus=corpus)


def check_fields(body: ChatCompletionRequest) -> None:
    """400 for a field no architecture honours (unless it asks for nothing) and for one thinktank does not know."""
    for name, value in (body.model_extra or {}).items():
        if name in ACCEPTED:
            continue
        if name in REFUSED:
            reason, neutral = REFUSED[name]
            if value is None or value in neutral:
                continue
            raise ServeError(f"`{name}` is not supported: {reason}", 400, param=name, code="unsupported_field")
        known = ", ".join(sorted(HONOURED | ACCEPTED))
        raise ServeError(f"unknown field `{name}`; thinktank serves: {known}", 400, param=name, code="unknown_field")


def _wire_message(message: ChatMessage) -> Message:
    out: Message = {"role": message.role, "content": message_text(message)}
    if message.tool_calls:
        out["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def client_fields(body: ChatCompletionRequest, arch: Architecture) -> ClientFields | None:
    """What the request asks of the final generation; 400 when `arch` cannot honour it. None: nothing asked."""
    tool_turns = any(m.role == "tool" or m.tool_calls for m in body.messages)
    fields = ClientFields(
        tools=tuple(t.model_dump(exclude_none=True) for t in body.tools) if body.tools is not None else None,
        tool_choice=body.tool_choice.model_dump() if isinstance(body.tool_choice, NamedToolChoice) else body.tool_choice,
        response_format=(
            body.response_format.model_dump(exclude_none=True, by_alias=True)
            if body.response_format is not None and body.response_format.is_json
            else None
        ),
        parallel_tool_calls=body.parallel_tool_calls,
        messages=[_wire_message(m) for m in body.messages] if body.tools is not None or tool_turns else None,
    )
    if not fields.asked:
        return None
    if tail_generate(arch) is None:
        raise ServeError(
            f"architecture {arch.name!r} ({describe(arch)}) cannot honour {', '.join(fields.asked)}: its last step is "
            "not a generation; these are served by architectures that end in one generate, or generate then vote",
            400,
            param=fields.asked[0].split()[0] if fields.asked[0] != "tool messages" else "messages",
            code="unsupported_by_architecture",
        )
    return fields
