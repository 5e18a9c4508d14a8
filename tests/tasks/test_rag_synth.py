"""rag-synth: seeded invented-world retrieval QA; gold passages hold the answers, distractors share their names."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.verifiers import unprivileged
from thinktank.eval.grading import Grader
from thinktank.exceptions import ConfigError, TaskDataError
from thinktank.kinds.qa import corpus_ids
from thinktank.tasks.base import Problem
from thinktank.tasks.rag_synth import DEFAULT_N, POSITIONS, VERSION, RagSynthPositionedTask, RagSynthTask, gold_position
from thinktank.tasks.registry import get_task, load_problems
from thinktank.verifiers.qa import normalize_answer


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def passages(path: str | None) -> list[dict]:
    assert path is not None
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def by_id(problem: Problem) -> dict[str, dict]:
    return {p["id"]: p for p in passages(problem.input.corpus)}


def words(text: str) -> str:
    return f" {normalize_answer(text)} "  # padded, so `in` matches whole words only


def snapshot(problems: list[Problem]) -> list[tuple]:
    return [(p.id, p.input.prompt, p.hidden.answer, p.hidden.aliases, p.hidden.gold_passages) for p in problems]


def test_a_seed_gives_the_same_problems_and_corpus_and_another_seed_others(cache: Path) -> None:
    first = RagSynthTask(seed=3).load()
    corpus = Path(first[0].input.corpus or "").read_bytes()
    assert snapshot(first) == snapshot(RagSynthTask(seed=3).load())
    assert Path(first[0].input.corpus or "").read_bytes() == corpus
    other = RagSynthTask(seed=4).load()
    assert other[0].input.corpus != first[0].input.corpus
    assert len({p.input.prompt for p in first} & {p.input.prompt for p in other}) <= 3  # invented names rarely repeat


def test_the_default_is_over_a_hundred_questions_over_one_cached_corpus(cache: Path) -> None:
    problems = get_task("rag-synth").load()
    assert len(problems) == DEFAULT_N >= 100
    assert {p.input.corpus for p in problems} == {
        str(cache / "tasks" / "rag-synth" / f"v{VERSION}-s0-n{DEFAULT_N}" / "corpus.jsonl")
    }
    assert all(p.kind == "qa" and p.input.prompt.endswith("?") and "\n" not in p.input.prompt for p in problems)
    assert len({p.id for p in problems}) == len({p.input.prompt for p in problems}) == DEFAULT_N
    assert Counter(p.input.meta["hops"] for p in problems) == {1: DEFAULT_N // 2, 2: DEFAULT_N // 2}
    assert len({p.input.prompt.split(" ")[2] for p in problems}) >= 4  # several question shapes
    assert [p.id for p in load_problems("rag-synth", limit=20)] == [p.id for p in problems[:20]]
    assert len(load_problems("rag-synth", limit=30, offset=DEFAULT_N)) == 30  # a slice past the default grows the world


def test_every_answer_is_in_its_last_gold_passage_and_every_gold_id_in_the_corpus(cache: Path) -> None:
    problems = RagSynthTask(seed=1).load()
    corpus = by_id(problems[0])
    assert set(corpus) == corpus_ids(problems[0].input.corpus or "")  # the kind reads the ids the task wrote
    assert all(set(p) <= {"id", "text", "title"} and p["text"] and p["title"] for p in corpus.values())
    for problem in problems:
        assert problem.hidden.gold_passages and set(problem.hidden.gold_passages) <= set(corpus)
        assert words(problem.hidden.answer) in words(corpus[problem.hidden.gold_passages[-1]]["text"]), problem.id
        assert words(problem.hidden.answer) not in words(problem.input.prompt)


def test_two_hop_questions_need_both_gold_passages(cache: Path) -> None:
    problems = [p for p in RagSynthTask(seed=2).load() if p.input.meta["hops"] == 2]
    corpus = by_id(problems[0])
    for problem in problems:
        bridge, answer = (corpus[i] for i in problem.hidden.gold_passages)
        assert bridge["id"] != answer["id"]
        assert words(bridge["title"]) in words(problem.input.prompt)  # the question names the first hop...
        assert words(problem.hidden.answer) not in words(bridge["text"])  # ...which does not hold the answer
        link = words(answer["title"].removeprefix("The "))
        assert link in words(bridge["text"]) and link not in words(problem.input.prompt)  # only the first hop leads on


def test_distractors_share_names_with_the_gold_passages(cache: Path) -> None:
    problems = RagSynthTask(seed=5).load()
    corpus = by_id(problems[0])
    for problem in problems:
        gold = corpus[problem.hidden.gold_passages[0]]
        name_words = set(normalize_answer(gold["title"].removeprefix("The ")).split())
        sharing = [
            p
            for i, p in corpus.items()
            if i not in problem.hidden.gold_passages and name_words & set(normalize_answer(p["text"]).split())
        ]
        assert len(sharing) >= 2, (problem.id, gold["title"])
        # and the hard ones give the same kind of fact with another value: the answer is not in them
        assert any(words(problem.hidden.answer) not in words(p["text"]) for p in sharing)
    near = [
        p["title"]
        for p in corpus.values()
        if p["title"].split(" ")[0] == corpus[problems[0].hidden.gold_passages[0]]["title"].split(" ")[0]
    ]
    assert len(near) >= 2  # "Velmora Works" and "Velmora Workshop"


async def test_the_grader_accepts_each_answer_and_its_aliases(cache: Path) -> None:
    grader = Grader()
    problems = RagSynthTask(n=40, seed=6).load()
    for problem in problems:
        assert (await grader.grade(problem, f"{problem.hidden.answer} [{problem.hidden.gold_passages[-1]}]")).passed
        for alias in problem.hidden.aliases:
            assert (await grader.grade(problem, alias)).passed
    assert any(p.hidden.aliases for p in problems)
    wrong = next(p for p in problems if p.input.prompt.startswith("In which year"))
    assert not (await grader.grade(wrong, str(int(wrong.hidden.answer) + 1))).passed


def test_the_positioned_variant_cycles_the_gold_position_over_five_passage_corpora(cache: Path) -> None:
    base = RagSynthTask(seed=7).load(limit=30)
    positioned = load_problems("rag-synth-positioned", seed=7, limit=30)  # the default n, as the base task
    assert len(positioned) == 30
    assert [(p.input.prompt, p.hidden) for p in positioned] == [(p.input.prompt, p.hidden) for p in base]
    assert [gold_position(p) for p in positioned] == [i % POSITIONS for i in range(30)]
    full = by_id(base[0])
    for problem in positioned:
        own = passages(problem.input.corpus)
        assert len(own) == POSITIONS and len({p["id"] for p in own}) == POSITIONS
        assert set(problem.hidden.gold_passages) <= {p["id"] for p in own}
        assert all(full[p["id"]] == p for p in own)  # the same passages (and ids) as the shared corpus
        assert "position" not in json.dumps(problem.input.meta) and set(problem.input.meta) == {"hops"}
    assert len({p.input.corpus for p in positioned}) == 30


def test_the_positioned_file_name_does_not_tell_the_position(cache: Path) -> None:
    problems = RagSynthPositionedTask(n=10, seed=8).load()
    names = [Path(p.input.corpus or "").stem for p in problems]
    assert all(len(n) == 16 and int(n, 16) >= 0 for n in names)  # a content hash, not the index
    assert all(f"q{i:04d}" not in n for i, n in enumerate(names))


def test_gold_position_reports_a_corpus_it_cannot_use(cache: Path, tmp_path: Path) -> None:
    problem = RagSynthPositionedTask(n=2, seed=9).load()[0]
    Path(problem.input.corpus or "").write_text('{"id": "p9999", "text": "x"}\n')
    with pytest.raises(TaskDataError, match="is not in"):
        gold_position(problem)
    Path(problem.input.corpus or "").write_text("not json\n")
    with pytest.raises(TaskDataError, match="cannot read the passage ids"):
        gold_position(problem)
    assert RagSynthPositionedTask(n=2, seed=9).load()[0].input.corpus == problem.input.corpus  # rewritten when damaged
    assert gold_position(RagSynthPositionedTask(n=2, seed=9).load()[0]) == 0


def test_a_cached_corpus_is_written_once_and_rewritten_only_when_it_differs(cache: Path) -> None:
    path = Path(RagSynthTask(n=10, seed=10).load()[0].input.corpus or "")
    stamp = path.stat().st_mtime_ns
    os.utime(path, ns=(stamp - 10**9, stamp - 10**9))
    RagSynthTask(n=10, seed=10).load()
    assert path.stat().st_mtime_ns == stamp - 10**9  # unchanged content: not rewritten
    good = path.read_bytes()
    path.write_bytes(good[:100])  # a damaged cache
    RagSynthTask(n=10, seed=10).load()
    assert path.read_bytes() == good
    assert [p.name for p in path.parent.iterdir()] == ["corpus.jsonl"]  # no temp files left behind


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="n must be >= 0"):
        RagSynthTask(n=-1)
    with pytest.raises(ConfigError, match="bad options for task 'rag-synth'"):
        get_task("rag-synth", questions=3)


def test_an_ordinary_user_can_generate_the_corpora() -> None:
    reason = unprivileged.skip_reason()
    if reason:
        pytest.skip(reason)
    program = (
        "import json, os\n"
        "from thinktank.tasks.registry import load_problems\n"
        "from thinktank.tasks.rag_synth import gold_position\n"
        "a = load_problems('rag-synth', limit=5)\n"
        "b = load_problems('rag-synth-positioned', limit=5)\n"
        "out = {'n': len(a) + len(b), 'positions': [gold_position(p) for p in b], 'corpus': a[0].input.corpus}\n"
        "open(os.path.join(os.environ['THINKTANK_TEST_OUT'], 'result.json'), 'w').write(json.dumps(out))\n"
    )
    child = unprivileged.run_python(["-c", program], timeout=300)
    assert child.returncode == 0, child.output
    result = json.loads(child.files["result.json"])
    assert result["n"] == 10 and result["positions"] == [0, 1, 2, 3, 4]
    assert result["corpus"].startswith(f"{unprivileged.HOME}/.cache/thinktank/tasks/rag-synth/")
