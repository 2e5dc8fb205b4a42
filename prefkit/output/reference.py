"""What the dataset card says of a set's reference log-probs: the manifest's ``reflogps`` section as a table
(:func:`ref_context`), and a recorded quantization or adapter in words (also what `reflogps`' provenance check
says when they differ)."""

from __future__ import annotations

from typing import Any

from prefkit.secrets import redact
from prefkit.store.manifest_model import Kto, Reflogps

#: what the reference-model table shows, from the manifest's ``reflogps`` section
REF_ROWS = (
    ("model", "model"),
    ("revision", "revision"),
    ("model class", "model_class"),
    ("weights sha256", "weights_sha256"),
    ("tokenizer sha256", "tokenizer_sha256"),
    ("chat template sha256", "chat_template_sha256"),
    ("dtype", "dtype"),
    ("attention", "attn_implementation"),
    ("max_length", "max_length"),
    ("truncation", "truncation_mode"),
    ("TRL rule", "trl_tokenization_rule"),
    ("TRL version", "trl_version"),
    ("prefkit version", "prefkit_version"),
)


def ref_context(section: Reflogps | None, features: dict) -> dict | None:
    dpo, kto = {"ref_chosen_logps", "ref_rejected_logps"}, {"ref_logps", "ref_KL_logps"}
    if section is None or not section.to_dict() or not (dpo <= set(features) or kto <= set(features)):
        return None
    totals = section.totals or {}
    rows = [(label, section.get(key)) for label, key in REF_ROWS]
    rows += _setup_rows(section)
    kl = section.kto or Kto()
    rows += [("KTO per_device_train_batch_size", kl.per_device_train_batch_size)]
    rows += [("KTO KL pairing", kl.kl_order and f"rotate +1 in each batch, {kl.kl_order} order")]
    rows += [("scored", totals.get("scored")), ("truncated", totals.get("truncated"))]
    return {
        "model": section.model or "<the reference model>",
        "max_length": section.max_length,
        "command": redact(section.command),
        "rows": [(k, v) for k, v in rows if v not in (None, "", {})],
    }


def quantization_words(record: dict | None) -> str:
    """A recorded quantization in words (``4-bit nf4, double quantization, compute float32``)."""
    if not record:
        return "none: full precision"
    if record.get("load_in_4bit"):
        double = ", double quantization" if record.get("bnb_4bit_use_double_quant") else ""
        return f"4-bit {record.get('bnb_4bit_quant_type')}{double}, compute {record.get('bnb_4bit_compute_dtype')}"
    if record.get("load_in_8bit"):
        return "8-bit"
    return str(record.get("method"))


def adapter_words(adapter: dict | None) -> str:
    """A recorded adapter in words: its id and the start of its tensors' SHA-256."""
    if not adapter:
        return "none"
    name = adapter.get("adapter") or "an adapter"
    return f"{name}, tensors sha256 {str(adapter.get('tensors_sha256'))[:12]}"


def _setup_rows(section: Reflogps) -> list[tuple[str, Any]]:
    """The reference's quantization and adapter (sections written before they were recorded have neither)."""
    if not section.has("quantization"):
        return []
    quant = quantization_words(section.quantization)
    if not section.quantization:
        quant += " (a 4-/8-bit trainer takes these values only with prefkit_full_precision_reference=True)"
    rows: list[tuple[str, Any]] = [("quantization", quant)]
    if section.adapter:
        rows.append(("adapter", adapter_words(section.adapter)))
    return rows
