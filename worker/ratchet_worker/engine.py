"""Continuous batching for `ratchet-worker serve`: every sequence being generated shares one
decoding loop.

A request becomes one `Sequence` per choice. The engine thread keeps, per model family (the
base with its LoRA adapters, or one full model), a running batch with one KV cache: each
iteration it prefills the sequences that arrived (left-padded, as one batch) and joins them to
the running batch, then decodes one token for every running sequence. A finished sequence
leaves the batch at once and its caller gets its answer; a new one joins at the next step,
so nobody waits for someone else's long answer. Rows of the base family carry their own
adapter (PEFT's mixed-adapter batches, `adapter_names=`), so calls to different adapters of
the same base are generated together.

Why batching pays on a CPU too: a step of a small model costs mostly fixed overhead (Python,
kernel launches, reading the weights), which a batch of 8 shares; the matrices just get taller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BASE_ROW = "__base__"  # PEFT's adapter name for "no adapter" in a mixed batch


@dataclass
class Sequence:
    """One choice being generated; `emit` is called from the engine thread."""

    family: str  # which model generates it: "" for the base (and its adapters), else a full model's name
    adapter: str | None  # LoRA adapter on the base, None for the base itself or a full model
    prompt_ids: list[int]
    max_new: int
    temperature: float
    top_p: float
    stops: list[str]
    emit: Callable[[str, Any], None]  # ("delta", text) ... then ("done", Finish) or ("error", Exception)
    generator: Any = None  # a seeded torch.Generator when the request gave a seed
    ignore_eos: bool = False  # generate max_new tokens whatever the model says (benchmarks, tests)
    cancelled: bool = False  # set by the caller when nobody reads the answer any more
    tokens: list[int] = field(default_factory=list)
    sent: str = ""


@dataclass
class Finish:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def apply_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Cut the text at the first stop sequence; says whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class _Running:
    """A family's running batch: its sequences, their KV cache and attention mask (left-padded)."""

    def __init__(self) -> None:
        self.seqs: list[Sequence] = []
        self.cache: Any = None
        self.mask: Any = None  # (rows, cache length) 1 for real tokens, 0 for left padding


class Engine:
    """The decoding loop. `models(family)` gives the model to run (looked up every step, so a
    model loaded or wrapped with a first adapter meanwhile is picked up); `lock` is held around
    every forward pass, and by whoever changes the models."""

    def __init__(
        self,
        tokenizer: Any,
        device: str,
        models: Callable[[str], Any],
        lock: threading.RLock,
        max_batch: int = 16,
        window_s: float = 0.004,
    ) -> None:
        self.tokenizer = tokenizer
        self.device = device
        self.models = models
        self.lock = lock
        self.max_batch = max_batch
        self.window_s = window_s
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id
        self._cv = threading.Condition()
        self._waiting: list[Sequence] = []
        self._running: dict[str, _Running] = {}
        self.generated = 0  # tokens generated since start (for /health and tests)
        self._thread = threading.Thread(target=self._loop, name="ratchet-engine", daemon=True)
        self._thread.start()

    # -- what callers use ----------------------------------------------------------------------
    def submit(self, seq: Sequence) -> None:
        with self._cv:
            self._waiting.append(seq)
            self._cv.notify()

    def in_use(self) -> set[tuple[str, str | None]]:
        """(family, adapter) of every sequence waiting or running: what an unload must wait for."""
        with self._cv:
            seqs = [*self._waiting, *(s for r in self._running.values() for s in r.seqs)]
            return {(s.family, s.adapter) for s in seqs}

    def busy(self) -> int:
        with self._cv:
            return len(self._waiting) + sum(len(r.seqs) for r in self._running.values())

    # -- the loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not any(r.seqs for r in self._running.values()):
                    self._cv.wait()
                idle = not any(r.seqs for r in self._running.values())
            if idle and self.window_s > 0:
                # Requests sent together arrive a little apart: gather them into one prefill.
                time.sleep(self.window_s)
            with self._cv:
                families = {s.family for s in self._waiting} | {f for f, r in self._running.items() if r.seqs}
            for family in sorted(families):
                self._step(family)

    def _take(self, family: str, room: int) -> list[Sequence]:
        with self._cv:
            taken = [s for s in self._waiting if s.family == family][:room]
            self._waiting = [s for s in self._waiting if s not in taken]
            return taken

    def _step(self, family: str) -> None:
        running = self._running.setdefault(family, _Running())
        new = self._take(family, self.max_batch - len(running.seqs))
        try:
            with self.lock:
                model = self.models(family)
                if new:
                    self._prefill(model, running, new)
                if running.seqs:
                    self._decode(model, running)
        except Exception as err:  # noqa: BLE001 - every sequence of the failed batch is told why
            failed = {id(s): s for s in [*new, *running.seqs]}.values()
            with self._cv:
                self._running.pop(family, None)
            for seq in failed:
                seq.emit("error", err)

    # -- model passes -----------------------------------------------------------------------------
    def _forward(self, model: Any, seqs: list[Sequence], **inputs: Any):
        from peft import PeftModel

        if isinstance(model, PeftModel):
            inputs["adapter_names"] = [s.adapter or BASE_ROW for s in seqs]
        return model(**inputs, use_cache=True)

    def _prefill(self, model: Any, running: _Running, new: list[Sequence]) -> None:
        import torch
        from transformers import DynamicCache

        width = max(len(s.prompt_ids) for s in new)
        ids = torch.full((len(new), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(new), width), dtype=torch.long)
        for row, s in enumerate(new):
            ids[row, width - len(s.prompt_ids) :] = torch.tensor(s.prompt_ids)
            mask[row, width - len(s.prompt_ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self._forward(
                model,
                new,
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                past_key_values=DynamicCache(),
            )
        keep = self._advance(new, out.logits[:, -1, :])
        if not keep:
            return
        cache = [(layer.keys[keep], layer.values[keep]) for layer in out.past_key_values.layers]
        self._join(running, [new[i] for i in keep], cache, mask[keep].to(self.device))

    def _decode(self, model: Any, running: _Running) -> None:
        import torch
        from transformers import DynamicCache

        seqs = running.seqs
        ids = torch.tensor([[s.tokens[-1]] for s in seqs], device=self.device)
        positions = running.mask.sum(-1, keepdim=True)  # real tokens so far: the new one's position
        mask = torch.cat([running.mask, torch.ones((len(seqs), 1), dtype=torch.long, device=self.device)], -1)
        cache = DynamicCache(ddp_cache_data=running.cache)
        with torch.inference_mode():
            out = self._forward(
                model, seqs, input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache
            )
        keep = self._advance(seqs, out.logits[:, -1, :])
        layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        if len(keep) < len(seqs):  # rows that finished leave the cache
            layers = [(k[keep], v[keep]) for k, v in layers]
            mask = mask[keep]
        # Columns that only finished sequences used are padding for everyone left: drop them.
        if len(keep) and len(keep) < len(seqs):
            first = int((mask.sum(0) > 0).nonzero()[0])
            if first:
                mask = mask[:, first:]
                layers = [(k[:, :, first:], v[:, :, first:]) for k, v in layers]
        running.seqs = [seqs[i] for i in keep]
        running.cache = layers if keep else None
        running.mask = mask if keep else None

    def _join(self, running: _Running, seqs: list[Sequence], cache: list, mask: Any) -> None:
        """Adds prefilled sequences to the running batch, left-padding the shorter cache."""
        import torch
        import torch.nn.functional as F

        if not running.seqs:
            running.seqs, running.cache, running.mask = seqs, cache, mask
            return
        a, b = running.mask.shape[1], mask.shape[1]
        width = max(a, b)

        def pad(t: Any, have: int) -> Any:  # (rows, heads, length, dim) or (rows, length)
            extra = width - have
            if not extra:
                return t
            return F.pad(t, (0, 0, extra, 0)) if t.dim() == 4 else F.pad(t, (extra, 0))

        running.cache = [
            (torch.cat([pad(k1, a), pad(k2, b)]), torch.cat([pad(v1, a), pad(v2, b)]))
            for (k1, v1), (k2, v2) in zip(running.cache, cache, strict=True)
        ]
        running.mask = torch.cat([pad(running.mask, a), pad(mask, b)])
        running.seqs = running.seqs + seqs

    # -- tokens ----------------------------------------------------------------------------------
    def _advance(self, seqs: list[Sequence], logits: Any) -> list[int]:
        """Picks each sequence's next token, streams its new text; the rows still going."""
        chosen = self._choose(seqs, logits)
        self.generated += len(chosen)
        keep = []
        for row, (seq, token) in enumerate(zip(seqs, chosen, strict=True)):
            if seq.cancelled or (token == self.eos and not seq.ignore_eos):  # cancelled: its client left
                self._finish(seq, "stop")
                continue
            seq.tokens.append(token)
            text = self.tokenizer.decode(seq.tokens, skip_special_tokens=True)
            text, stopped = apply_stop(text, seq.stops)
            # A multi-byte character split across tokens decodes to U+FFFD until it is whole.
            if not stopped and text.endswith("\ufffd"):
                text = seq.sent
            if len(text) > len(seq.sent) and text.startswith(seq.sent):
                seq.emit("delta", text[len(seq.sent) :])
                seq.sent = text
            if stopped:
                self._finish(seq, "stop")
            elif len(seq.tokens) >= seq.max_new:
                self._finish(seq, "length")
            else:
                keep.append(row)
        return keep

    def _choose(self, seqs: list[Sequence], logits: Any) -> list[int]:
        import torch

        logits = logits.float()
        greedy = logits.argmax(-1).tolist()
        out = []
        for row, seq in enumerate(seqs):
            if seq.temperature <= 0:
                out.append(greedy[row])
                continue
            probs = torch.softmax(logits[row] / seq.temperature, -1)
            if seq.top_p < 1.0:
                ordered, order = probs.sort(descending=True)
                outside = ordered.cumsum(-1) - ordered > seq.top_p  # keeps the smallest set reaching top_p
                probs = probs.scatter(0, order[outside], 0.0)
            out.append(int(torch.multinomial(probs, 1, generator=seq.generator)))
        return out

    def _finish(self, seq: Sequence, reason: str) -> None:
        text = self.tokenizer.decode(seq.tokens, skip_special_tokens=True)
        text, _ = apply_stop(text, seq.stops)
        if len(text) > len(seq.sent) and text.startswith(seq.sent):
            seq.emit("delta", text[len(seq.sent) :])
            seq.sent = text
        seq.emit("done", Finish(text, len(seq.prompt_ids), len(seq.tokens), reason))
