"""Stage configurations: dataclasses filled from a YAML file, then overridden by command-line flags.

Unknown keys are rejected (a typo in a config file must not be silently ignored), and values are
converted to the field's type, so ``lr: 5e-5`` in YAML and ``--lr 5e-5`` on the command line agree.

    config = load_config(TrainConfig, "train.yaml", overrides={"batch_size": 32})
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from synthembed.errors import DataError, SynthEmbedError

C = TypeVar("C")


@dataclasses.dataclass
class TrainConfig:
    """Everything `synthembed train` needs (METHODS.md §1.4 defaults where the paper gives them)."""

    data: str | tuple[str, ...] = ""  # triplet/pair/graded file(s), synthesis folder(s) or a HF dataset; several are concatenated
    curriculum: str | None = None  # graded records only: curriculum | reverse | random | single:N (METHODS.md 3.2)
    stage_fractions: tuple[float, ...] | None = None  # curriculum stage lengths (one per stage; default equal)
    output: str = ""  # the model folder to write
    model: str = "embedded"  # any reference load_encoder accepts
    pooling: str | None = None  # registry name; None keeps the model's pooling (mean for plain backbones)
    mlp_train_only: bool = False  # cls_mlp: drop the MLP at inference (SimCSE unsupervised style)
    anchor_column: str = "anchor"
    positive_column: str = "positive"
    negative_column: str | None = "negative"  # None: pairs only (in-batch negatives)
    dataset_split: str = "train"  # for Hugging Face datasets
    limit: int | None = None  # use only the first N usable rows
    max_bad_rows: float = 0.5  # more than this share of rows skipped (malformed, empty) is an error
    max_length: int = 32
    batch_size: int = 64
    lr: float = 5e-5
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    temperature: float = 0.05
    hard_negative_weight: float = 0.0
    mlm_weight: float = 0.0  # auxiliary MLM term (encoders only); SimCSE used 0.1
    mlm_probability: float = 0.15
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 ("auto": bf16/fp16 where the hardware has it, else fp32)
    seed: int = 42
    data_dir: str | None = None  # benchmark data folder with sts/stsb.dev.tsv, sts/sickr.trial.tsv
    dev_tasks: tuple[str, ...] = ("stsb", "sickr")
    eval_steps: int | None = None  # dev evaluation every N steps (None: about 4 times per run)
    eval_on_start: bool = True  # score the untrained model first (step 0 of the dev curve)
    eval_batch_size: int = 64
    logging_steps: int = 10
    keep_checkpoints: bool = False  # keep output/checkpoints after a successful run
    resume: bool = True  # continue from the last checkpoint in output/checkpoints when there is one
    save_steps: int | None = None  # resumption checkpoint every N steps; None: every checkpoint_minutes
    checkpoint_minutes: float = 30.0  # resumption checkpoint after this much training time (0: none)
    # scale (docs/gpu.md)
    lora_r: int | None = None  # LoRA rank (needs peft); None: full fine-tuning
    lora_alpha: float | None = None  # None: 2 * lora_r
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("all-linear",)
    lora_merge: bool = False  # write the adapter merged into the weights (standalone model) instead of the adapter
    model_dtype: str | None = None  # backbone weights: float32 (default) | bfloat16 | float16; half needs lora_r
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (less memory, ~30% slower)
    mini_batch_size: int | None = None  # cached (GradCache) InfoNCE: encode in chunks of N, memory bounded by N
    dataloader_workers: int | None = None  # tokenize batches in N loader processes; None: 4 on CUDA, 0 on CPU

    def validate(self) -> None:
        """Raise SynthEmbedError on values that cannot work (before any model is loaded)."""
        if not self.data:
            raise SynthEmbedError("no training data given (--data or `data:` in the config)")
        if not self.output:
            raise SynthEmbedError("no output folder given (--output or `output:` in the config)")
        checks = [
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (0 <= self.max_bad_rows <= 1, "max_bad_rows must be in [0, 1]"),
            (self.max_length >= 1, "max_length must be >= 1"),
            (self.lr > 0, "lr must be positive"),
            (self.temperature > 0, "temperature must be positive"),
            (self.epochs > 0 or (self.max_steps or 0) > 0, "epochs or max_steps must be positive"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.precision in ("auto", "fp32", "bf16", "fp16"), "precision must be auto, fp32, bf16 or fp16"),
            (self.eval_steps is None or self.eval_steps >= 1, "eval_steps must be >= 1"),
            (self.curriculum is None or isinstance(self.data, str) or len(self.data) == 1,
             "a curriculum trains on one graded data source; give one --data"),
            (self.save_steps is None or self.save_steps >= 1, "save_steps must be >= 1"),
            (self.checkpoint_minutes >= 0, "checkpoint_minutes must be >= 0"),
            (self.lora_r is None or self.lora_r >= 0, "lora_r must be >= 0 (0 or unset: no LoRA)"),
            (0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
            (self.lora_alpha is None or self.lora_alpha > 0, "lora_alpha must be positive"),
            (not self.lora_merge or bool(self.lora_r), "lora_merge needs lora_r"),
            (self.mini_batch_size is None or self.mini_batch_size >= 1, "mini_batch_size must be >= 1"),
            (self.mini_batch_size is None or self.mlm_weight == 0,
             "the cached loss (mini_batch_size) does not combine with the MLM term (mlm_weight)"),
            (self.model_dtype in (None, "float32", "bfloat16", "float16"),
             "model_dtype must be float32, bfloat16 or float16"),
            (self.model_dtype in (None, "float32") or bool(self.lora_r),
             "a half-precision model_dtype needs lora_r: the frozen base may be bf16/fp16, trained weights stay fp32"),
            (self.dataloader_workers is None or self.dataloader_workers >= 0, "dataloader_workers must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise SynthEmbedError(message)

    @property
    def data_sources(self) -> list[str]:
        """`data` as a list (one or several sources)."""
        return [self.data] if isinstance(self.data, str) else list(self.data)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe values (tuples as lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


def _convert(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Coerce `value` to the dataclass field type `annotation` (given as a string or type)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {**vars(typing), **vars(types), "Any": Any})  # noqa: S307 (our own annotations)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, key, source)
            except SynthEmbedError as exc:
                errors.append(str(exc))
        raise SynthEmbedError(errors[0] if errors else f"{source}: {key}: invalid value {value!r}")
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise SynthEmbedError(f"{source}: {key}: expected a list, got {value!r}")
        return tuple(_convert(item, args[0] if args else str, key, source) for item in items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise SynthEmbedError(f"{source}: {key}: expected true/false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise SynthEmbedError(f"{source}: {key}: expected a number, got {value!r}")
        try:
            converted = annotation(value)
        except (TypeError, ValueError):
            raise SynthEmbedError(f"{source}: {key}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is int and isinstance(value, float) and value != converted:
            raise SynthEmbedError(f"{source}: {key}: expected an integer, got {value!r}")
        return converted
    if annotation is str:
        if isinstance(value, (dict, list, tuple)):
            raise SynthEmbedError(f"{source}: {key}: expected a string, got {value!r}")
        return str(value)
    return value


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; DataError if unreadable or not a mapping."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(path, f"cannot read config: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise DataError(path, f"invalid YAML: {getattr(exc, 'problem', exc)}", None if line is None else line + 1) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise DataError(path, "a config file must hold a mapping of key: value")
    return loaded


def build_config(cls: type[C], values: dict[str, Any], source: str) -> C:
    """Instantiate dataclass `cls` from `values`, rejecting unknown keys and converting types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SynthEmbedError(f"{source}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    converted = {key: _convert(value, fields[key].type, key, source) for key, value in values.items()}
    return cls(**converted)


def load_config(cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """`cls` from the YAML file at `path` (optional) with `overrides` (non-None values) on top."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update({str(k).replace("-", "_"): v for k, v in read_yaml_mapping(path).items()})
        build_config(cls, values, str(path))  # report file errors against the file
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build_config(cls, values, str(path) if path is not None else "config")
