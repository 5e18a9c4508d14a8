"""Ctrl-C ends a command as interrupted (exit 130), whatever the cancelled code did with the cancellation."""

import signal
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from thinktank.cli import run_async

    async def work(swallow):
        print("ready", flush=True)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if swallow:
                return "finished anyway"  # e.g. a runner that records its cancelled calls and returns
            raise
        return "slept"

    try:
        print(run_async(work(sys.argv[1] == "swallow")), flush=True)
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


@pytest.mark.parametrize("mode", ["swallow", "propagate"])
def test_sigint_always_exits_130(mode):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "finished anyway" not in out


def test_without_a_signal_the_result_comes_back():
    from thinktank.cli import run_async

    async def answer():
        return 42

    assert run_async(answer()) == 42
