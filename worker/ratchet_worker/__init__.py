"""Ratchet model worker: train (TRL + PEFT), serve (OpenAI-compatible), tiny local policy."""

__version__ = "0.1.0"
