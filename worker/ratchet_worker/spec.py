"""The training job spec: the JSON document the orchestrator hands to `ratchet-worker train`.

Parsing is strict: an unknown key or a wrong type is an error naming the field, because a typo
in a hyperparameter that silently falls back to a default wastes a whole training run.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .registry import METHODS, NEEDS_REWARD_MODEL



class SpecError(ValueError):
    """A job spec (or method config) that cannot be run; the message names the field."""


@dataclass
class LoraSpec:
    """PEFT LoRA settings; `enabled: false` means full fine-tuning."""

    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    # "all-linear" adapts every linear layer except the output head, which suits any architecture.
    target_modules: list[str] | str = "all-linear"
    # Also save the adapter folded into the base weights as a full model folder, the artifact the
    # run registers. A loop that trains each round on top of the last merged model stacks rounds
    # (merge-and-stack) instead of relearning everything from the base each time.
    merge: bool = False


@dataclass
class Hyperparameters:
    """Settings shared by every method. learning_rate None means the method's own default."""

    learning_rate: float | None = None
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    warmup_steps: float = 0.0
    weight_decay: float = 0.0
    lr_scheduler_type: str = "linear"
    max_grad_norm: float = 1.0
    logging_steps: int = 1
    save_steps: int = 50
    save_total_limit: int = 2
    gradient_checkpointing: bool = False
    precision: str = "auto"


@dataclass
class JobSpec:
    method: str
    base_model: str
    dataset: str
    output_dir: str
    eval_dataset: str | None = None
    seed: int = 0
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    lora: LoraSpec = field(default_factory=LoraSpec)
    # Method-specific settings, checked against that method's config dataclass.
    method_config: dict[str, Any] = field(default_factory=dict)
    # true: continue from the newest checkpoint in output_dir if any; a string: that checkpoint.
    resume: bool | str = False
    # rl only: the reward model (adapter folder or full model) and, for an adapter, its base.
    reward_model: str | None = None
    reward_base_model: str | None = None
    # Free-form labels copied into the manifest (run id, dataset version, ...).
    metadata: dict[str, Any] = field(default_factory=dict)


T = TypeVar("T")


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Check a JSON value against a (simple) type annotation; ints are accepted as floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _check_type(value, option, where)
            except SpecError:
                continue
        raise SpecError(f"{where}: {value!r} is not a valid value")
    if annotation is Any:
        return value
    if annotation is type(None):
        if value is None:
            return None
        raise SpecError(f"{where}: expected null")
    if origin is list:
        if not isinstance(value, list):
            raise SpecError(f"{where}: expected a list")
        (item,) = typing.get_args(annotation)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{where}: expected an object")
        return value
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, where)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation in (str, bool) and type(value) is annotation:
        return value
    name = getattr(annotation, "__name__", str(annotation))
    raise SpecError(f"{where}: expected {name}, got {value!r}")


def from_dict(cls: type[T], data: Any, where: str = "spec") -> T:
    """Build a dataclass from a JSON object, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected an object")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(unknown)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _check_type(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SpecError(f"{where}.{name}: required")
    return cls(**kwargs)


def parse_spec(data: Any) -> JobSpec:
    spec = from_dict(JobSpec, data)
    if spec.method not in METHODS:
        raise SpecError(f"spec.method: must be one of {', '.join(METHODS)}, got {spec.method!r}")
    if not Path(spec.base_model).is_dir():
        raise SpecError(f"spec.base_model: no model folder at {spec.base_model}")
    if not Path(spec.dataset).exists():
        raise SpecError(f"spec.dataset: no dataset at {spec.dataset}")
    if spec.method in NEEDS_REWARD_MODEL and not spec.reward_model:
        raise SpecError(f"spec.reward_model: required for method '{spec.method}'")
    if spec.hyperparameters.precision not in ("auto", "bf16", "fp16", "fp32"):
        raise SpecError("spec.hyperparameters.precision: must be auto, bf16, fp16 or fp32")
    return spec


def load_spec(path: str | Path) -> JobSpec:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise SpecError(f"cannot read job spec {path}: {err}") from err
    except json.JSONDecodeError as err:
        raise SpecError(f"job spec {path} is not valid JSON: {err}") from err
    return parse_spec(data)
