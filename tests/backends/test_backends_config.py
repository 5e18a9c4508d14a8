"""The backends file (`--backends`): pools under the user's own names, validated with errors naming file:line."""

from __future__ import annotations

import asyncio
import textwrap
import time

import pytest
from fake_openai_server import FakeOpenAIServer, Reply

from thinktank.backends.config import load_backends
from thinktank.backends.pool import PoolBackend
from thinktank.exceptions import ConfigError
from thinktank.types import GenerationRequest
from thinktank.usage import PriceTable

GOOD = """\
models:
  coder:
    kind: vllm
    model: Qwen/Qwen2.5-Coder-7B-Instruct
    api_key_env: VLLM_KEY
    prices: {prompt_per_mtok: 0.1, completion_per_mtok: 0.3}
    endpoints:
      - {url: http://gpu1:8000/v1, slots: 16}
      - {url: http://gpu2:8000/v1/, slots: 8, api_key_env: GPU2_KEY, model: coder-7b}
  local:
    kind: llama.cpp
    endpoints:
      - url: http://127.0.0.1:8081/v1
        slots: 4
      - url: http://127.0.0.1:8082/v1
        slots: 2
  mini:
    model: gpt-4o-mini
    endpoints: [{url: https://api.openai.com/v1, api_key_env: OPENAI_KEY, slots: 32}]
health_interval_s: 0.5
"""
ENV = {"VLLM_KEY": "k1", "GPU2_KEY": "k2", "OPENAI_KEY": "sk-3"}


def write(tmp_path, text: str):
    path = tmp_path / "backends.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path, text: str, env: dict[str, str] | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_backends(path, environ=ENV if env is None else env)
    return str(caught.value).replace(str(path), "F")


async def test_a_good_file_gives_one_pool_per_model_with_its_kind_keys_and_prices(tmp_path) -> None:
    config = load_backends(write(tmp_path, GOOD), environ=ENV)
    assert config.names == ["coder", "local", "mini"] and "coder" in config and "other" not in config
    assert config.slots(["coder", "local", "qwen-pack"]) == 30
    prices = config.prices(PriceTable(prices={"mini": {"prompt_per_mtok": 0.15, "completion_per_mtok": 0.6}}))
    assert prices.cost("coder", 1_000_000, 1_000_000) == pytest.approx(0.4)
    assert prices.cost("mini", 1_000_000, 0) == pytest.approx(0.15)  # --prices wins over the file
    pools = config.build()
    assert all(isinstance(p, PoolBackend) for p in pools.values())
    coder, local, mini = pools["coder"], pools["local"], pools["mini"]
    assert [r.name for r in coder.replicas] == ["http://gpu1:8000/v1", "http://gpu2:8000/v1"]
    assert [r.model for r in coder.replicas] == ["Qwen/Qwen2.5-Coder-7B-Instruct", "coder-7b"]
    assert [r.slots for r in coder.replicas] == [16, 8] and coder.capabilities.max_concurrency == 24
    assert coder.capabilities.supports_native_n and not coder.capabilities.seeded_native_n
    # llama.cpp: seeded samples share a call of at most the smallest replica's slots, per-choice usage from a stream
    assert local.capabilities.seeded_native_n and local.capabilities.max_n_per_call == 2
    assert all(r.backend.count_choice_tokens for r in local.replicas)  # type: ignore[attr-defined]
    assert [r.model for r in local.replicas] == ["local", "local"]
    assert mini.replicas[0].model == "gpt-4o-mini" and mini.health_interval_s == 0.5
    assert all(r.backend.retry_policy.max_retries == 0 for p in pools.values() for r in p.replicas)  # type: ignore[attr-defined]
    for pool in pools.values():
        await pool.aclose()


async def test_the_pool_sends_each_endpoints_key_and_model_name_and_checks_health_where_the_kind_says(tmp_path) -> None:
    with FakeOpenAIServer() as one, FakeOpenAIServer() as two:
        path = write(
            tmp_path,
            f"""\
            models:
              mine:
                model: served-name
                api_key_env: KEY_ONE
                endpoints:
                  - {{url: {one.base_url}, slots: 1}}
                  - {{url: {two.base_url}, slots: 1, api_key_env: KEY_TWO, model: other-name}}
            health_interval_s: 0.01
        """,
        )
        pool = load_backends(path, environ={"KEY_ONE": "secret-1", "KEY_TWO": "secret-2"}).build()["mine"]
        async with pool:
            for i in range(12):
                await pool.generate(GenerationRequest.from_prompt(f"question {i}", "mine"))
            one.default = Reply(status=502)  # one goes out: its health is read from /v1/models (kind openai)
            for i in range(12):
                await pool.generate(GenerationRequest.from_prompt(f"question {i}", "mine"))
            assert not pool.replicas[0].up
            one.default = Reply()
            deadline = time.monotonic() + 10
            while not pool.replicas[0].up:  # back in once its health answers
                assert time.monotonic() < deadline, pool.replicas[0].reason
                await asyncio.sleep(0.01)
    assert {r.headers["authorization"] for r in one.requests} == {"Bearer secret-1"}
    assert {r.headers["authorization"] for r in two.requests} == {"Bearer secret-2"}
    assert {r.body["model"] for r in one.chat_requests} == {"served-name"}
    assert {r.body["model"] for r in two.chat_requests} == {"other-name"}
    assert any(r.method == "GET" and r.path == "/v1/models" for r in one.requests)


def test_malformed_yaml_names_the_file_and_line(tmp_path) -> None:
    message = error_of(tmp_path, "models:\n  m:\n    endpoints: [{url: http://a/v1\n")
    assert message.startswith("F: malformed YAML") and "line 4" in message


def test_an_unknown_key_names_its_line_and_the_keys_allowed_there(tmp_path) -> None:
    message = error_of(
        tmp_path,
        """\
        models:
          m:
            endpoints:
              - url: http://a/v1
                slot: 4
    """,
    )
    assert message == (
        "F:5: models.m.endpoints[0].slot: unknown key 'slot'; allowed here: url, slots, api_key_env, model, health_url"
    )
    message = error_of(tmp_path, "models:\n  m:\n    endpoints: [{url: http://a/v1}]\n    weight: 3\nretries: 2\n")
    assert "F:4: models.m.weight: unknown key 'weight'; allowed here: endpoints, kind, model" in message
    assert "F:5: retries: unknown key 'retries'; allowed here: models, health_interval_s" in message


def test_wrong_values_are_located(tmp_path) -> None:
    message = error_of(
        tmp_path,
        """\
        models:
          m:
            kind: tgi
            endpoints:
              - {url: "gpu1:8000/v1", slots: many}
    """,
    )
    assert "F:3: models.m.kind: Input should be 'openai', 'vllm', 'sglang' or 'llama.cpp'" in message
    assert "F:5: models.m.endpoints[0].url: Value error, an http:// or https:// URL expected, got 'gpu1:8000/v1'" in message
    assert "F:5: models.m.endpoints[0].slots: Input should be a valid integer" in message
    assert "F:3: models.m.endpoints: Field required" in error_of(tmp_path, "models:\n  m:\n    kind: vllm\n")
    assert "F:1: models: Dictionary should have at least 1 item" in error_of(tmp_path, "models: {}\n")
    assert "F: a backends file is a mapping with a `models:` key" in error_of(tmp_path, "")
    assert "F:4: models.m.endpoints[1].url: http://a/v1 is listed twice" in error_of(
        tmp_path, "models:\n  m:\n    endpoints: [{url: http://a/v1},\n                {url: http://a/v1}]\n"
    )


def test_an_api_key_variable_that_is_not_set_is_located(tmp_path) -> None:
    message = error_of(tmp_path, GOOD, env={"VLLM_KEY": "k1", "OPENAI_KEY": ""})
    assert message.splitlines() == [
        "F:9: $GPU2_KEY (the API key for http://gpu2:8000/v1) is not set",
        "F:19: $OPENAI_KEY (the API key for https://api.openai.com/v1) is not set",
    ]
    assert "F:5: $VLLM_KEY (the API key for http://gpu1:8000/v1) is not set" in error_of(tmp_path, GOOD, env={})


def test_a_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read backends file .*nope.yaml: No such file"):
        load_backends(tmp_path / "nope.yaml")
