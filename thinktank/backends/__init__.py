"""Backends: where completions come from. One contract, `Backend.generate`."""

from thinktank.backends.base import Backend, Capabilities, StreamEvent
from thinktank.backends.openai_compat import OpenAICompatBackend
from thinktank.backends.pool import PoolBackend, Replica
from thinktank.backends.retry import RetryPolicy
from thinktank.backends.scripted import ScriptedBackend

__all__ = [
    "Backend",
    "Capabilities",
    "OpenAICompatBackend",
    "PoolBackend",
    "Replica",
    "RetryPolicy",
    "ScriptedBackend",
    "StreamEvent",
]
