"""The tiny local policy and its demo domain (see domain.json)."""

from .build import DEFAULT_PATH, PRESETS, TEST_SPEC, TinySpec, build_tiny, is_built
from .domain import (
    AXES,
    GOOD,
    Attributes,
    Example,
    generate_corpus,
    generate_preference_pairs,
    intent_of,
    judge,
    load_domain,
)

__all__ = [
    "AXES",
    "DEFAULT_PATH",
    "GOOD",
    "PRESETS",
    "TEST_SPEC",
    "Attributes",
    "Example",
    "TinySpec",
    "build_tiny",
    "generate_corpus",
    "generate_preference_pairs",
    "intent_of",
    "is_built",
    "judge",
    "load_domain",
]
