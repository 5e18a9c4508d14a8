"""`thinktank ui`: a local, read-only web dashboard over a runs directory (needs the `thinktank[serve]` extra).

    from thinktank.ui import UiSettings, create_app
    app = create_app(UiSettings(runs=Path("runs")))

`data` reads runs (eval results DBs, search reports) through the eval and search modules' own code, `pages` renders
them as small HTML pages (Chart.js, vendored in `static/` with its license, draws the Pareto front), `app` routes.
"""

from thinktank.exceptions import ConfigError

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ConfigError(
        f"`thinktank ui` needs FastAPI and uvicorn ({exc.name} is missing): pip install 'thinktank[serve]'"
    ) from exc

from thinktank.ui.app import UiSettings, create_app

__all__ = ["UiSettings", "create_app"]
