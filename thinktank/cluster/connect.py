"""Joining a Ray cluster, with the checks Ray does not make: a fast error for an address nobody listens on, and
one probe per node comparing its thinktank (version and source digest), Ray and Python with the driver's.

Ray compares its own and Python's versions between the driver and the head when it connects; a worker node
that runs another thinktank would only show up as rows that differ, so the probe refuses it up front.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinktank.cluster._ray import import_ray
from thinktank.exceptions import ClusterError, ConfigError

#: how long a TCP connect to the head may take before the address counts as unreachable
CONNECT_TIMEOUT_S = 3.0
#: how long the per-node probe may take (a node starts a worker process for it)
PROBE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class NodeFacts:
    """What must be the same on the driver and on every node for a run's rows to mean the same thing."""

    thinktank: str
    source: str  # a digest of thinktank's own files: two checkouts of one version can still differ
    ray: str
    python: str
    host: str = ""

    def differences(self, other: NodeFacts) -> list[str]:
        out = []
        for name in ("thinktank", "source", "ray", "python"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                out.append(f"{name} {theirs} (driver: {mine})")
        return out


def source_digest() -> str:
    """sha256 over thinktank's .py and .yaml files (relative path + content), first 12 hex digits."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def local_facts() -> NodeFacts:
    from thinktank.version import __version__

    ray = import_ray()
    return NodeFacts(__version__, source_digest(), ray.__version__, platform.python_version(), socket.gethostname())


@dataclass(frozen=True)
class Address:
    """`auto` (the cluster `ray start` left on this machine, or $RAY_ADDRESS), `local` (a throwaway one-node cluster in
    this process), or `[ray://]host:port` of a head node."""

    raw: str
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> Address:
        text = text.strip()
        if text in ("auto", "local"):
            return cls(text)
        rest = text.removeprefix("ray://")
        host, sep, port = rest.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--ray {text!r}: expected auto, local, or HOST:PORT of a Ray head node (e.g. 10.0.0.5:6379)")
        return cls(text, host.strip("[]"), int(port))

    def check_reachable(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """A TCP connect to the head: an address nobody listens on fails in seconds, not after Ray's own retries."""
        if self.host is None or self.port is None:
            return
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout_s):
                pass
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise ClusterError(
                f"cannot reach the Ray head at {self.host}:{self.port} ({reason}); start one with"
                f" `ray start --head --port={self.port}` there, or check the address"
            ) from exc


def init(address: Address) -> None:
    """`ray.init` for the address, with Ray's connection and version errors turned into ClusterError."""
    ray = import_ray()
    address.check_reachable()
    kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
    if address.raw == "local":
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a throwaway cluster reports nothing unless asked to
        kwargs["include_dashboard"] = False
    else:
        kwargs["address"] = address.raw
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        if address.raw == "auto":
            hint = "start one with `ray start --head`, or pass its HOST:PORT"
        else:  # the head answers TCP, so: not a Ray head, another Ray version, or a token it does not accept
            hint = "is it a Ray head of the driver's Ray version, and does this machine have its token (RAY_AUTH_TOKEN)?"
        reason = str(exc) or str(exc.__cause__ or exc.__context__ or "") or type(exc).__name__
        raise ClusterError(f"cannot join the Ray cluster at --ray {address.raw}: {reason.strip()}; {hint}") from exc
    except RuntimeError as exc:
        if "version" in str(exc).lower():  # Ray's own driver/cluster check of the Ray and Python versions
            raise ClusterError(f"the Ray cluster at --ray {address.raw} runs another Ray or Python: {exc}") from exc
        raise


def probe_nodes(timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, NodeFacts]:
    """Each alive node's facts, from a zero-CPU task pinned to it (node id -> facts)."""
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    facts = ray.remote(num_cpus=0, max_retries=0)(local_facts)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = [facts.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote() for node in nodes]
    try:
        return dict(zip(nodes, ray.get(refs, timeout=timeout_s), strict=True))
    except ray.exceptions.GetTimeoutError as exc:
        raise ClusterError(f"the cluster's nodes did not answer a probe within {timeout_s:.0f}s") from exc
    except ray.exceptions.RayTaskError as exc:  # e.g. thinktank is not installed on a node
        raise ClusterError(f"a node could not run thinktank: {exc}") from exc


def check_versions(driver: NodeFacts, nodes: dict[str, NodeFacts]) -> None:
    bad = [
        f"node {node[:8]} on {facts.host}: {'; '.join(d)}" for node, facts in nodes.items() if (d := driver.differences(facts))
    ]
    if bad:
        raise ClusterError(
            "every node must run the driver's thinktank, Ray and Python; install the same version there: " + " · ".join(bad)
        )


@contextlib.contextmanager
def connected(address: str) -> Iterator[dict[str, NodeFacts]]:
    """Join the cluster (checked as above) for the block; yields the alive nodes' facts; disconnects after."""
    ray = import_ray()
    parsed = Address.parse(address)
    init(parsed)
    try:
        nodes = probe_nodes()
        check_versions(local_facts(), nodes)
        yield nodes
    finally:
        ray.shutdown()
