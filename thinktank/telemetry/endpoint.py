"""Where traces go: the OTLP/HTTP endpoint from `--otlp` or the standard OTEL environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

from thinktank.exceptions import ConfigError


def resolve_endpoint(url: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The OTLP/HTTP traces URL: `url` (from --otlp), else $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is),
    else $OTEL_EXPORTER_OTLP_ENDPOINT; a base URL gets `/v1/traces` appended, as the OTLP spec says. None: export off."""
    env = os.environ if env is None else env
    if not url and env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        url = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        full = True
    else:
        url = url or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
        full = False
    if url is None:
        return None
    url = url.strip()
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"OTLP endpoint {url!r} is not an http(s) URL (e.g. http://localhost:4318)")
    if full or url.rstrip("/").endswith("/v1/traces"):
        return url
    return url.rstrip("/") + "/v1/traces"
