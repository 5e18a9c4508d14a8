"""The verifiers of one run, shared by every query (and their worker pools with them).

Techniques reach them as `ctx.tools`; the grader uses the same instances. Each is
created on first use, so a math-only run never starts a sandbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thinktank.verifiers.python_sandbox import PythonSandbox
    from thinktank.verifiers.sql import SqlVerifier


class Toolbox:
    def __init__(self) -> None:
        self._sandbox: PythonSandbox | None = None
        self._sql: SqlVerifier | None = None

    @property
    def sandbox(self) -> PythonSandbox:
        if self._sandbox is None:
            from thinktank.verifiers.python_sandbox import PythonSandbox

            self._sandbox = PythonSandbox()
        return self._sandbox

    @property
    def sql(self) -> SqlVerifier:
        if self._sql is None:
            from thinktank.verifiers.sql import SqlVerifier

            self._sql = SqlVerifier()
        return self._sql
