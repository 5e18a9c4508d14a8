"""ScriptedBackend obeys the backend contract, with and without native `n`."""

from __future__ import annotations

import pytest

from thinktank.backends import Capabilities, ScriptedBackend
from thinktank.exceptions import BackendError, BackendStatusError, BackendTimeout, BackendUnreachable
from thinktank.testing import BackendContract
from thinktank.types import GenerationRequest


def reply(request: GenerationRequest, index: int) -> str:
    return f"reply {index} to {request.messages[-1]['content']}"


class TestScriptedBackendContract(BackendContract):
    @pytest.fixture(params=[False, True], ids=["fan-out", "native-n"])
    def backend(self, request: pytest.FixtureRequest) -> ScriptedBackend:
        return ScriptedBackend(reply, supports_native_n=request.param)

    @pytest.fixture(
        params=[
            BackendUnreachable("down", "scripted"),
            BackendTimeout("slow", "scripted"),
            BackendStatusError("overloaded", 503, "scripted"),
        ],
        ids=["unreachable", "timeout", "503"],
    )
    def broken_backend(self, request: pytest.FixtureRequest) -> ScriptedBackend:
        error: BackendError = request.param

        def fail(request: GenerationRequest, index: int) -> str:
            raise error

        return ScriptedBackend(fail)


def test_a_capability_declared_the_old_way_is_refused() -> None:
    with pytest.raises(TypeError, match=r"max_n_per_call, seeded_native_n as class attributes.*Capabilities\(\.\.\.\)"):

        class OldStyle(ScriptedBackend):
            seeded_native_n = True
            max_n_per_call = 3


def test_capabilities_come_from_the_constructor() -> None:
    backend = ScriptedBackend(reply, max_concurrency=3, supports_native_n=True, seeded_native_n=True, max_n_per_call=4)
    assert backend.capabilities == Capabilities(3, True, True, 4)
    assert (backend.capabilities.max_concurrency, backend.capabilities.max_n_per_call) == (3, 4)
