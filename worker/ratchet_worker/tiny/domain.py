"""The demo domain: an Acme customer-support assistant whose answers vary along four axes.

The structure lives in ``domain.json`` (beside this file) so that the TypeScript side (simulated
users and judges) reads the very same intents, templates and markers. This module generates the
pretraining corpus and preference data from it, and holds the reference judge.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

DOMAIN_PATH = Path(__file__).with_name("domain.json")

AXES = ("correct", "polite", "concise", "safe")


@lru_cache(maxsize=1)
def load_domain() -> dict[str, Any]:
    """The parsed domain.json (cached: it never changes within a process)."""
    return json.loads(DOMAIN_PATH.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Attributes:
    """Where an answer sits on each axis: True is the good side."""

    correct: bool
    polite: bool
    concise: bool
    safe: bool

    @property
    def good(self) -> bool:
        return self.correct and self.polite and self.concise and self.safe

    @property
    def score(self) -> float:
        """Mean over the axes of +1 (good side) or -1 (bad side): a rating in [-1, 1]."""
        return sum(1.0 if getattr(self, a) else -1.0 for a in AXES) / len(AXES)

    def as_dict(self) -> dict[str, bool]:
        return {a: getattr(self, a) for a in AXES}


GOOD = Attributes(correct=True, polite=True, concise=True, safe=True)


@dataclass(frozen=True)
class Example:
    intent: str
    prompt: str
    answer: str
    attributes: Attributes


def _fill(template: str, slots: dict[str, str]) -> str:
    return template.format(**slots)


def sample_slots(rng: random.Random) -> dict[str, str]:
    return {k: rng.choice(v) for k, v in load_domain()["slots"].items()}


def sample_prompt(rng: random.Random, intent: dict[str, Any], slots: dict[str, str]) -> str:
    return _fill(rng.choice(intent["prompts"]), slots)


def compose_answer(rng: random.Random, intent: dict[str, Any], attrs: Attributes, slots: dict[str, str]) -> str:
    """Build one answer with the given attributes out of the domain's parts.

    Order: opener, core, fillers (rambling), unsafe sentence, closer. The parts are whole
    sentences, so the markers in domain.json identify each axis in the text.
    """
    style = load_domain()["style"]
    gen = load_domain()["generation"]
    parts: list[str] = []
    if attrs.polite:
        parts.append(rng.choice(style["polite_openers"]))
    else:
        parts.append(rng.choice(style["curt_openers"]))
    parts.append(rng.choice(intent["correct"] if attrs.correct else intent["wrong"]))
    if not attrs.concise:
        lo, hi = gen["rambling_fillers"]
        parts.extend(rng.sample(style["rambling_fillers"], rng.randint(lo, hi)))
    if not attrs.safe:
        parts.append(rng.choice(style["unsafe_sentences"]))
    if attrs.polite and rng.random() < gen["p_closer_if_polite"]:
        parts.append(rng.choice(style["polite_closers"]))
    return _fill(" ".join(parts), slots)


def sample_attributes(rng: random.Random) -> Attributes:
    """Attributes drawn independently with the domain's mix, so good and bad answers coexist."""
    gen = load_domain()["generation"]
    return Attributes(
        correct=rng.random() < gen["p_correct"],
        polite=rng.random() < gen["p_polite"],
        concise=rng.random() < gen["p_concise"],
        safe=rng.random() < gen["p_safe"],
    )


def sample_example(rng: random.Random, attrs: Attributes | None = None) -> Example:
    intent = rng.choice(load_domain()["intents"])
    slots = sample_slots(rng)
    attrs = attrs or sample_attributes(rng)
    return Example(
        intent=intent["id"],
        prompt=sample_prompt(rng, intent, slots),
        answer=compose_answer(rng, intent, attrs, slots),
        attributes=attrs,
    )


def generate_corpus(seed: int, n: int) -> list[Example]:
    """A deterministic list of n conversations with the domain's mix of answers."""
    rng = random.Random(seed)
    return [sample_example(rng) for _ in range(n)]


def bad_attributes(rng: random.Random) -> Attributes:
    """A random attribute set with at least one axis on the bad side."""
    while True:
        attrs = sample_attributes(rng)
        if not attrs.good:
            return attrs


def generate_preference_pairs(seed: int, n: int) -> list[dict[str, Any]]:
    """n pairs (same prompt): a good answer and an answer that is bad on some axis.

    Used by the tests and the demo as a toy preference set; rows carry the intent and the
    attributes so they can be split or filtered.
    """
    rng = random.Random(seed)
    intents = load_domain()["intents"]
    rows = []
    for _ in range(n):
        intent = rng.choice(intents)
        slots = sample_slots(rng)
        bad = bad_attributes(rng)
        rows.append(
            {
                "intent": intent["id"],
                "prompt": sample_prompt(rng, intent, slots),
                "chosen": compose_answer(rng, intent, GOOD, slots),
                "rejected": compose_answer(rng, intent, bad, slots),
                "rejected_attributes": bad.as_dict(),
            }
        )
    return rows


@lru_cache(maxsize=1)
def _prompt_patterns() -> list[tuple[re.Pattern[str], str]]:
    patterns = []
    for intent in load_domain()["intents"]:
        for template in intent["prompts"]:
            # Slots become wildcards; the rest of the template must match literally.
            pieces = re.split(r"(\{[a-z_]+\})", template)
            regex = "".join(".+?" if p.startswith("{") else re.escape(p) for p in pieces)
            patterns.append((re.compile(f"^{regex}$", re.IGNORECASE), intent["id"]))
    return patterns


def intent_of(prompt: str) -> str | None:
    """The intent whose prompt template matches this user message, if any."""
    text = prompt.strip()
    for pattern, intent_id in _prompt_patterns():
        if pattern.match(text):
            return intent_id
    return None


def _contains_any(text: str, markers: list[str]) -> bool:
    lowered = text.lower()
    return any(m.lower() in lowered for m in markers)


def judge(answer: str, intent_id: str | None) -> Attributes:
    """Recover an answer's attributes from its text with the markers (rules in domain.json).

    With an unknown intent, correctness falls back to "some intent's correct marker and no
    wrong marker of any intent".
    """
    domain = load_domain()
    intents = domain["intents"]
    chosen = [i for i in intents if i["id"] == intent_id] or intents
    correct_markers = [m for i in chosen for m in i["correct_markers"]]
    wrong_markers = [m for i in chosen for m in i["wrong_markers"]]
    markers = domain["markers"]
    return Attributes(
        correct=_contains_any(answer, correct_markers) and not _contains_any(answer, wrong_markers),
        polite=_contains_any(answer, markers["polite"]) and not _contains_any(answer, markers["curt"]),
        concise=not _contains_any(answer, markers["rambling"]),
        safe=not _contains_any(answer, markers["unsafe"]),
    )
