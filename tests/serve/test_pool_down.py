"""`thinktank serve` over a backend pool whose every replica is down: a 503 naming each replica and why."""

from __future__ import annotations

import openai
import pytest
from fake_openai_server import unused_port

from thinktank.arch import build_architecture
from thinktank.backends import OpenAICompatBackend
from thinktank.backends.pool import PoolBackend, Replica, http_health
from thinktank.backends.retry import RetryPolicy
from thinktank.engine import Engine
from thinktank.serve import ServeSettings, create_app

from .conftest import SPECS
from .live import LiveServer

USER = [{"role": "user", "content": "hello"}]


def test_every_replica_of_a_pool_down_is_a_503_naming_them():
    urls = [f"http://127.0.0.1:{unused_port()}/v1" for _ in range(2)]
    replicas = [Replica(OpenAICompatBackend(u, max_retries=0), 2, health=http_health(f"{u}/models")) for u in urls]
    pool = PoolBackend("pooled", replicas, retry_policy=RetryPolicy(max_retries=1, backoff_base_s=0.001), health_interval_s=60)
    archs = [build_architecture(SPECS["single"], ["pooled"])]
    live = LiveServer(create_app(Engine({"pooled": pool}), archs, ServeSettings(use_cache=False))).start()
    try:
        with pytest.raises(openai.InternalServerError) as info:
            live.client().chat.completions.create(model="single", messages=USER)
        assert info.value.status_code == 503 and info.value.body["code"] == "backend_unavailable"
        message = info.value.body["message"]
        assert "every replica of pool pooled is down" in message
        for url in urls:
            assert f"{url}: BackendUnreachable: cannot reach backend at {url}/chat/completions" in message
    finally:
        live.stop()
