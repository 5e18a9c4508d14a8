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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from thinktank.engine.budget import Budget
from thinktank.engine.engine import Overrides
from thinktank.serve.errors import ServeError
from thinktank.serve.wire import ChatCompletionRequest, ChatMessage
from thinktank.tasks.base import TaskInput

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


def task_input(body: ChatCompletionRequest, request_id: str, *, corpus: str | None = None) -> TaskInput:
    """The one prompt the techniques see, with the task options of the `thinktank` extension (and the served corpus)."""
    system = [message_text(m) for m in body.messages if m.role in ("system", "developer")]
    turns = [m for m in body.messages if m.role not in ("system", "developer")]
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
