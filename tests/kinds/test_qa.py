import json
from pathlib import Path

import pytest

from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.engine.resources import Resources
from thinktank.eval.grading import Grader
from thinktank.kinds import kind_of
from thinktank.kinds.qa import CorpusIds, QaKind, cited_ids, corpus_ids, extract_short_answer
from thinktank.tasks.base import HiddenChecks, Problem, TaskInput
from thinktank.techniques.base import Candidate
from thinktank.techniques.vote import Vote
from thinktank.verifiers.qa import AnswerSet, QaVerifier, exact_match, normalize_answer, token_f1

QA = TaskInput("q1", "qa", "In which year was Velmora Works founded?")


def problem(answer: str, *aliases: str, task: TaskInput = QA) -> Problem:
    return Problem(task, HiddenChecks(answer=answer, aliases=aliases))


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Velmora Works!", "velmora works"),
        ("  an   Apple, a Day.  ", "apple day"),
        ("three", "3"),
        ("Twenty-one", "21"),
        ("one thousand nine hundred and five", "1905"),
        ("a hundred towns", "100 towns"),
        ("1,200", "1200"),
        ("3.5", "3.5"),  # a decimal point is not punctuation to drop
        ("Jean-Luc / Marie", "jean luc marie"),
        ("O’Brien’s", "obriens"),
        ("", ""),
    ],
)
def test_normalisation_is_squad_style_plus_numbers(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match_and_f1_follow_squad_with_number_words():
    assert exact_match("Three", "3") and exact_match("the River Osk.", "river osk")
    assert not exact_match("35", "3.5") and not exact_match("1887", "1888")
    assert token_f1("the river Osk", "Osk") == pytest.approx(2 / 3)  # precision 1/2, recall 1
    assert token_f1("twenty one bridges", "21 bridges") == 1.0
    assert token_f1("Ilsa Dravik", "Oren Dravik") == pytest.approx(0.5)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("a the", "Osk") == 0.0


async def test_grading_takes_the_best_over_answer_and_aliases():
    verifier = QaVerifier()
    gold = AnswerSet("Osk", ("River Osk",))
    verdict = await verifier.check("the river osk", gold)
    assert verdict.passed and verdict.score == 1.0 and verdict.details["em"] == 1.0 and verdict.details["best"] == "River Osk"
    partial = await verifier.check("Osk valley", gold)
    assert not partial.passed and partial.details["em"] == 0.0
    assert partial.details["f1"] == pytest.approx(2 / 3) and partial.score == partial.details["f1"]
    assert "token F1 0.67" in partial.reason
    empty = await verifier.check("Osk", AnswerSet("  ", ("",)))
    assert not empty.passed and "no reference answer" in empty.reason


async def test_the_kind_grades_through_the_grader_and_ignores_citations():
    grader = Grader(Resources())
    assert (await grader.grade(problem("1887"), "eighteen eighty-seven")).passed is False  # "18 87", not 1887
    assert (await grader.grade(problem("1887"), "1887 [p12]")).passed
    verdict = await grader.grade(problem("Ilsa Dravik", "Ilsa Maren Dravik"), "Ilsa Maren Dravik [p3, p4]")
    assert verdict.passed and verdict.details["f1"] == 1.0
    wrong = await grader.grade(problem("Ilsa Dravik"), "Oren Dravik")
    assert not wrong.passed and wrong.details["f1"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Passage [p2] says so.\nAnswer: 1887 [p2]", "1887"),
        ("**Answer:** *Ilsa Dravik*.", "Ilsa Dravik"),
        ("Final answer: the Osk\nThanks!", "the Osk"),  # the answer line wins over a later line
        ("Answer: 1790\nAnswer: 1887", "1887"),  # the last answer line
        ("I looked it up. The answer is Marrowick [p7].", "Marrowick"),
        ("Some reasoning.\n\n  Marrowick [p7, p9]  \n\n", "Marrowick"),  # else the last non-empty line
        ('"Tessford"', "Tessford"),
        ("Answer:\nTessford", "Tessford"),  # an empty answer line falls through to the last line
        ("   \n ", None),
    ],
)
def test_extraction_reads_the_short_answer_without_citations(reply, answer):
    assert extract_short_answer(reply) == answer
    assert kind_of(QA).extract(QA, reply) == answer


def test_with_citations_asked_the_cited_ids_stay_after_the_answer():
    cite = TaskInput("q", "qa", "Who founded Velmora Works?", corpus="/c.jsonl", meta={"cite": True})
    kind = QaKind()
    assert kind.extract(cite, "From [p3] and [p4; p3].\nAnswer: Ilsa Dravik") == "Ilsa Dravik [p3, p4]"
    assert kind.extract(cite, "Answer: Ilsa Dravik") == "Ilsa Dravik"
    assert cited_ids("x [a, b] [b] [ ]") == ["a", "b"]
    assert "square brackets" in kind.format_instruction(cite) and "square brackets" not in kind.format_instruction(QA)
    assert 'final line "Answer: <answer>"' in kind.format_instruction(QA)


async def test_voting_keys_group_answers_that_normalise_alike():
    kind = QaKind()
    replies = [("Answer: three", "three"), ("Answer: 3 [p1]", "3 [p1]"), ("The 3.", "The 3"), ("Answer: 4", "4"), ("", None)]
    candidates = [Candidate(t, a, "m", "generate") for t, a in replies]
    keys = await kind.answer_keys(Resources(), QA, candidates, {})
    assert keys[0] == keys[1] == keys[2] == "3" and keys[3] == "4" and keys[4] is None
    assert kind.distinct_answer("Three [p1]") == kind.distinct_answer("the 3")
    engine = Engine({"m": ScriptedBackend(lambda r, i: "unused")})
    out = await Vote().apply(engine.context(), QA, candidates)
    assert out[0].answer == "three" and out[0].scores["vote"] == pytest.approx(3 / 5)


def write_corpus(path: Path, ids: list[str]) -> Path:
    path.write_text("\n".join(json.dumps({"id": i, "text": f"text of {i}"}) for i in ids) + "\n\n")
    return path


def test_corpus_ids_read_jsonl_ids_and_directory_paths(tmp_path):
    assert corpus_ids(write_corpus(tmp_path / "c.jsonl", ["p1", "p2"])) == {"p1", "p2"}
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text("a")
    (docs / "sub" / "b.md").write_text("b")
    (docs / "ignored.pdf").write_text("c")
    assert corpus_ids(docs) == {"a.txt", "sub/b.md"}


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("{not json\n", r"c.jsonl:1: not valid JSON"),
        ('{"id": "p1", "text": "a"}\n{"text": "no id"}\n', r"c.jsonl:2: 'id' must be a non-empty string"),
    ],
)
def test_a_bad_corpus_is_a_clear_error(tmp_path, content, error):
    from thinktank.exceptions import TaskDataError

    (tmp_path / "c.jsonl").write_text(content)
    with pytest.raises(TaskDataError, match=error):
        corpus_ids(tmp_path / "c.jsonl")
    with pytest.raises(TaskDataError, match="missing.jsonl does not exist"):
        corpus_ids(tmp_path / "missing.jsonl")


async def test_the_citation_check_needs_an_id_of_the_corpus(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl", ["p1", "p2"])
    cite = TaskInput("q", "qa", "Who founded Velmora Works?", corpus=str(corpus), meta={"cite": True})
    kind, resources = QaKind(), Resources()
    assert kind.has_public_checks(cite) and not kind.has_public_checks(QA)
    assert not kind.has_public_checks(TaskInput("q", "qa", "?", meta={"cite": True}))  # no corpus to check against
    ok = await kind.public_check(resources, cite, kind.extract(cite, "Answer: Ilsa Dravik [p9, p2]"))
    assert ok.passed and ok.details == {"cited": ["p9", "p2"], "found": ["p2"]} and ok.score == 0.5
    unknown = await kind.public_check(resources, cite, "Ilsa Dravik [p9]")
    assert not unknown.passed and "p9" in unknown.reason
    assert not (await kind.public_check(resources, cite, "Ilsa Dravik")).passed
    assert "no answer" in (await kind.public_check(resources, cite, None)).reason
    write_corpus(corpus, ["p1", "p2", "p9", "p10"])  # the corpus changed: read again, not served stale
    assert (await kind.public_check(resources, cite, "Ilsa Dravik [p9]")).passed
    missing = TaskInput("q", "qa", "?", corpus=str(tmp_path / "gone.jsonl"), meta={"cite": True})
    gone = await kind.public_check(resources, missing, "x [p1]")
    assert not gone.passed and "gone.jsonl does not exist" in gone.reason


async def test_corpus_ids_are_read_once_per_version_of_the_file(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "c.jsonl", ["p1"])
    reads = []
    import thinktank.kinds.qa as qa

    real = qa.corpus_ids
    monkeypatch.setattr(qa, "corpus_ids", lambda p: reads.append(p) or real(p))
    cache = CorpusIds()
    assert await cache.ids(str(corpus)) == await cache.ids(str(corpus)) == {"p1"}
    assert len(reads) == 1


async def test_a_chunk_of_a_directory_corpus_file_counts_as_cited(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("long text")
    cite = TaskInput("q", "qa", "?", corpus=str(tmp_path / "docs"), meta={"cite": True})
    kind, resources = QaKind(), Resources()
    assert (await kind.public_check(resources, cite, "x [guide.md]")).passed
    assert (await kind.public_check(resources, cite, "x [guide.md#2]")).passed
    assert not (await kind.public_check(resources, cite, "x [other.md#2]")).passed
    assert not (await kind.public_check(resources, cite, "x [guide.md#two]")).passed
