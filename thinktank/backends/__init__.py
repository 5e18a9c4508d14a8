"""Backends: where completions come from. One contract, `Backend.generate`."""

from thinktank.backends.base import Backend, StreamEvent
from thinktank.backends.openai_compat import OpenAICompatBackend
from thinktank.backends.scripted import ScriptedBackend

__all__ = ["Backend", "OpenAICompatBackend", "ScriptedBackend", "StreamEvent"]
