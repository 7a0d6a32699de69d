"""Build the tiny local policy: a byte-level BPE tokenizer and a small Llama, trained from scratch.

The result is an ordinary Hugging Face folder (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json with a chat template, generation_config.json), so everything downstream
loads it with ``AutoModelForCausalLM.from_pretrained`` like any other local model. A marker file
holds a hash of the build inputs; a second build with the same inputs is a no-op.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .domain import DOMAIN_PATH, Example, generate_corpus

# Bump when the build code changes in a way that changes the output for the same spec.
BUILD_VERSION = 1
MARKER_FILE = "ratchet-tiny.json"
DEFAULT_PATH = Path(".ratchet/models/tiny-support")

SPECIAL_TOKENS = ["<pad>", "<|begin|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
PAD, BOS, EOS = "<pad>", "<|begin|>", "<|end|>"

# The {% generation %} markers let TRL's SFT train on assistant turns only. Rendering a prompt
# with add_generation_prompt yields an exact prefix of the rendered prompt+answer, which TRL's
# preference trainers rely on to find where the completion starts.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class TinySpec:
    """Everything that determines the built model; its hash names the build."""

    seed: int = 0
    vocab_size: int = 768
    hidden_size: int = 64
    intermediate_size: int = 192
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    corpus_size: int = 4000
    train_steps: int = 260
    batch_size: int = 32
    learning_rate: float = 5e-3
    warmup_steps: int = 20

    def digest(self) -> str:
        payload = {
            "spec": dataclasses.asdict(self),
            "build_version": BUILD_VERSION,
            "domain_sha256": hashlib.sha256(DOMAIN_PATH.read_bytes()).hexdigest(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# Smaller and shorter: what the tests build in a temporary folder.
TEST_SPEC = TinySpec(
    intermediate_size=128,
    num_hidden_layers=2,
    corpus_size=2000,
    train_steps=140,
    batch_size=32,
    learning_rate=5e-3,
    warmup_steps=15,
)

# About 20 million parameters, Llama proportions (GQA, MLP ~8/3 of hidden), randomly initialized
# (no pretraining steps): the size bench/train-throughput measures training speed at, where the
# matmuls rather than per-step overheads set the pace. Its vocabulary is every merge the domain
# corpus offers (~1,100 tokens; asking for more yields no more).
BENCH_20M_SPEC = TinySpec(
    vocab_size=1024,
    hidden_size=512,
    intermediate_size=1376,
    num_hidden_layers=7,
    num_attention_heads=8,
    num_key_value_heads=4,
    train_steps=0,
)

PRESETS: dict[str, TinySpec] = {"default": TinySpec(), "test": TEST_SPEC, "bench-20m": BENCH_20M_SPEC}

Progress = Callable[[dict[str, Any]], None]


def _render(example: Example) -> str:
    """A conversation as the chat template renders it (kept in sync with CHAT_TEMPLATE)."""
    return f"<|user|>\n{example.prompt}<|end|>\n<|assistant|>\n{example.answer}<|end|>\n"


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE: no unknown tokens, so any text a user types round-trips."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def wrap_tokenizer(tokenizer):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def make_model(spec: TinySpec, tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    return LlamaForCausalLM(config)


def _batches(token_ids: list[list[int]], spec: TinySpec, pad_id: int):
    """Endless shuffled batches of whole conversations, padded on the right.

    Batches are cut from length-sorted windows of the shuffled order, so rows in a batch have
    similar lengths and little compute goes to padding (about 40% without it here).
    """
    import torch

    rng = random.Random(spec.seed + 1)
    window = spec.batch_size * 8
    while True:
        order = list(range(len(token_ids)))
        rng.shuffle(order)
        batches: list[list[int]] = []
        for start in range(0, len(order) - spec.batch_size + 1, window):
            chunk = sorted(order[start : start + window], key=lambda i: len(token_ids[i]))
            batches.extend(
                chunk[b : b + spec.batch_size] for b in range(0, len(chunk) - spec.batch_size + 1, spec.batch_size)
            )
        rng.shuffle(batches)
        for batch in batches:
            rows = [token_ids[i] for i in batch]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
            yield ids, mask


def _lr_at(step: int, spec: TinySpec) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    if step < spec.warmup_steps:
        return spec.learning_rate * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.train_steps - spec.warmup_steps)
    return spec.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(model, token_ids: list[list[int]], spec: TinySpec, pad_id: int, progress: Progress) -> float:
    """Plain next-token training on whole conversations; returns the final smoothed loss."""
    import torch

    torch.manual_seed(spec.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01)
    model.train()
    smoothed = None
    start = time.monotonic()
    batches = _batches(token_ids, spec, pad_id)
    for step in range(spec.train_steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, spec)
        ids, mask = next(batches)
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        smoothed = loss.item() if smoothed is None else 0.9 * smoothed + 0.1 * loss.item()
        if (step + 1) % 25 == 0 or step + 1 == spec.train_steps:
            elapsed = time.monotonic() - start
            progress(
                {
                    "type": "progress",
                    "stage": "pretrain",
                    "step": step + 1,
                    "total": spec.train_steps,
                    "loss": round(smoothed, 4),
                    "learning_rate": _lr_at(step, spec),
                    "eta_s": round(elapsed / (step + 1) * (spec.train_steps - step - 1), 1),
                }
            )
    model.eval()
    return float(smoothed or 0.0)


def is_built(path: Path, spec: TinySpec) -> bool:
    marker = path / MARKER_FILE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text())["digest"] == spec.digest()
    except (ValueError, KeyError):
        return False


def build_tiny(
    path: str | Path = DEFAULT_PATH,
    spec: TinySpec = TinySpec(),
    progress: Progress | None = None,
    force: bool = False,
) -> Path:
    """Build the tiny model into `path` unless it is already there with the same spec.

    Writes into a sibling temporary folder and renames it into place, so a crash never leaves
    a half-built model that looks finished.
    """
    path = Path(path)
    emit = progress or (lambda _event: None)
    if not force and is_built(path, spec):
        emit({"type": "cached", "path": str(path), "digest": spec.digest()})
        return path

    import shutil

    import torch

    start = time.monotonic()
    corpus = generate_corpus(spec.seed, spec.corpus_size)
    texts = [_render(e) for e in corpus]
    tokenizer = wrap_tokenizer(train_tokenizer(texts, spec.vocab_size))
    emit({"type": "progress", "stage": "tokenizer", "vocab_size": len(tokenizer)})
    token_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    model = make_model(spec, tokenizer)
    final_loss = pretrain(model, token_ids, spec, tokenizer.pad_token_id, emit)

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    seconds = round(time.monotonic() - start, 1)
    marker = {
        "digest": spec.digest(),
        "spec": dataclasses.asdict(spec),
        "build_version": BUILD_VERSION,
        "final_loss": final_loss,
        "parameters": sum(p.numel() for p in model.parameters()),
        "build_seconds": seconds,
        "torch_threads": torch.get_num_threads(),
    }
    (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    emit({"type": "built", "path": str(path), **marker})
    return path
