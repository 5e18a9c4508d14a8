"""`thinktank serve`: architectures behind an OpenAI-compatible API (needs the `thinktank[serve]` extra).

    from thinktank.serve import ServeSettings, create_app
    app = create_app(engine, [architecture], ServeSettings(api_key="..."))

Layout, along vLLM's lines: `wire` (the pydantic request/response/error shapes), `mapping` (request ->
task input, budget, overrides), `responses` (result -> chat completion), `errors` (`ServeError`, error
-> status and OpenAI error body), `service` (one request's run: limits, timeout, metrics), `streaming`
(SSE), `limits`, `metrics`, `routes` (thin endpoints) and `app` (wiring, lifespan, error handlers).
"""

from thinktank.exceptions import ConfigError

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ConfigError(
        f"`thinktank serve` needs FastAPI and uvicorn ({exc.name} is missing): pip install 'thinktank[serve]'"
    ) from exc

from thinktank.serve.app import create_app
from thinktank.serve.service import ChatService, ServeSettings

__all__ = ["ChatService", "ServeSettings", "create_app"]
