"""Load a scoring model (the reference causal LM of `reflogps`, the reward model of `score`) and its tokenizer,
with one-line errors and provenance.

A model is a local folder or a Hub id (``--revision``). ``trust_remote_code`` is off unless asked. The
provenance recorded in ``prefkit.json`` identifies exactly what scored a set: the model path/id, the resolved
revision, a hash of the weight files (their bytes for a local folder; the Hub's content hashes, which the
cache keeps as blob names, for a Hub model), and hashes of the tokenizer and of the chat template.

torch and transformers are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prefkit.chat.templates import require_chat_template, template_hash
from prefkit.chat.tokenizer import load_error, load_tokenizer, tokenizer_hash
from prefkit.errors import ModelError, require
from prefkit.hub_client import fetch_snapshot, looks_like_path
from prefkit.loading import ModelOptions, adapter_tensors_hash, quantization_record
from prefkit.optionspec import OptionGroup

#: Weight file patterns, in order of preference (safetensors when a folder has both).
_WEIGHT_GLOBS = (("*.safetensors",), ("*.bin", "*.pt", "*.pth"))
_HUB_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.model",
    "*.txt",
    "*.jinja",
    "*.tiktoken",
    "*.py",
    "tokenizer*",
]
_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
#: what a scoring command loads, by kind: the transformers Auto class
AUTO_CLASSES = {"causal-lm": "AutoModelForCausalLM", "reward": "AutoModelForSequenceClassification"}
#: the fix for a model that is not a reward model
REWARD_HINT = (
    "pass a sequence-classification reward model, e.g. one saved with AutoModelForSequenceClassification "
    "(num_labels=1, as TRL's RewardTrainer writes it); a causal LM's log-probs are what `prefkit reflogps --model` "
    "adds"
)


@dataclass
class LoadedModel:
    """A model ready for scoring, its tokenizer, and where they came from."""

    model: Any
    tokenizer: Any
    provenance: dict = field(default_factory=dict)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> Any:
        return next(self.model.parameters()).dtype


# --------------------------------------------------------------------------------------------------- devices


def resolve_device(device: str | None = None) -> Any:
    """``auto``/None → ``cuda:LOCAL_RANK`` when CUDA is available (one GPU per torchrun rank), else ``cpu``."""
    torch = require("torch", "scoring with a model (`prefkit reflogps`, `verify`)")

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ModelError(f"unknown device {device!r}", "use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available", "use --device cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return dev


def resolve_dtype(dtype: str | None, device: Any) -> Any:
    """``auto``/None → bfloat16 on CUDA (when supported), float32 elsewhere; else the named dtype."""
    import torch

    if dtype in (None, "", "auto"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    name = _DTYPE_NAMES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise ModelError(f"unknown dtype {dtype!r}", "use auto, float32, bfloat16 or float16")
    return getattr(torch, name)


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


# --------------------------------------------------------------------------------------------------- hashes


def _file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes; free for a Hub-cache symlink to an LFS blob (named by that very hash)."""
    target = Path(os.path.realpath(path))
    if path.is_symlink() and target.parent.name == "blobs" and len(target.name) == 64:
        try:
            int(target.name, 16)
            return target.name
        except ValueError:
            pass
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder (safetensors when present, else .bin/.pt), sorted."""
    for globs in _WEIGHT_GLOBS:
        found = sorted({p for g in globs for p in folder.glob(g) if p.is_file()})
        if found:
            return found
    return []


def weights_hash(folder: Path) -> str | None:
    """SHA-256 identifying the weight files of ``folder``: over each file's name and content SHA-256.

    The content hash of a file in the Hub cache is the name of its LFS blob, so a Hub model is identified
    instantly, and with the same value as a local copy of the same files.
    """
    files = weight_files(folder)
    if not files:
        return None
    lines = "".join(f"{path.name}\0{_file_sha256(path)}\n" for path in files)
    return hashlib.sha256(lines.encode()).hexdigest()


# --------------------------------------------------------------------------------------------------- chat template


def check_vocab(model: Any, tokenizer: Any, model_name: str = "the model") -> None:
    """Raise a ModelError when the tokenizer can produce ids the model has no embedding for."""
    embeddings = model.get_input_embeddings()
    n_embed = getattr(embeddings, "num_embeddings", None) or model.config.get_text_config().vocab_size
    n_tok = len(tokenizer)
    if n_tok > n_embed:
        raise ModelError(
            f"tokenizer/model mismatch for {model_name}: the tokenizer has {n_tok} tokens but the model's "
            f"vocabulary has {n_embed}",
            "the tokenizer must be the model's own; check --model (and --chat-template), or resize the model's "
            "embeddings before scoring",
        )


# --------------------------------------------------------------------------------------------------- loading


def locate_model(spec: str, revision: str | None = None) -> tuple[Path, dict]:
    """A local folder or Hub id → (local folder, {source, model, revision}).

    Hub models are fetched (or found in the cache) with ``huggingface_hub.snapshot_download``; the snapshot
    folder's name is the resolved commit.
    """
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(
                f"model {spec!r} is a file, not a model folder", "pass the folder with config.json"
            )
        if not (path / "config.json").is_file():
            raise ModelError(
                f"{spec!r} has no config.json: not a transformers model folder",
                "pass the folder written by save_pretrained, or a Hub model id",
            )
        return path.resolve(), {
            "source": "local",
            "model": spec,
            "path": str(path.resolve()),
            "revision": revision,
        }
    if looks_like_path(spec):
        raise ModelError(
            f"model folder {spec!r} does not exist", "check the path, or pass a Hub id like org/name"
        )

    folder = fetch_snapshot(spec, revision, _HUB_PATTERNS, what="model")
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"Hub repo {spec!r} has no config.json: not a transformers model", "pass a model repo"
        )
    return folder, {"source": "hub", "model": spec, "path": str(folder), "revision": folder.name}


def check_reward_config(folder: Path, model: str, trust_remote_code: bool = False) -> None:
    """Refuse, before any weight is read, a model that is not a one-label sequence-classification model.

    Its ``config.json`` must name a ``*ForSequenceClassification`` architecture (or map
    ``AutoModelForSequenceClassification`` to custom code) and ``num_labels == 1``: the reward is the one logit
    (TRL's ``RewardTrainer`` trains ``AutoModelForSequenceClassification(num_labels=1)``). Raises
    :class:`ModelError` with :data:`REWARD_HINT` otherwise.
    """
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except ValueError as err:
        raise load_error(err, f"model {model!r}", f"cannot read the config of {model!r}", first_line=True) from None
    archs = [str(a) for a in getattr(cfg, "architectures", None) or []]
    custom = "AutoModelForSequenceClassification" in (getattr(cfg, "auto_map", None) or {})
    if archs and not custom and not any(a.endswith("ForSequenceClassification") for a in archs):
        generative = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
        what = (
            "a causal language model" if any(a.endswith(generative) for a in archs) else "not a reward model"
        )
        raise ModelError(
            f"{model!r} is {what} ({', '.join(archs)}), not a sequence-classification reward model",
            REWARD_HINT,
        )
    stated = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if not archs and not custom and not {"id2label", "num_labels"} & set(stated):
        raise ModelError(
            f"{model!r} names no architecture and no labels in its config.json: not a sequence-classification "
            "reward model",
            REWARD_HINT,
        )
    if cfg.num_labels != 1:
        raise ModelError(
            f"{model!r} has {cfg.num_labels} labels; a reward model has one (one score per text)",
            "pass a reward model with num_labels=1, e.g. one trained with TRL's RewardTrainer; a classifier with "
            "several labels gives no single reward",
        )


def _from_pretrained(kind: str, folder: Path, model: str, kwargs: dict, attn: str | None) -> Any:
    """``AUTO_CLASSES[kind].from_pretrained`` with one-line errors; a checkpoint that lacks weights of the model
    (transformers would initialise them at random: a reward model's checkpoint loaded as a causal LM has no LM
    head, a causal LM loaded as a reward model no score head) is refused before anything is scored."""
    import transformers

    auto = getattr(transformers, AUTO_CLASSES[kind])
    try:
        lm, info = auto.from_pretrained(str(folder), output_loading_info=True, **kwargs)
    except ValueError as err:
        text = str(err)
        if "trust_remote_code" in text:
            raise ModelError(
                f"model {model!r} needs custom code", "pass --trust-remote-code if you trust it"
            ) from None
        if "attn" in text.lower() or "attention" in text.lower():
            raise ModelError(
                f"model {model!r} does not support attention implementation {attn!r}",
                "pass --attn-implementation eager (or sdpa / flash_attention_2)",
            ) from None
        raise ModelError(
            f"cannot load model {model!r}: {text.splitlines()[0]}", "check the model folder"
        ) from None
    except (OSError, KeyError, ImportError) as err:
        raise ModelError(
            f"cannot load model {model!r}: {err}", "check the model folder and its files"
        ) from None
    except Exception as err:
        if type(err).__name__ != "SafetensorError":  # a truncated or corrupted .safetensors file
            raise
        raise ModelError(
            f"cannot load model {model!r}: a weight file is truncated or corrupted ({err})",
            "download or copy the model again (compare the file sizes with the source)",
        ) from None
    check_loading_info(info, model, kind)
    return lm


def check_loading_info(info: dict, model: str, kind: str) -> None:
    """Raise :class:`ModelError` when transformers reports weights missing from the checkpoint (newly initialised,
    i.e. random) or of another shape (``output_loading_info=True``'s ``missing_keys`` / ``mismatched_keys``)."""
    missing = sorted(info.get("missing_keys") or ())
    missing += sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or ())
    if not missing:
        return
    message = (
        f"{len(missing)} weight(s) of {model!r} as {AUTO_CLASSES[kind]} are not in its checkpoint "
        f"({', '.join(missing[:3])}): transformers would initialise them at random, and so would the scores"
    )
    if kind == "reward":
        raise ModelError(message, REWARD_HINT)
    unexpected = sorted(info.get("unexpected_keys") or ())
    seen = f" (it has {', '.join(unexpected[:2])} instead)" if unexpected else ""
    raise ModelError(
        message,
        f"pass the causal language model your trainer starts from{seen}; a checkpoint without an LM head, such as "
        "a sequence-classification reward model, gives no log-probs: score pairs with a reward model with "
        "`prefkit score OUT --reward-model M`",
    )


_ADAPTER_PATTERNS = ["adapter_config.json", "*.safetensors", "*.bin", "*.pt"]


def locate_adapter(spec: str, revision: str | None = None) -> tuple[Path, dict]:
    """A PEFT adapter folder (with ``adapter_config.json``) or Hub id → (local folder, {adapter, source, path,
    revision}), the Hub revision resolved to its commit."""
    path = Path(spec).expanduser()
    if path.exists() or looks_like_path(spec):
        if not (path / "adapter_config.json").is_file():
            raise ModelError(
                f"adapter {spec!r} is not a PEFT adapter folder (no adapter_config.json)",
                "pass the folder written by PeftModel.save_pretrained (or a Hub adapter id)",
            )
        return path.resolve(), {
            "adapter": spec,
            "source": "local",
            "path": str(path.resolve()),
            "revision": revision,
        }
    folder = fetch_snapshot(spec, revision, _ADAPTER_PATTERNS, what="adapter")
    if not (folder / "adapter_config.json").is_file():
        raise ModelError(
            f"Hub repo {spec!r} has no adapter_config.json: not a PEFT adapter", "pass an adapter repo"
        )
    return folder, {"adapter": spec, "source": "hub", "path": str(folder), "revision": folder.name}


def attach_adapter(lm: Any, spec: str, revision: str | None, model: str) -> tuple[Any, dict]:
    """``PeftModel.from_pretrained(lm, adapter)`` (inference mode, adapter weights upcast like PEFT's default) →
    (the transformers model with the adapter's layers active, provenance: where it came from, the SHA-256 of its
    weight files and of its tensors as loaded (:func:`prefkit.loading.adapter_tensors_hash`), PEFT type, the base
    it was trained on). The engine runs the returned model's own modules, so LoRA stays unmerged, as in TRL."""
    require("peft", "scoring with an adapter (`--adapter`); pip install 'prefkit[quant]'")
    from peft import PeftModel

    folder, where = locate_adapter(spec, revision)
    try:
        wrapped = PeftModel.from_pretrained(lm, str(folder), is_trainable=False)
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        raise ModelError(
            f"cannot put adapter {spec!r} on {model!r}: {str(err).splitlines()[0]}",
            "pass an adapter trained on this base model (its adapter_config.json names base_model_name_or_path)",
        ) from None
    config = wrapped.peft_config["default"]
    provenance = {
        **where,
        "peft_type": str(getattr(config.peft_type, "value", config.peft_type)),
        "base_model_name_or_path": getattr(config, "base_model_name_or_path", None),
        "weights_sha256": weights_hash(folder),
        "tensors_sha256": adapter_tensors_hash(wrapped, "default"),
    }
    return wrapped.get_base_model(), provenance


def load_model(
    model: str,
    *,
    options: OptionGroup | None = None,
    hash_weights: bool = True,
    kind: str = "causal-lm",
    **keywords: Any,
) -> LoadedModel:
    """Load a model and its tokenizer for scoring (``eval()``, on ``device``) and record its provenance.

    ``options`` / keywords: :class:`prefkit.loading.ModelOptions` (``revision``, ``dtype``, ``device``,
    ``attn_implementation``, ``trust_remote_code``, ``chat_template``, and the bitsandbytes quantization and PEFT
    adapter of :class:`~prefkit.loading.LoadOptions`: the model scored is then base + adapter, the adapter's LoRA
    layers unmerged, as TRL runs them; both are recorded in the provenance, ``quantization`` and ``adapter``).
    ``kind``: ``"causal-lm"`` (``AutoModelForCausalLM``, the reference model of `reflogps`) or ``"reward"``
    (``AutoModelForSequenceClassification`` with one label, checked by :func:`check_reward_config`).
    Raises :class:`~prefkit.errors.ModelError` with a hint for a missing folder/repo, custom code without
    ``trust_remote_code``, an unsupported attention implementation, a tokenizer larger than the model's
    vocabulary, or (reward) a model that is not a one-label reward model.
    """
    what = "scoring with a model (`prefkit reflogps`, `verify`, `score`)"
    require("torch", what)
    require("transformers", what)

    opts = ModelOptions.create(options, **keywords)
    folder, where = locate_model(model, opts.revision)
    dev = resolve_device(opts.device)
    torch_dtype = resolve_dtype(opts.dtype, dev)
    if kind == "reward":
        check_reward_config(folder, model, opts.trust_remote_code)
    tokenizer, template_origin = load_tokenizer(
        folder, trust_remote_code=opts.trust_remote_code, chat_template=opts.chat_template
    )
    lm, quantization, adapter = _load_weights(kind, folder, model, opts, (torch_dtype, dev))
    check_vocab(lm, tokenizer, model)

    provenance = {
        **where,
        "model_class": type(lm).__name__,
        "weights_sha256": weights_hash(folder) if hash_weights else None,
        "weight_files": [p.name for p in weight_files(folder)],
        "tokenizer_sha256": tokenizer_hash(tokenizer),
        "chat_template": template_origin,
        "chat_template_sha256": template_hash(getattr(tokenizer, "chat_template", None)),
        "dtype": dtype_name(torch_dtype),
        "device": str(dev),
        "attn_implementation": getattr(lm.config, "_attn_implementation", opts.attn_implementation),
        "trust_remote_code": opts.trust_remote_code,
        "quantization": quantization_record(quantization),
        "adapter": adapter,
    }
    return LoadedModel(model=lm, tokenizer=tokenizer, provenance=provenance)


def _load_weights(
    kind: str, folder: Path, model: str, opts: ModelOptions, placed: tuple[Any, Any]
) -> tuple[Any, Any, dict | None]:
    """The model in eval mode without gradients, quantized and with its adapter as ``opts`` say, on the device of
    ``placed`` (torch dtype, device) → (model, the quantization config or None, the adapter's provenance or None)."""
    torch_dtype, dev = placed
    load = opts.load
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": opts.trust_remote_code}
    if opts.attn_implementation:
        kwargs["attn_implementation"] = opts.attn_implementation
    load.check_exact()
    quantization = load.quantization_config(torch_dtype)
    if quantization is not None:  # a quantized model is placed while loading (.to() is refused for 8-bit)
        kwargs |= {"quantization_config": quantization, "device_map": {"": dev}}
    lm = _from_pretrained(kind, folder, model, kwargs, opts.attn_implementation)
    if quantization is None:
        lm.to(dev)
    adapter = None
    if load.adapter:
        lm, adapter = attach_adapter(lm, load.adapter, load.adapter_revision, model)
    lm.eval()
    lm.requires_grad_(False)
    return lm, quantization, adapter


def load_for_set(
    folder: Any, model: str, options: Any, *, hash_weights: bool, kind: str = "causal-lm"
) -> LoadedModel:
    """:func:`load_model` with a job's ``options`` (:class:`prefkit.loading.ModelOptions`) to score the set in
    ``folder`` (an :class:`prefkit.output.OutputFolder`): a set of message rows needs the tokenizer's chat
    template (:func:`prefkit.chat.templates.require_chat_template`, raising ``TemplateError`` without one)."""


    loaded = load_model(model, options=options, hash_weights=hash_weights, kind=kind)
    schemas = [pq.read_schema(folder.shards[split][0]) for split in folder.splits]
    answer = "chosen" if all("chosen" in s.names for s in schemas) else "completion"  # a KTO set: completion
    if any(pa.types.is_list(s.field(answer).type) for s in schemas):
        require_chat_template(loaded.tokenizer, f"the tokenizer of {model}")
    return loaded
