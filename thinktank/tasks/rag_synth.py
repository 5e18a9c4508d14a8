"""rag-synth: a seeded retrieval-QA benchmark about invented people, towns, companies and inventions.

Nothing in it exists, so no model can answer closed-book: every answer is in the corpus and only there. The world is
made of clusters of look-alike entities, so each gold passage has hard distractors sharing its names:

    Velmora Works was founded in 1887 by Ilsa Dravik. The company is based in Marroford.      <- gold for the questions
    Velmora Workshop was founded in 1879 by Oren Dravik. The company is based in Marrowick.   <- same stem, other facts
    Quenby Mills was founded in 1893 by Ilsa Dravik. ...                                      <- same founder elsewhere
    Ilsa Dravik (full name Ilsa Maren Dravik) was a clockmaker, born in 1851 in Marrowick.

Each cluster gives one single-hop question ("In which year was Velmora Works founded?", gold: that passage) and one
two-hop question ("In which town was the founder of Velmora Works born?", gold: the company's passage, then the
founder's; the answer is only in the second). `HiddenChecks.gold_passages` lists them in hop order, so the last one
holds the answer.

`rag-synth` writes one corpus per (version, seed, n) to the cache (`tasks/rag-synth/v<version>-s<seed>-n<n>/
corpus.jsonl`, one `{"id", "text", "title"}` passage a line), and every problem's `TaskInput.corpus` points at it.
`rag-synth-positioned` asks the same questions, each over its own corpus of exactly five passages (its gold passage(s)
plus the hardest distractors of its cluster) ordered so the answer's passage is at position `index % 5`, for the
"lost in the middle" measurement (Liu et al. 2023). Techniques are not told the position; `gold_position(problem)`
reads it back from the corpus order for the benchmark. Files are written atomically and only when their content
differs, so concurrent runs and re-runs share them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any

from thinktank._paths import cache_dir
from thinktank.exceptions import ConfigError, TaskDataError
from thinktank.tasks.base import HiddenChecks, Problem, Task, TaskInput

__all__ = [
    "DEFAULT_N",
    "POSITIONS",
    "VERSION",
    "RagSynthPositionedTask",
    "RagSynthTask",
    "World",
    "build_world",
    "generation_options",
    "gold_position",
]

#: bump when generation changes, so a cached corpus of another version is never reused
VERSION = 1
#: questions per seed unless a slice needs more (two per cluster of entities)
DEFAULT_N = 120
#: passages per corpus in the positioned variant, and so the number of gold positions it cycles through
POSITIONS = 5

# invented words are a head, an optional middle and a tail: "Vel" + "mo" + "ra"; pronounceable, and not real names
_HEADS = (
    "al",
    "bel",
    "bren",
    "cor",
    "dal",
    "dra",
    "el",
    "fen",
    "gar",
    "gris",
    "hal",
    "is",
    "jor",
    "kel",
    "lor",
    "mar",
    "nor",
    "os",
    "pel",
    "quen",
    "ros",
    "sel",
    "tam",
    "ul",
    "vel",
    "wen",
    "yor",
    "zan",
    "ath",
    "bor",
    "cas",
    "dor",
    "ev",
    "fal",
    "gel",
    "har",
    "ker",
    "mor",
    "ner",
    "tor",
)
_MIDDLES = ("", "", "", "a", "e", "i", "o", "ri", "mo", "la", "ven", "ta", "ne", "do", "si")
_TAILS = (
    "a", "o", "en", "ric", "in", "is", "an", "el", "ia", "ra", "eth", "ov", "ik", "wyn", "ard", "ith", "ley", "ane",
    "ux", "orn",
)  # fmt: skip
_TOWN_SUFFIXES = ("wick", "ford", "by", "holm", "stead", "mere", "thorpe", "bury", "wold", "haven")
_COMPANY_SUFFIXES = (
    ("Works", "Workshop"),
    ("Mills", "Milling Company"),
    ("Foundry", "Forge"),
    ("Press", "Printing House"),
    ("Looms", "Weaving Company"),
    ("Brewery", "Malthouse"),
    ("Ironworks", "Steelworks"),
    ("Shipyard", "Boatworks"),
    ("Glassworks", "Glass Company"),
    ("Instruments", "Instrument Company"),
)
_DEVICES = (
    ("loom", "spinning frame"),
    ("lantern", "lamp"),
    ("pump", "bellows"),
    ("compass", "sextant"),
    ("kiln", "furnace"),
    ("barometer", "hygrometer"),
    ("lathe", "drill press"),
    ("valve", "governor"),
    ("telegraph key", "signal lamp"),
    ("printing press", "type caster"),
)
_OCCUPATIONS = (
    "clockmaker", "glassblower", "cartographer", "shipwright", "botanist", "bookbinder", "engraver", "surveyor",
    "apothecary", "instrument maker", "stonemason", "weaver", "astronomer", "chemist", "architect", "bridge engineer",
    "lens grinder", "cooper", "tanner", "locksmith",
)  # fmt: skip


@dataclass(frozen=True)
class _Passage:
    key: str  # role within its cluster: "c3/person1" (never shown; ids are assigned after a shuffle)
    title: str
    text: str


@dataclass(frozen=True)
class _Question:
    cluster: int
    template: str
    question: str
    answer: str
    aliases: tuple[str, ...]
    gold: tuple[str, ...]  # passage keys in hop order: the last holds the answer


@dataclass(frozen=True)
class World:
    """The passages (id -> passage, in corpus order) and the questions of one seed."""

    passages: dict[str, _Passage]
    ids: dict[str, str]  # passage key -> id
    questions: tuple[_Question, ...]

    def cluster_keys(self, cluster: int) -> list[str]:
        return [k for k in self.ids if k.startswith(f"c{cluster}/")]


class _Names:
    """Invented words, each used once in a world, so every entity name is unique."""

    def __init__(self, rng: Random) -> None:
        self.rng, self.seen = rng, set[str]()

    def word(self, middle: bool = True) -> str:
        while True:
            word = self.rng.choice(_HEADS) + (self.rng.choice(_MIDDLES) if middle else "") + self.rng.choice(_TAILS)
            if len(word) >= 4 and word not in self.seen:
                self.seen.add(word)
                return word.capitalize()


def _cluster(c: int, rng: Random, names: _Names) -> tuple[list[_Passage], list[_Question]]:
    """Ten look-alike passages and two questions (one single-hop, one two-hop) about cluster `c`."""
    surname, stem, other_stem, device_word = (names.word() for _ in range(4))
    town_stem = names.word(middle=False)
    first = [names.word(middle=False) for _ in range(3)]
    middle = names.word(middle=False)
    towns = [town_stem + s for s in rng.sample(_TOWN_SUFFIXES, 2)]
    rivers = [names.word(middle=False) for _ in range(2)]
    suffix, near_suffix = rng.choice(_COMPANY_SUFFIXES)
    other_suffix = rng.choice([s for s, _ in _COMPANY_SUFFIXES if s != suffix])
    device, near_device = rng.choice(_DEVICES)
    base = rng.randint(1760, 1930)
    years = rng.sample([y for y in range(base - 12, base + 13) if y != base], 4)  # near the gold year: hard to tell apart
    born = rng.sample(range(base - 60, base - 20), 3)
    town_years = rng.sample(range(1050, 1700), 2)
    jobs = rng.sample(_OCCUPATIONS, 3)

    people = [f"{first[i]} {surname}" for i in range(3)]
    companies = [f"{stem} {suffix}", f"{stem} {near_suffix}", f"{other_stem} {other_suffix}"]
    inventions = [f"{device_word} {device}", f"{device_word} {near_device}"]
    # (founder, town it is based in, year): the gold company's founder also founded the third one
    company_facts = [(0, 1, base), (1, 0, years[0]), (0, 0, years[1])]
    person_town = [0, 1, 1]  # person 0 (the gold founder) was born in town 0, where the gold company is *not* based
    invention_facts = [(2, years[2]), (1, years[3])]

    key = f"c{c}/"
    passages = [
        _Passage(
            f"{key}person{i}",
            people[i],
            f"{people[i]}{f' (full name {first[i]} {middle} {surname})' if i == 0 else ''} was {_a(jobs[i])}, "
            f"born in {born[i]} in {towns[person_town[i]]}.",
        )
        for i in range(3)
    ]
    passages += [
        _Passage(f"{key}town{i}", towns[i], f"{towns[i]} is a town on the river {rivers[i]}. It was founded in {town_years[i]}.")
        for i in range(2)
    ]
    passages += [
        _Passage(
            f"{key}company{i}",
            companies[i],
            f"{companies[i]} was founded in {year} by {people[founder]}. The company is based in {towns[town]}.",
        )
        for i, (founder, town, year) in enumerate(company_facts)
    ]
    passages += [
        _Passage(
            f"{key}invention{i}",
            f"The {inventions[i]}",
            f"The {inventions[i]} was first demonstrated in {year}. Its inventor was {people[inventor]}.",
        )
        for i, (inventor, year) in enumerate(invention_facts)
    ]

    full = (f"{first[0]} {middle} {surname}",)

    def river_of(t: int) -> tuple[str, tuple[str, ...]]:
        return rivers[t], (f"River {rivers[t]}",)

    singles: list[tuple[str, str, str, tuple[str, ...], tuple[str, ...]]] = [
        ("company_year", f"In which year was {companies[0]} founded?", str(base), (), ("company0",)),
        ("company_founder", f"Who founded {companies[0]}?", people[0], full, ("company0",)),
        ("company_town", f"In which town is {companies[0]} based?", towns[1], (), ("company0",)),
        ("person_town", f"In which town was {people[0]} born?", towns[0], (), ("person0",)),
        ("person_occupation", f"What was the occupation of {people[0]}?", jobs[0], (), ("person0",)),
        ("person_year", f"In which year was {people[0]} born?", str(born[0]), (), ("person0",)),
        ("town_river", f"On which river does {towns[0]} lie?", *river_of(0), ("town0",)),
        ("town_year", f"In which year was {towns[0]} founded?", str(town_years[0]), (), ("town0",)),
        ("invention_inventor", f"Who invented the {inventions[0]}?", people[2], (), ("invention0",)),
        ("invention_year", f"In which year was the {inventions[0]} first demonstrated?", str(years[2]), (), ("invention0",)),
    ]
    founder, inventor = ("company0", "person0"), ("invention0", "person2")
    doubles: list[tuple[str, str, str, tuple[str, ...], tuple[str, ...]]] = [
        ("founder_town", f"In which town was the founder of {companies[0]} born?", towns[0], (), founder),
        ("founder_occupation", f"What was the occupation of the founder of {companies[0]}?", jobs[0], (), founder),
        ("founder_year", f"In which year was the founder of {companies[0]} born?", str(born[0]), (), founder),
        ("company_river", f"On which river lies the town where {companies[0]} is based?", *river_of(1), ("company0", "town1")),
        ("inventor_town", f"In which town was the inventor of the {inventions[0]} born?", towns[1], (), inventor),
        ("inventor_occupation", f"What was the occupation of the inventor of the {inventions[0]}?", jobs[2], (), inventor),
    ]  # fmt: skip
    questions = [
        _Question(c, name, text, answer, aliases, tuple(key + g for g in gold))
        for name, text, answer, aliases, gold in (singles[c % len(singles)], doubles[c % len(doubles)])
    ]
    return passages, questions


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def build_world(seed: int, n: int = DEFAULT_N) -> World:
    """The passages and `n` questions of `seed` (pure: the same arguments always give the same world)."""
    if n < 0:
        raise ConfigError(f"rag-synth: n must be >= 0, got {n}")
    rng = Random(f"rag-synth/{VERSION}/{seed}")
    names = _Names(rng)
    passages: list[_Passage] = []
    questions: list[_Question] = []
    for c in range((n + 1) // 2):
        more_passages, more_questions = _cluster(c, rng, names)
        passages += more_passages
        questions += more_questions
    rng.shuffle(passages)  # ids follow the shuffled order, so an id says nothing about its role
    ids = {p.key: f"p{i:04d}" for i, p in enumerate(passages)}
    return World({ids[p.key]: p for p in passages}, ids, tuple(questions[:n]))


def _jsonl(passages: list[tuple[str, _Passage]]) -> str:
    return "".join(json.dumps({"id": i, "text": p.text, "title": p.title}) + "\n" for i, p in passages)


def _write_once(path: Path, content: str) -> Path:
    """`content` at `path`, written atomically (temp file + rename) and only if the file holds something else."""
    data = content.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return path
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise TaskDataError(f"cannot read the cached corpus {path}: {exc}") from exc
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise TaskDataError(f"cannot write the corpus {path}: {exc}") from exc
    return path


def _problem(task: str, seed: int, index: int, q: _Question, ids: dict[str, str], corpus: Path) -> Problem:
    task_input = TaskInput(
        problem_id=f"{task}/s{seed}/q{index:04d}",
        kind="qa",
        prompt=q.question,
        corpus=str(corpus),
        meta={"hops": len(q.gold)},
    )
    return Problem(task_input, HiddenChecks(answer=q.answer, aliases=q.aliases, gold_passages=tuple(ids[k] for k in q.gold)))


#: what a distractor of an answer passage looks like, hardest first: the same kind of entity, then what it names
_DISTRACTOR_ORDER = {
    "person": ("person", "company", "invention", "town"),
    "town": ("town", "company", "person", "invention"),
    "company": ("company", "person", "town", "invention"),
    "invention": ("invention", "person", "company", "town"),
}


class RagSynthTask(Task):
    """`n` questions of `seed` over one shared corpus (single-hop and two-hop alternate)."""

    name = "rag-synth"
    kind = "qa"

    def __init__(self, n: int = DEFAULT_N, seed: int = 0) -> None:
        if n < 0:
            raise ConfigError(f"{self.name}: n must be >= 0, got {n}")
        self.n, self.seed = n, seed

    def directory(self) -> Path:
        return cache_dir("tasks", self.name, f"v{VERSION}-s{self.seed}-n{self.n}")

    def problems(self) -> Iterator[Problem]:
        world = build_world(self.seed, self.n)
        corpus = _write_once(self.directory() / "corpus.jsonl", _jsonl(list(world.passages.items())))
        for index, q in enumerate(world.questions):
            yield _problem(self.name, self.seed, index, q, world.ids, corpus)


class RagSynthPositionedTask(RagSynthTask):
    """The same questions, each over its own five passages with the answer's passage at position `index % 5`."""

    name = "rag-synth-positioned"

    def problems(self) -> Iterator[Problem]:
        world = build_world(self.seed, self.n)
        directory = self.directory()
        for index, q in enumerate(world.questions):
            order = self._order(world, q, index)
            content = _jsonl([(world.ids[k], world.passages[world.ids[k]]) for k in order])
            name = hashlib.sha256(content.encode()).hexdigest()[:16]  # not the index: the name must not tell the position
            corpus = _write_once(directory / f"{name}.jsonl", content)
            yield _problem(self.name, self.seed, index, q, world.ids, corpus)

    def _order(self, world: World, q: _Question, index: int) -> list[str]:
        rng = Random(f"{self.name}/{VERSION}/{self.seed}/{index}")
        answer_key, bridges = q.gold[-1], list(q.gold[:-1])
        role = answer_key.split("/")[1].rstrip("0123456789")
        others = [k for k in world.cluster_keys(q.cluster) if k not in q.gold]
        rng.shuffle(others)
        others.sort(key=lambda k: _DISTRACTOR_ORDER[role].index(k.split("/")[1].rstrip("0123456789")))
        rest = bridges + others[: POSITIONS - 1 - len(bridges)]
        rng.shuffle(rest)
        rest.insert(index % POSITIONS, answer_key)
        return rest


def gold_position(problem: Problem) -> int:
    """Where the answer's passage (the last gold passage) stands in the problem's corpus, 0-based (for the benchmark)."""
    if not problem.input.corpus or not problem.hidden.gold_passages:
        raise TaskDataError(f"{problem.id}: no corpus or no gold passages, so no gold position")
    path = Path(problem.input.corpus)
    try:
        ids = [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TaskDataError(f"{problem.id}: cannot read the passage ids of {path}: {exc}") from exc
    target = problem.hidden.gold_passages[-1]
    if target not in ids:
        raise TaskDataError(f"{problem.id}: gold passage {target!r} is not in {path}")
    return ids.index(target)


def generation_options(seed: int, needed: int = 0) -> dict[str, Any]:
    """Task options for a run: the seed picks the world, `needed` (offset + limit) sizes it beyond `DEFAULT_N`."""
    return {"seed": seed, "n": max(DEFAULT_N, needed)}
