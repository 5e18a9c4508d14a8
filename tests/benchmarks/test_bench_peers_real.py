"""bench_peers end to end on the real llama-server: thinktank's greedy, a peer in a subprocess, a missing peer.

The fake peer is a real subprocess speaking the drivers' protocol and calling the server itself, so the row's
server-counted tokens must equal what the server reported to it; the missing peer's rows say "not run" and the run
finishes; a second run resumes (nothing that ran runs again, the missing peer is retried).
"""

from __future__ import annotations

import json
import stat
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from .test_bench_peers import FAKE_DRIVER, bp

pytestmark = pytest.mark.integration


def wrapper_python(path: Path) -> Path:
    """A peer venv's `bin/python` that is this interpreter (pytest is its pinned 'peer distribution')."""
    path.parent.mkdir(parents=True)
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


async def test_peers_side_by_side_on_one_real_server(tmp_path: Path) -> None:
    peers = {
        "fake": bp.PeerSpec("fake", f"pytest=={version('pytest')}", "pytest", ("greedy",), driver_path=FAKE_DRIVER),
        "missing": bp.PeerSpec("missing", "missing-peer==1.0", "missing-peer", ("x",)),
    }
    wrapper_python(tmp_path / "peers" / "fake" / "bin" / "python")
    out = tmp_path / "results.jsonl"
    argv = ["--model", "smollm2-135m-instruct", "--tasks", "humaneval", "--limit", "2", "--max-tokens", "32",
            "--approaches", "fake:greedy,missing", "--peers-dir", str(tmp_path / "peers"), "--no-install",
            "--out", str(out)]  # fmt: skip
    table = await bp.main(argv, peers)

    rows = bp.Results(out).rows()
    greedy, fake, missing = (
        rows[("humaneval", "thinktank:single")],
        rows[("humaneval", "fake:greedy")],
        rows[("humaneval", "missing:x")],
    )
    assert greedy.status == fake.status == "ok" and greedy.n == fake.n == 2
    assert missing.status == "not run" and "not installed" in missing.reason
    reported = sum(p["reported"]["completion_tokens"] for p in fake.problems)
    assert 0 < fake.completion_tokens == reported  # the server's count is the peer's own, exactly
    assert greedy.completion_tokens == sum(p["reported"]["completion_tokens"] for p in greedy.problems)
    assert fake.prompt_tokens > 0.8 * greedy.prompt_tokens > 20  # slots erased: the same prompts evaluated again
    assert fake.wall_s > 0 and fake.version == "0.0.1"  # the driver's own word
    assert "| humaneval | missing:x | not run |" in table and "| humaneval | fake:greedy | " in table
    assert out.with_suffix(".md").read_text().count("| humaneval |") == 3

    lines = len(out.read_text().splitlines())
    await bp.main(argv, peers)  # resumes: only the missing peer is tried again
    new = [json.loads(line) for line in out.read_text().splitlines()[lines:]]
    assert [(r["approach"], r["status"]) for r in new] == [("missing:x", "not run")]
