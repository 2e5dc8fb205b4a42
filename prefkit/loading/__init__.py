"""How a model is loaded and run (:class:`ModelOptions`): its revision, dtype, device, attention kernel, chat
template, batch size in tokens, and how its weights are loaded besides the checkpoint: bitsandbytes quantization
and a PEFT adapter (:class:`LoadOptions`).

One declaration for `reflogps`, `verify`, `score` and `generate` (their flags are generated from it,
:mod:`prefkit.commands.options`) and for the Python API (``reflogps(..., dtype="bfloat16", load_in_4bit=True,
adapter="./sft")``).
The names are transformers' ``BitsAndBytesConfig`` arguments, which TRL's ``ModelConfig`` uses too
(``--load-in-4bit``, ``--bnb-4bit-quant-type``, ...), so a trainer's settings carry over as they are.

What TRL 1.16's ``DPOTrainer`` uses as the reference in each setup (read in ``trl/trainer/dpo_trainer.py``):

* a model loaded with a ``quantization_config`` and a LoRA ``peft_config``: the quantized base with the adapter
  disabled (``use_adapter(model, None)``) -> score with the same quantization and no ``adapter``;
* a ``PeftModel`` that already carries an adapter (an SFT LoRA) and no ``ref_model``: a frozen copy of it named
  ``"ref"`` -> score with ``adapter`` = that adapter (and the base's quantization, if any).

The manifest records :meth:`LoadOptions.quantization_record` and the adapter's provenance
(:func:`adapter_provenance`); :func:`model_identity` reads the same from a model in memory, for the trainer's check.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import model_validator

from prefkit.errors import ModelError, require
from prefkit.optionspec import OptionGroup, option

#: the keys of a quantization record (transformers' ``BitsAndBytesConfig`` names), in the manifest's order
QUANT_KEYS_4BIT = (
    "load_in_4bit",
    "bnb_4bit_quant_type",
    "bnb_4bit_use_double_quant",
    "bnb_4bit_compute_dtype",
)
QUANT_KEYS_8BIT = ("load_in_8bit", "llm_int8_threshold")
_WHAT = "quantized or adapter references (`--load-in-4bit`, `--load-in-8bit`, `--adapter`); pip install 'prefkit[quant]'"


class LoadOptions(OptionGroup):
    """The quantization (transformers' ``BitsAndBytesConfig``, as in TRL's ``ModelConfig``) and the PEFT adapter
    of the scoring model. Defaults: full precision, no adapter."""

    load_in_4bit: bool = option(
        False,
        "Load the model in 4-bit with bitsandbytes (QLoRA's base), as your trainer's "
        "BitsAndBytesConfig(load_in_4bit=True); needs prefkit[quant].",
    )
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = option(
        "nf4", "4-bit data type (BitsAndBytesConfig.bnb_4bit_quant_type; TRL's ModelConfig default nf4)."
    )
    bnb_4bit_compute_dtype: Literal["float32", "bfloat16", "float16"] | None = option(
        None, "Compute dtype of the 4-bit layers (default: --dtype, as TRL's ModelConfig sets it)."
    )
    bnb_4bit_use_double_quant: bool = option(
        False, "Quantize the 4-bit quantization constants too (QLoRA's double quantization)."
    )
    load_in_8bit: bool = option(
        False, "Load the model in 8-bit with bitsandbytes (LLM.int8()); needs prefkit[quant]."
    )
    llm_int8_threshold: float = option(
        6.0,
        "LLM.int8()'s outlier threshold (BitsAndBytesConfig.llm_int8_threshold). Above 0 a row's value depends on "
        "the rows batched with it, so --load-in-8bit needs 0 (in the trainer's config too).",
        ge=0,
    )
    adapter: str | None = option(
        None,
        "A PEFT adapter (local folder or Hub id) on top of the model: the reference is base + adapter, as TRL's "
        'frozen "ref" copy of a PeftModel\'s adapter.',
        metavar="PATH_OR_ID",
    )
    adapter_revision: str | None = option(None, "Hub branch, tag or commit of --adapter.")

    @model_validator(mode="after")
    def _one_quantization(self) -> LoadOptions:
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("--load-in-4bit and --load-in-8bit exclude each other: choose one")
        return self

    def check_exact(self) -> None:
        """Raise :class:`~prefkit.errors.ModelError` for a quantization whose values depend on the batch: LLM.int8()
        with an outlier threshold (bitsandbytes' ``MatMul8bitLt`` takes every feature column in which any token of
        the batch exceeds it in fp16; measured on the tiny test model: a row's log-probs move by up to 0.08 nats
        with the other row in its batch, threshold 0: not at all)."""

        if self.load_in_8bit and self.llm_int8_threshold > 0:
            raise ModelError(
                f"--load-in-8bit with llm_int8_threshold={self.llm_int8_threshold:g} gives values that depend on "
                "which rows share a batch (LLM.int8() picks outlier features over the whole batch), so TRL's own "
                "precompute changes with precompute_ref_batch_size and no stored value is exact",
                "load the trainer's model with BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=0.0) and "
                "score with --load-in-8bit --llm-int8-threshold 0, or use --load-in-4bit (QLoRA), or let TRL "
                "precompute",
            )

    @classmethod
    def from_record(cls, quantization: dict | None, adapter: dict | None) -> LoadOptions:
        """The options that load what a manifest recorded (its ``quantization`` and ``adapter``): a local adapter
        by its recorded folder, a Hub one by id at the recorded commit."""
        fields: dict[str, Any] = {}
        keys = (
            "load_in_4bit",
            "load_in_8bit",
            "bnb_4bit_quant_type",
            "bnb_4bit_use_double_quant",
            "llm_int8_threshold",
        )
        for key in keys:
            if (quantization or {}).get(key) is not None:
                fields[key] = quantization[key]  # type: ignore[index]
        if (quantization or {}).get("bnb_4bit_compute_dtype") and fields.get("load_in_4bit"):
            fields["bnb_4bit_compute_dtype"] = quantization["bnb_4bit_compute_dtype"]  # type: ignore[index]
        if adapter:
            local = adapter.get("source") == "local"
            fields["adapter"] = adapter.get("path") if local else adapter.get("adapter")
            fields["adapter_revision"] = None if local else adapter.get("revision")
        return cls(**fields)

    @property
    def quantized(self) -> bool:
        return self.load_in_4bit or self.load_in_8bit

    @property
    def load(self) -> LoadOptions:
        """These options as :class:`LoadOptions` (a :class:`ModelOptions` holds them among its own)."""
        return self if type(self) is LoadOptions else self.part(LoadOptions)

    def quantization_config(self, dtype: Any) -> Any:
        """transformers' ``BitsAndBytesConfig`` for these options (None at full precision); ``dtype`` (a
        ``torch.dtype``) is the 4-bit compute dtype unless ``bnb_4bit_compute_dtype`` names one. Raises
        :class:`~prefkit.errors.ModelError` when bitsandbytes is not installed."""
        if not self.quantized:
            return None
        import torch
        from transformers import BitsAndBytesConfig


        require("bitsandbytes", _WHAT)
        if self.load_in_8bit:
            return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=self.llm_int8_threshold)
        compute = getattr(torch, self.bnb_4bit_compute_dtype) if self.bnb_4bit_compute_dtype else dtype
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=self.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=compute,
        )


#: the compute dtypes the flags take (Python takes transformers' other names too: ``bf16``, ``torch.float16``)
DTYPES = ("auto", "float32", "bfloat16", "float16")
#: the help of ``--dtype`` (commands add what their dtype decides)
DTYPE_HELP = "Compute dtype; auto = bfloat16 on CUDA, float32 on the CPU"


class RunOptions(OptionGroup):
    """Which revision of a model, and how it runs. ``dtype``/``device`` ``"auto"``: bfloat16 on CUDA, float32 on
    the CPU; ``token_budget`` None: sized from free memory; ``prefix_sharing``: the prompt runs once for both
    answers."""

    revision: str | None = option(
        None, "Hub branch, tag or commit of the model (recorded as the resolved commit)."
    )
    dtype: str | None = option("auto", f"{DTYPE_HELP}.", choices=DTYPES)
    device: str | None = option("auto", "cpu, cuda, cuda:N or auto (under torchrun: one GPU per rank).")
    attn_implementation: str | None = option(
        "sdpa", "transformers attention kernel: sdpa, eager, flash_attention_2, ..."
    )
    chat_template: str | None = option(
        None,
        "Chat template to use instead of the tokenizer's: a built-in name, a Jinja file or the template text.",
        metavar="NAME|FILE",
    )
    trust_remote_code: bool = option(False, "Allow custom model/tokenizer code from the repo.")
    token_budget: int | None = option(
        None,
        "Tokens per forward batch (default: sized from free memory; halved and retried on out-of-memory).",
        ge=1,
    )
    prefix_sharing: bool = option(
        True, "Score prompt+chosen and prompt+rejected separately.", decls=("--no-prefix-sharing",)
    )


#: the flags of how a model runs that every model command takes, in ``--help`` order (after ``--model``)
RUN_FLAGS = ("revision", "dtype", "device", "attn_implementation", "chat_template", "trust_remote_code")


class ModelOptions(LoadOptions, RunOptions):
    """How the model of `reflogps`, `verify`, `score` and `generate` is loaded and run: :class:`RunOptions` and
    :class:`LoadOptions` in one (``options.load`` is the latter)."""


def quantization_record(config: Any) -> dict | None:
    """The manifest's form of a quantization: ``{"method": "bitsandbytes", "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4", ...}`` from a ``BitsAndBytesConfig`` or its dict (a model's
    ``config.quantization_config``); None for none. Two models quantize alike when their records are equal."""
    if config is None:
        return None
    data = config if isinstance(config, dict) else config.to_dict()
    method = str(getattr(data.get("quant_method"), "value", data.get("quant_method")) or "bitsandbytes")
    if method != "bitsandbytes":
        return {"method": method}
    keys = (
        QUANT_KEYS_4BIT if data.get("load_in_4bit") else QUANT_KEYS_8BIT if data.get("load_in_8bit") else ()
    )
    record: dict[str, Any] = {"method": method}
    for key in keys:
        value = data.get(key)
        record[key] = str(value).removeprefix("torch.") if key.endswith("dtype") and value else value
    return record


def record_flags(record: dict | None) -> str:
    """The `reflogps` flags that load a recorded quantization (``""`` for full precision)."""
    if not record:
        return ""
    if record.get("load_in_8bit"):
        return f"--load-in-8bit --llm-int8-threshold {record.get('llm_int8_threshold', 0):g}"
    flags = f"--load-in-4bit --bnb-4bit-quant-type {record.get('bnb_4bit_quant_type')}"
    if record.get("bnb_4bit_use_double_quant"):
        flags += " --bnb-4bit-use-double-quant"
    if record.get("bnb_4bit_compute_dtype"):
        flags += f" --bnb-4bit-compute-dtype {record['bnb_4bit_compute_dtype']}"
    return flags


def adapter_tensors_hash(model: Any, adapter_name: str = "default") -> str:
    """SHA-256 over an adapter's tensors as loaded (PEFT's ``get_peft_model_state_dict``: names without the adapter
    name, sorted; values as float32 bytes): the same for the adapter a trainer holds (its "ref" copy) and the one
    that scored a set, whatever the path they were read from."""
    import torch
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}\0{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def model_identity(model: Any) -> dict:
    """What a trainer's model is, for comparing with what scored a set: ``{"quantization": record or None,
    "adapter_tensors_sha256": hash of the adapter TRL uses as the reference or None, "name_or_path": ...}``.

    The reference adapter of a PEFT model is TRL's ``"ref"`` copy when it exists (a PeftModel given with an
    adapter), none when the model has only the adapter a ``peft_config`` created (TRL disables it). Call after
    TRL's ``__init__`` (it adds the ``"ref"`` adapter there).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    quant = quantization_record(getattr(config, "quantization_config", None))
    peft_config = getattr(model, "peft_config", None) or {}
    adapter = adapter_tensors_hash(model, "ref") if "ref" in peft_config else None
    return {
        "quantization": quant,
        "adapter_tensors_sha256": adapter,
        "name_or_path": getattr(config, "_name_or_path", None),
        "commit": getattr(config, "_commit_hash", None),
    }
