"""Hub-ready model cards: sentence-transformers' own card, completed with how the model was made.

sentence-transformers writes ``README.md`` when a model is saved (``SentenceTransformerModelCardData``:
YAML metadata, architecture, a usage snippet, the evaluator's metrics and the training logs when the
model was trained). `write_model_card` keeps that card and adds, through ``huggingface_hub.ModelCard``:

- metadata the hub reads: ``library_name: sentence-transformers``, ``pipeline_tag: sentence-similarity``,
  tags, ``base_model``, ``datasets`` (hub ids only), ``license`` (only when given: a licence is the
  publisher's decision, bounded by the base model's and the data's terms, which the card lists);
- the usage snippet made to work as written for custom-module models (``trust_remote_code=True``);
  its model id stays sentence-transformers' placeholder, which ``push_to_hub`` replaces by the repo id;
- a "How this model was made" section: the training recipe, the provenance of synthesized training
  data read from the synthesis folder's ``manifest.json`` (generator model and file hash, method,
  prompt/pool hashes, counts kept and dropped by reason), licence notes of reused anchor data, the
  dev-set evaluation table and how the checkpoint was selected.

The section is rewritten (not appended twice) when the card is written again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from synthembed.io.atomic import atomic_write_text

SECTION_START = "<!-- synthembed:provenance -->"
SECTION_END = "<!-- /synthembed:provenance -->"
PLACEHOLDER_ID = "sentence_transformers_model_id"  # sentence-transformers' snippet id, replaced on push_to_hub
PACKAGED_MODELS = {  # SynthEmbed's packaged model names -> the hub models they are copies of
    "embedded": "sentence-transformers/all-MiniLM-L6-v2",
    "embedded-llm": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
BASE_TAGS = ["sentence-transformers", "sentence-similarity", "feature-extraction", "synthembed"]

# Licence terms of anchor data SynthEmbed's recipes reuse (SynCSE-partial rewrites SNLI/MNLI premises).
ANCHOR_LICENCES = {
    "snli": "SNLI: CC BY-SA 4.0 (premises are Flickr30k captions)",
    "mnli": "MultiNLI: mostly the OANC's permissive terms; its fiction genre is under several permissive "
    "licences (one CC BY-SA 3.0)",
    "multi_nli": "MultiNLI: mostly the OANC's permissive terms; its fiction genre is under several permissive "
    "licences (one CC BY-SA 3.0)",
    "wiki": "Wikipedia text: CC BY-SA",
    "sick": "SICK: CC BY-NC-SA 3.0 (non-commercial)",
    "stsb": "STS Benchmark: gold scores CC BY-SA; texts keep their sources' terms",
}
PARTIAL_NOTE = (
    "SynCSE-partial (``mode: partial``) keeps the input sentences as anchors and asks the generator for "
    "positives and negatives, so the training data contains the anchor corpus's text: SynCSE's released "
    "data reuses the SNLI and MultiNLI premises (SNLI: CC BY-SA 4.0; MultiNLI: mostly OANC terms, "
    "fiction under several permissive licences)."
)


def write_model_card(
    folder: str | Path,
    record: Mapping[str, Any] | None = None,
    *,
    license: str | None = None,
    model_id: str | None = None,
) -> Path:
    """Complete the model card of the saved model in `folder` (see the module docstring); returns its path.

    `record` is what made the model (``train_config.yaml``'s content; read from the folder when omitted).
    """
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    path = folder / "README.md"
    if record is None:
        record = _read_yaml(folder / "train_config.yaml") or {}
    card = ModelCard(path.read_text(encoding="utf-8")) if path.is_file() else ModelCard("---\n---\n")
    if card.data is None:
        card.data = ModelCardData()
    custom_code = _custom_module_types(folder)

    data = card.data
    data.library_name = "sentence-transformers"
    data.pipeline_tag = "sentence-similarity"
    method_tags = [t for t in (_method_tag(record),) if t]
    data.tags = _unique([*(data.tags or []), *BASE_TAGS, *method_tags, *(["custom_code"] if custom_code else [])])
    base = _base_model(record)
    if base and not getattr(data, "base_model", None):
        data.base_model = base
    hub_datasets = [d for d in _data_sources(record) if _is_hub_dataset(d)]
    if hub_datasets:
        data.datasets = _unique([*(getattr(data, "datasets", None) or []), *hub_datasets])
    if license:
        data.license = license

    text = card.text
    if custom_code:
        text = text.replace(f'SentenceTransformer("{PLACEHOLDER_ID}")', f'SentenceTransformer("{PLACEHOLDER_ID}", trust_remote_code=True)')
    if model_id:
        text = text.replace(f'SentenceTransformer("{PLACEHOLDER_ID}"', f'SentenceTransformer("{model_id}"')
    if "## Usage" not in text:
        text = text.rstrip() + "\n\n" + _usage_section(model_id or PLACEHOLDER_ID, bool(custom_code)) + "\n"
    section = _provenance_section(folder, record, custom_code, license)
    text = _replace_section(text, section)
    card.text = text
    atomic_write_text(path, str(card))
    return path


# --- The section --------------------------------------------------------------------------------------


def _provenance_section(folder: Path, record: Mapping[str, Any], custom_code: list[str], license: str | None) -> str:
    lines = [SECTION_START, "## How this model was made (SynthEmbed)", ""]
    lines += _recipe_lines(record, folder)
    lines += _data_lines(record)
    lines += _evaluation_lines(folder, record)
    lines += ["### Loading", ""]
    if custom_code:
        lines.append(
            f"The folder carries its own module code ({', '.join(f'`{c}`' for c in custom_code)}); load with "
            "`SentenceTransformer(<id or path>, trust_remote_code=True)`. Nothing else beyond "
            "sentence-transformers is needed (SynthEmbed need not be installed)."
        )
    else:
        lines.append(
            "Every module is sentence-transformers' own: `SentenceTransformer(<id or path>)` loads it, and "
            "MTEB loads it like any sentence-transformers model. SynthEmbed need not be installed."
        )
    lines += ["", "### Licence", ""]
    lines.append(
        f"Model licence: {license}." if license else
        "No licence was set by the trainer: before publishing, choose one compatible with the base model's "
        "licence and the data terms listed above (`synthembed export MODEL OUT --license ID` writes it)."
    )
    lines += ["", SECTION_END]
    return "\n".join(lines)


def _recipe_lines(record: Mapping[str, Any], folder: Path) -> list[str]:
    if not record:
        return ["### Training recipe", "", "No training record (`train_config.yaml`) was found: this model was "
                "saved or exported without SynthEmbed training.", ""]
    fit = record.get("fit", {}) or {}
    config = record.get("config") or record.get("refine") or {}
    result = record.get("result", {}) or {}
    loss = fit.get("loss") or {}
    lines = ["### Training recipe", ""]
    rows = [
        ("Method", record.get("method")),
        ("Base model", _base_model(record) or config.get("model")),
        ("Pooling", _pooling_text(config)),
        ("Loss", ", ".join(f"{k}={v}" for k, v in loss.items()) if isinstance(loss, Mapping) else loss),
        ("Max sequence length", _max_length_note(fit, config)),
        ("Batch size", f"{fit.get('batch_size')} per process x {fit.get('world_size', 1)} process(es)"
         if fit.get("batch_size") is not None else None),
        ("Learning rate", fit.get("lr")),
        ("Epochs / max steps", f"{fit.get('epochs')} / {fit.get('max_steps')}" if fit else None),
        ("Steps run", result.get("steps_done")),
        ("Precision", fit.get("resolved_precision")),
        ("Seed", fit.get("seed")),
        ("Training rows", fit.get("train_rows")),
    ]
    lines += ["| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows if v not in (None, "", {})]
    versions = record.get("versions") or {}
    if versions:
        lines += ["", "Software: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    lines += ["", f"The complete configuration is in `train_config.yaml`." if (folder / "train_config.yaml").is_file()
              else "", ""]
    return [line for line in lines if line is not None]


def _pooling_text(config: Mapping[str, Any]) -> str:
    pooling = config.get("pooling") or "kept from the base model"
    if pooling == "cls_mlp" and config.get("mlp_train_only"):
        return "cls_mlp with the MLP in training only (SimCSE): the saved model pools CLS without it"
    return str(pooling)


def _data_lines(record: Mapping[str, Any]) -> list[str]:
    sources = _data_sources(record)
    lines = ["### Training data provenance", ""]
    if not sources:
        return lines + ["Not recorded.", ""]
    skipped = record.get("skipped_rows") or record.get("skipped_records") or record.get("skipped")
    for source in sources:
        lines.append(f"**{source}**")
        lines.append("")
        manifest_dir = _synthesis_folder(source)
        if manifest_dir is None:
            lines.append("- Not a SynthEmbed synthesis folder (no `manifest.json`): provenance as its publisher states.")
            notes = _licence_notes([source])
            lines += [f"- Licence: {n}" for n in notes]
            lines.append("")
            continue
        lines += _manifest_lines(manifest_dir)
        lines.append("")
    if skipped:
        lines += [f"Rows skipped when loading for training: {_cell(skipped)}.", ""]
    return lines


def _manifest_lines(folder: Path) -> list[str]:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    config = manifest.get("config", {}) or {}
    task_config = config.get("task_config", {}) or {}
    counts = manifest.get("counts", {}) or {}
    generator = config.get("model")
    lines = [
        f"- Synthesis folder: `{folder}` ({'complete' if manifest.get('complete') else 'INCOMPLETE'} run)",
        f"- Method: {config.get('task')}" + (f", mode {task_config['mode']}" if task_config.get("mode") else ""),
        f"- Generator: `{generator}` via the {config.get('backend')} backend, seed {config.get('seed')}",
    ]
    digest = _file_sha256(generator)
    if digest:
        lines.append(f"- Generator weights sha256: `{digest}`")
    elif config.get("model_sha256"):
        lines.append(f"- Generator file sha256: `{config['model_sha256']}`")
    else:
        lines.append("- Generator file hash: not available (the model is not a local file here)")
    pools = task_config.get("pools")
    if isinstance(pools, Mapping):
        described = [f"sha256 `{pools['sha256']}`"] if pools.get("sha256") else []
        described += [f"{k} {v}" for k, v in pools.items() if k != "sha256" and isinstance(v, (int, float, str))]
        sources = pools.get("sources")
        if isinstance(sources, Mapping):
            described.append("files " + ", ".join(f"`{Path(str(v)).name}`" for v in sources.values()))
        lines.append("- Prompts and pools: " + "; ".join(described))
    sampling = {k: task_config[k] for k in ("temperature", "top_p", "max_new_tokens", "n_examples") if k in task_config}
    if sampling:
        lines.append("- Sampling: " + ", ".join(f"{k}={v}" for k, v in sampling.items()))
    dropped = counts.get("dropped") or {}
    lines.append(
        f"- Kept: {counts.get('written', 0)} records; dropped: {sum(dropped.values()) if dropped else 0}"
        + (" (" + ", ".join(f"{reason} {n}" for reason, n in sorted(dropped.items())) + ")" if dropped else "")
    )
    if counts.get("input_skipped"):
        lines.append("- Input rows skipped: " + ", ".join(f"{k} {v}" for k, v in counts["input_skipped"].items()))
    inputs = [str(v) for k, v in config.items() if k in ("input", "inputs", "dataset", "anchors") and v]
    if inputs:
        lines.append("- Anchor input: " + ", ".join(inputs))
    elif task_config.get("mode") == "partial":
        lines.append("- Anchor input: not recorded in the manifest")
    if task_config.get("mode") == "partial":
        lines.append(f"- Licence of reused anchors: {PARTIAL_NOTE}")
        notes = _licence_notes(inputs)
        lines += [f"  - {n}" for n in notes]
    elif task_config.get("mode") == "scratch":
        lines.append("- Anchors were written by the generator (SynCSE-scratch): no corpus text is reused; the "
                     "generator's own licence terms apply to its outputs.")
    return lines


def _evaluation_lines(folder: Path, record: Mapping[str, Any]) -> list[str]:
    lines = ["### Evaluation and checkpoint selection", ""]
    result = record.get("result", {}) or {}
    fit = record.get("fit", {}) or {}
    curve = _read_tsv(folder / "dev_curve.tsv")
    metric = fit.get("selection_metric")
    if result.get("best_metric") is not None:
        lines.append(
            f"The checkpoint kept is the one with the best `{metric}` on the dev sets only (never test sets), "
            f"evaluated every {fit.get('eval_steps')} steps: step {result.get('best_checkpoint_step')}, "
            f"{metric} = {float(result['best_metric']):.2f}. Test-set scores are not used for any choice."
        )
    elif record:
        lines.append("No dev-set evaluation ran during training: the final step's weights are kept.")
    if curve:
        best_step = str(result.get("best_checkpoint_step"))
        keys = [k for k in curve[0] if k not in ("step", "epoch")]
        lines += ["", "Dev-set scores (Spearman x 100) during training, the kept checkpoint in bold:", ""]
        lines += ["| step | epoch | " + " | ".join(k.removeprefix("eval_") for k in keys) + " |",
                  "|---" * (len(keys) + 2) + "|"]
        for row in curve:
            bold = "**" if row.get("step") == best_step else ""
            cells = [row.get("step", ""), row.get("epoch", "")] + [row.get(k, "") for k in keys]
            lines.append("| " + " | ".join(f"{bold}{c}{bold}" if c else "" for c in cells) + " |")
    if not record and not curve:
        lines.append("No evaluation is recorded in this folder; `synthembed evaluate` scores it.")
    lines.append("")
    return lines


def _usage_section(model_id: str, custom_code: bool) -> str:
    trust = ", trust_remote_code=True" if custom_code else ""
    return (
        "## Usage\n\n```python\nfrom sentence_transformers import SentenceTransformer\n\n"
        f'model = SentenceTransformer("{model_id}"{trust})\n'
        'embeddings = model.encode(["A man is playing a guitar.", "Someone plays an instrument."])\n'
        "print(model.similarity(embeddings, embeddings))\n```"
    )


# --- Helpers ------------------------------------------------------------------------------------------


def _replace_section(text: str, section: str) -> str:
    pattern = re.compile(re.escape(SECTION_START) + ".*?" + re.escape(SECTION_END), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: section, text)
    # also drop the one-list section earlier SynthEmbed versions appended
    text = re.sub(r"\n## SynthEmbed training\n.*\Z", "\n", text, flags=re.DOTALL)
    return text.rstrip() + "\n\n" + section + "\n"


def _custom_module_types(folder: Path) -> list[str]:
    try:
        entries = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(e.get("type")) for e in entries if not str(e.get("type", "")).startswith("sentence_transformers.")]


def _data_sources(record: Mapping[str, Any]) -> list[str]:
    config = record.get("config") or record.get("refine") or {}
    data = config.get("data") if isinstance(config, Mapping) else None
    if data is None:
        data = record.get("data")
    if data is None:
        return []
    values = data if isinstance(data, (list, tuple)) else [data]
    return [str(v) for v in values if v]


def _base_model(record: Mapping[str, Any]) -> str | None:
    config = record.get("config") or record.get("refine") or {}
    model = (config.get("model") or config.get("student")) if isinstance(config, Mapping) else None
    if not isinstance(model, str):
        return None
    model = PACKAGED_MODELS.get(model, model)
    return model if _is_hub_id(model) else None


def _method_tag(record: Mapping[str, Any]) -> str | None:
    method = str(record.get("method") or "").lower()
    for key in ("syncse", "ranking refinement", "mgh"):
        if key in method:
            return key.replace(" ", "-")
    return None


def _is_hub_id(reference: str) -> bool:
    """`org/name` that is not a local path (what the hub's metadata fields accept)."""
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", reference)) and not Path(reference).exists()


def _is_hub_dataset(reference: str) -> bool:
    if reference.startswith("hf:"):
        reference = reference[3:].split("@")[0].split(":")[0]
    return _is_hub_id(reference)


def _synthesis_folder(source: str) -> Path | None:
    path = Path(source).expanduser()
    for candidate in (path, path.parent):
        if (candidate / "manifest.json").is_file():
            return candidate
    return None


def _licence_notes(sources: Iterable[str]) -> list[str]:
    notes = []
    for source in sources:
        lowered = source.lower()
        notes += [note for key, note in ANCHOR_LICENCES.items() if key in lowered and note not in notes]
    return notes


def _file_sha256(reference: Any) -> str | None:
    """sha256 of the generator's weights: a local file or folder (its weight files), or the packaged GGUF.

    Reads the names the synthesis backends record: ``embedded:<gguf name>``, ``gguf:<path>``, a path,
    each optionally followed by ``@<dtype>``. None for hub ids and remote servers.
    """
    if not isinstance(reference, str):
        return None
    reference = reference.rsplit("@", 1)[0] if "@" in reference else reference
    if reference in ("embedded", "embedded-llm") or reference.startswith("embedded:"):
        from synthembed.models.embedded import embedded_llm_gguf_path

        reference = str(embedded_llm_gguf_path())
    reference = reference.removeprefix("gguf:")
    path = Path(reference).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
    else:
        files = [path] if path.is_file() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _read_yaml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    value = yaml.safe_load(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else None


def _read_tsv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def _cell(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value).replace("|", "\\|")


def _unique(values: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _max_length_note(fit: dict[str, Any], config: dict[str, Any]) -> str | None:
    """The training length and the (inference) limit the model was saved with, which differ on purpose."""
    trained = fit.get("train_max_length", config.get("max_length"))
    saved = fit.get("saved_max_seq_length")
    if trained is None:
        return None
    if saved is None or saved == trained:
        return f"{trained} tokens"
    return f"trained at {trained} tokens; saved with {saved} (the base model's limit, for inference)"
