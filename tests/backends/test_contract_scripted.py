"""ScriptedBackend obeys the backend contract, with and without native `n`."""

from __future__ import annotations

import pytest

from backends.contract import BackendContract
from thinktank.backends import ScriptedBackend
from thinktank.exceptions import BackendError, BackendStatusError, BackendTimeout, BackendUnreachable
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
