"""The test kit ships inside the package, and thinktank itself never imports it (nor pytest)."""

from __future__ import annotations

import subprocess
import sys

import thinktank.testing


def test_importing_thinktank_does_not_import_the_kit_or_pytest() -> None:
    code = (
        "import sys, thinktank, thinktank.backends, thinktank.engine, thinktank.runtime;"
        "leaked = sorted(m for m in sys.modules if m == 'pytest' or m.startswith('thinktank.testing'));"
        "assert not leaked, leaked"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_kit_exports_what_extenders_need() -> None:
    assert {"BackendContract", "FakeOpenAIServer", "Reply", "ScriptedBackend"} <= set(thinktank.testing.__all__)


def test_old_test_imports_keep_working() -> None:
    import fake_openai_server

    assert fake_openai_server.FakeOpenAIServer is thinktank.testing.FakeOpenAIServer
