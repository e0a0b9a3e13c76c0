"""Training configuration: one dataclass, shipped YAML presets, and the precedence preset < file < flags.

A YAML file sets any field at the top level and, under ``stages: {1: {...}, 2: {...}}``, values for one stage of
the curriculum only (they win over the top level). Unknown keys and bad values are refused naming the key.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from vcritic.errors import UsageError, VcriticError
from vcritic.model.resolution import out_of_range

PRESET_DIR = Path(__file__).with_name("presets")
DEFAULT_CONFIG_PRESET = "paper"
MAX_SEED = 2**32 - 1
# The language-model projections LoRA adapts (Llama/Qwen names; peft matches them inside the language model only),
# then those of Qwen3.5's linear-attention (gated delta net) layers.
LM_PROJECTIONS = (
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    "in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj",
)  # fmt: skip


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class TrainConfig:
    """Everything one training run needs besides model, data and output. Defaults are the paper's stage 1."""

    steps: int = field(default=100_000, metadata=_help("optimizer steps"))
    batch_size: int = field(default=8, metadata=_help("dialogues per forward pass, per process (micro-batch)"))
    grad_accum: int = field(
        default=16,
        metadata=_help("micro-batches per optimizer step; samples per step = batch_size x grad_accum x processes"),
    )
    lr: float = field(default=1e-3, metadata=_help("peak learning rate, reached after the warm-up"))
    min_lr: float = field(default=1e-4, metadata=_help("learning rate at the end of the cosine decay"))
    warmup_lr: float = field(default=1e-5, metadata=_help("learning rate at step 0, raised linearly to lr"))
    warmup_steps: int = field(default=5000, metadata=_help("steps of linear warm-up"))
    schedule: str = field(default="cosine", metadata=_help("after warm-up: cosine (to min_lr) or constant"))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay"))
    max_grad_norm: float = field(default=1.0, metadata=_help("clip gradients to this norm; 0 disables clipping"))
    seed: int = field(default=2403, metadata=_help("seed for initialisation, data order and dropout"))
    lora_r: int = field(
        default=16,
        metadata=_help("LoRA rank on the language model; 0: no LoRA, train_modules train in full (whole-model output)"),
    )
    lora_alpha: float = field(default=32, metadata=_help("LoRA alpha"))
    lora_dropout: float = field(default=0.1, metadata=_help("LoRA dropout"))
    lora_targets: list[str] = field(
        default_factory=lambda: list(LM_PROJECTIONS),
        metadata=_help("names of the language-model linear layers that get LoRA"),
    )
    train_modules: list[str] = field(
        default_factory=lambda: ["projector"],
        metadata=_help(
            "modules trained in full and saved with the adapter (peft modules_to_save): projector, lm_head, "
            "vision, or a module name of the model; with lora_r 0 also language_model"
        ),
    )
    freeze_vision: bool = field(default=True, metadata=_help("keep the vision encoder frozen (false: train it)"))
    gradient_checkpointing: bool = field(default=False, metadata=_help("recompute activations to save memory"))
    log_every: int = field(default=10, metadata=_help("steps between metric lines in metrics.jsonl and the log"))
    save_every: int = field(default=1000, metadata=_help("steps between checkpoints; 0: only at the end"))
    keep_checkpoints: int = field(default=2, metadata=_help("checkpoints kept on disk (the newest)"))
    eval_every: int = field(default=0, metadata=_help("steps between evaluations on val.jsonl; 0: never"))
    eval_samples: int = field(
        default=256, metadata=_help("validation dialogues evaluated at most, taken in turn from each task")
    )
    workers: int = field(default=0, metadata=_help("DataLoader worker processes decoding images"))
    max_pixels: int | None = field(
        default=None,
        metadata=_help(
            "pixel budget per image (Qwen2-VL/2.5-VL), as score --max-pixels; null: the model's own, or what the "
            "--model trained directory was trained at"
        ),
    )
    image_size: int | None = field(
        default=None,
        metadata=_help("resize every image to this square side first, as score --image-size; null: as max_pixels"),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, _coerce(f.name, value, f.type))
        positive = ("steps", "batch_size", "grad_accum", "lora_alpha")
        for name in positive:
            if getattr(self, name) <= 0:
                _bad(name, getattr(self, name), "must be > 0")
        not_negative = ("warmup_steps", "weight_decay", "max_grad_norm", "log_every", "save_every", "eval_every")
        for name in (*not_negative, "workers", "min_lr", "warmup_lr", "lora_r"):
            if getattr(self, name) < 0:
                _bad(name, getattr(self, name), "must be >= 0")
        found = out_of_range(self.max_pixels, self.image_size)
        if found is not None:
            name, value, low, high = found
            _bad(name, value, f"must be from {low} to {high} (or null)")
        for name in ("lr", "min_lr", "warmup_lr"):
            if not math.isfinite(getattr(self, name)):
                _bad(name, getattr(self, name), "must be a finite number")
        if self.lr <= 0:
            _bad("lr", self.lr, "must be > 0")
        if self.min_lr > self.lr:
            _bad("min_lr", self.min_lr, f"must not exceed lr ({self.lr})")
        if not 0 <= self.lora_dropout < 1:
            _bad("lora_dropout", self.lora_dropout, "must be in [0, 1)")
        if self.schedule not in ("cosine", "constant"):
            _bad("schedule", self.schedule, "use cosine or constant")
        if self.keep_checkpoints < 1:
            _bad("keep_checkpoints", self.keep_checkpoints, "must be >= 1")
        if self.log_every == 0:
            _bad("log_every", 0, "must be >= 1")
        if not self.lora_targets:
            _bad("lora_targets", self.lora_targets, "name at least one layer")
        if self.lora_r == 0 and not self.train_modules:
            _bad("train_modules", self.train_modules, "must name a module when lora_r is 0 (nothing would train)")
        if self.eval_samples < 1:
            _bad("eval_samples", self.eval_samples, "must be >= 1")
        if not 0 <= self.seed <= MAX_SEED:  # numpy's and torch's generators take 32-bit unsigned seeds
            _bad("seed", self.seed, f"must be in [0, {MAX_SEED}]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def samples_per_step(self) -> int:
        """Samples per optimizer step on one process."""
        return self.batch_size * self.grad_accum


class ConfigValueError(VcriticError):
    """A config key with a bad value; ``key`` names it, so a command can tell a bad flag (a usage error) from a bad
    config file."""

    def __init__(self, key: str, why: str, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.key, self.why = key, why


def _bad(key: str, value: Any, why: str):
    raise ConfigValueError(
        key, why, f"config key {key!r}: {value!r} {why}", hint="fix it in the config file or the flag"
    )


def _coerce(key: str, value: Any, annotation: str) -> Any:
    """Check ``value`` against the field's annotation (a string under postponed evaluation)."""
    if annotation == "bool":
        if not isinstance(value, bool):
            _bad(key, value, "must be true or false")
        return value
    if annotation == "int | None":
        return None if value is None else _coerce(key, value, "int")
    if annotation == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            _bad(key, value, "must be a whole number")
        return value
    if annotation == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML 1.1 reads 1e-3 (no dot) as a string.
            try:
                return float(value) if isinstance(value, str) else _bad(key, value, "must be a number")
            except ValueError:
                _bad(key, value, "must be a number")
        return float(value)
    if annotation == "str":
        if not isinstance(value, str):
            _bad(key, value, "must be text")
        return value
    if annotation == "list[str]":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            _bad(key, value, "must be a list of names")
        return list(value)
    return value


FIELDS = tuple(f.name for f in fields(TrainConfig))


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml") if not p.stem.startswith("deepspeed"))


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    from vcritic.base.limits import MAX_YAML_BYTES, check_input

    check_input(path, MAX_YAML_BYTES, "a config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise VcriticError(f"cannot read config {path}: {err.strerror}", hint="check the path") from None
    except yaml.YAMLError as err:
        raise VcriticError(f"{path} is not valid YAML: {str(err).splitlines()[0]}", hint="fix the file") from None
    except (UnicodeDecodeError, RecursionError) as err:
        reason = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else "nested too deeply"
        raise VcriticError(f"{path} is not a config file: {reason}", hint="fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VcriticError(f"{path} must be a mapping of config keys", hint=f"keys: {', '.join(FIELDS)}")
    return data


def stage_values(data: dict[str, Any], stage: int, source: str) -> dict[str, Any]:
    """Top-level values of a config mapping, overridden by its ``stages: {N: ...}`` entry for ``stage``."""
    values = {k: v for k, v in data.items() if k != "stages"}
    stages = data.get("stages") or {}
    if not isinstance(stages, dict):
        raise VcriticError(f"{source}: 'stages' must map stage numbers to values", hint="e.g. stages: {1: {lr: 1e-3}}")
    for key, override in stages.items():
        if str(key) not in ("1", "2", "3"):
            raise VcriticError(f"{source}: unknown stage {key!r} under 'stages'", hint="stages are 1, 2 and 3")
        if not isinstance(override, dict):
            raise VcriticError(f"{source}: stages.{key} must be a mapping of config keys")
        if str(key) == str(stage):
            values.update(override)
        else:
            _check_keys(override, f"{source} (stages.{key})")
    _check_keys(values, source)
    return values


def _check_keys(values: dict[str, Any], source: str) -> None:
    for key in values:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + f"known keys: {', '.join(FIELDS)}"
            raise VcriticError(f"unknown config key {key!r} in {source}", hint=hint)


def _is_file_config(config: str) -> bool:
    """Whether ``--config`` names a YAML file rather than a preset. A preset name wins over a same-named folder in
    the working directory (e.g. a model called 'tiny')."""
    path = Path(config).expanduser()
    return path.suffix in (".yaml", ".yml") or path.is_file() or (config not in presets() and path.exists())


def explicit_keys(stage: int, config: str | None, overrides: dict[str, Any] | None) -> set[str]:
    """The keys the user set: flags given (not None) and the keys of a YAML ``--config`` file (not a preset's)."""
    keys = {k for k, v in (overrides or {}).items() if v is not None}
    if config and _is_file_config(config) and Path(config).expanduser().is_file():
        keys |= set(stage_values(read_yaml(Path(config).expanduser()), stage, config))
    return keys


def load_config(stage: int, config: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config of one stage: the ``paper`` preset, then ``config`` (a preset name or a YAML file), then
    ``overrides`` (command-line flags; None values are ignored)."""
    default = DEFAULT_CONFIG_PRESET
    values = stage_values(read_yaml(PRESET_DIR / f"{default}.yaml"), stage, f"preset {default!r}")
    if config:
        path = Path(config).expanduser()
        if _is_file_config(config):
            if not path.is_file():
                problem = "is a folder, not a YAML file" if path.exists() else "does not exist"
                raise VcriticError(f"config file {path} {problem}", hint=f"or use a preset: {', '.join(presets())}")
            values.update(stage_values(read_yaml(path), stage, str(path)))
        elif (PRESET_DIR / f"{config}.yaml").is_file() and config in presets():
            values.update(stage_values(read_yaml(PRESET_DIR / f"{config}.yaml"), stage, f"preset {config!r}"))
        else:
            close = difflib.get_close_matches(config, presets(), n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + f"presets: {', '.join(presets())}"
            raise UsageError(f"unknown config {config!r}: not a preset or a YAML file", hint=hint)
    if overrides:
        values.update({k: v for k, v in overrides.items() if v is not None})
        _check_keys(values, "the command line")
    return TrainConfig(**values)
