"""A test kit for extenders, like `optuna.testing`: what thinktank's own tests use, for your backend or technique.

    from thinktank.testing import BackendContract, FakeOpenAIServer, ScriptedBackend, TechniqueContract

`BackendContract` and `TechniqueContract` are pytest classes to subclass; `FakeOpenAIServer` is a scriptable
OpenAI-compatible server on loopback (streaming too); `ScriptedBackend` answers from a
Python function without sockets. thinktank itself never imports this package, so pytest is
needed only where these tests run.
"""

from thinktank.backends.scripted import ScriptedBackend
from thinktank.testing.backend_contract import BackendContract, check_response, collect_stream
from thinktank.testing.fake_openai_server import FakeOpenAIServer, RecordedRequest, Reply, unused_port
from thinktank.testing.technique_contract import TechniqueContract

__all__ = [
    "BackendContract",
    "FakeOpenAIServer",
    "RecordedRequest",
    "Reply",
    "ScriptedBackend",
    "TechniqueContract",
    "check_response",
    "collect_stream",
    "unused_port",
]
