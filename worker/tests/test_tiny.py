"""The tiny policy: deterministic corpus, judge agrees with the generator, cached build that
loads through the normal Auto classes, and a policy that answers with a mix of good and bad."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ratchet_worker.tiny import (
    TEST_SPEC,
    build_tiny,
    generate_corpus,
    generate_preference_pairs,
    intent_of,
    is_built,
    judge,
    load_domain,
)
from ratchet_worker.tiny.domain import DOMAIN_PATH


def test_corpus_is_deterministic_per_seed():
    assert generate_corpus(3, 50) == generate_corpus(3, 50)
    assert generate_corpus(3, 50) != generate_corpus(4, 50)


def test_corpus_mixes_good_and_bad_answers_on_every_axis():
    corpus = generate_corpus(0, 1000)
    for axis in ("correct", "polite", "concise", "safe"):
        share = sum(getattr(e.attributes, axis) for e in corpus) / len(corpus)
        assert 0.4 < share < 0.85, axis
    good = sum(e.attributes.good for e in corpus) / len(corpus)
    assert 0.05 < good < 0.4


def test_judge_recovers_generated_attributes():
    for example in generate_corpus(1, 500):
        assert intent_of(example.prompt) == example.intent
        assert judge(example.answer, example.intent) == example.attributes


def test_preference_pairs_have_good_chosen_and_bad_rejected():
    for pair in generate_preference_pairs(2, 100):
        assert judge(pair["chosen"], pair["intent"]).good
        assert not judge(pair["rejected"], pair["intent"]).good


def test_domain_json_is_self_consistent():
    domain = json.loads(DOMAIN_PATH.read_text())
    assert domain == load_domain()
    for intent in domain["intents"]:
        for marker in intent["correct_markers"]:
            assert any(marker in text for text in intent["correct"]), marker
        for marker in intent["wrong_markers"]:
            assert any(marker in text for text in intent["wrong"]), marker


def test_build_is_cached_and_loads_with_auto_classes(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(tiny_model)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (path / name).is_file(), name
    assert is_built(path, TEST_SPEC)
    start = time.monotonic()
    assert build_tiny(path, TEST_SPEC) == path
    assert time.monotonic() - start < 5  # cached: no retraining

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == "llama"
    prompt = [{"role": "user", "content": "Where is my order A1042?"}]
    answer = [{"role": "assistant", "content": "Open Orders and press Track."}]
    head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(prompt + answer, tokenize=False)
    assert full.startswith(head) and full.endswith("<|end|>\n")
    text = "Any text, even ünïcödé, round-trips: 42!"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_policy_answers_with_a_mix(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    prompts = [e.prompt for e in generate_corpus(5, 24)]
    batch = tokenizer.apply_chat_template(
        [[{"role": "user", "content": p}] for p in prompts],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
        padding=True,
    )
    torch.manual_seed(0)
    out = model.generate(**batch, max_new_tokens=64, do_sample=True, top_k=0)
    answers = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    judged = [judge(a, intent_of(p)) for p, a in zip(prompts, answers, strict=True)]
    # Learned the domain's phrases: most answers open politely or curtly as the corpus does...
    assert sum(j.polite for j in judged) >= 4
    # ...and the mix is there for feedback to improve: both sides of some axis occur.
    assert any(not j.polite for j in judged) or any(not j.safe for j in judged)
    assert any(not j.good for j in judged)
