"""Tiny random-weight Llama-style models with a tokenizer trained in code, for offline tests.

``make_tiny_model(path)`` writes a folder that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load: a 2-layer Llama (hidden 64, 4 heads, 2 kv heads) with random
weights from a fixed seed, and a byte-level BPE tokenizer trained on a small built-in corpus, with
``<s>``/``</s>``/``<pad>`` tokens and a ChatML-like chat template that starts with BOS (so TRL's
"the template supplies BOS" path runs). ``tiny_model_path(**kw)`` caches one folder per option set per
process; the ``tiny_model`` / ``tiny_model_no_template`` fixtures wrap it::

    from tests.tinymodel import tiny_model  # pytest fixture -> Path of the folder
"""

from __future__ import annotations

import atexit
import random
import shutil
import tempfile
from pathlib import Path

import pytest

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"

#: ChatML-like template. Emits BOS first; renders ``tools`` into a system block; honours an
#: ``enable_thinking`` kwarg (``chat_template_kwargs``) in the generation prompt only, like Qwen3 does.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)

_WORD_TEXT = (
    "the a an of to in and or but is are was were be been have has had do does did will would can could "
    "model data answer question user assistant system reference preference chosen rejected prompt token "
    "python code function return value list dict string number train test score log probability sum "
    "please explain why how what when where who which write short long story poem about cats dogs rain "
    "sun moon river mountain city history science math physics chemistry biology language music art "
    "first second third then next finally because therefore however although while also very really "
    "good bad better best worse worst yes no maybe sure thanks hello world example simple complex step"
)
_WORDS = _WORD_TEXT.split()


def corpus(n_sentences: int = 600, seed: int = 0) -> list[str]:
    """A small deterministic English-like corpus (also handy for generating test rows)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 18))]
        sentence = " ".join(words).capitalize() + rng.choice([".", "?", "!", ":", ","])
        if rng.random() < 0.2:
            sentence += f" {rng.randint(0, 9999)}"
        if rng.random() < 0.1:
            sentence = f"def f(x):\n    return x * {rng.randint(1, 99)}\n" + sentence
        out.append(sentence)
    return out


def random_text(rng: random.Random, n_words: int) -> str:
    """``n_words`` random words from the corpus vocabulary, with some punctuation."""
    words = [rng.choice(_WORDS) for _ in range(max(1, n_words))]
    for i in range(7, len(words), 9):
        words[i] += rng.choice([".", ",", "?", "!"])
    return " ".join(words).capitalize()


def make_tiny_model(
    path: str | Path,
    *,
    vocab_size: int = 512,
    chat_template: bool = True,
    bos: bool = True,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    tie_word_embeddings: bool = False,
    model_type: str = "llama",
    tokenizer_vocab_size: int | None = None,
    initializer_range: float = 0.2,
    reward: bool = False,
) -> Path:
    """Write a tiny random-weight Llama model + trained fast tokenizer to ``path`` and return it.

    ``bos``: the tokenizer adds ``<s>`` when encoding text (like Llama); the chat template emits it either
    way. ``chat_template=False`` saves no chat template. ``vocab_size`` is the model's vocabulary; the
    tokenizer is trained towards ``tokenizer_vocab_size`` (default: ``vocab_size``) and never exceeds it.
    ``model_type="qwen2"`` builds a Qwen2 model (q/k/v biases) of the same shape instead of a Llama.
    ``reward=True`` builds a reward model instead: ``*ForSequenceClassification`` with ``num_labels=1`` (one
    ``score`` logit, pad token set so transformers pools at the last non-pad token).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen2ForSequenceClassification,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    specials = [PAD, BOS, EOS, IM_START, IM_END]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab_size, tokenizer_vocab_size or vocab_size),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(seed=seed), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    assert tok.get_vocab_size() <= vocab_size, (tok.get_vocab_size(), vocab_size)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=4096,
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)

    config_cls, model_cls = {
        "llama": (LlamaConfig, LlamaForSequenceClassification if reward else LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForSequenceClassification if reward else Qwen2ForCausalLM),
    }[model_type]
    config = config_cls(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=4096,
        bos_token_id=bos_id,
        eos_token_id=tok.token_to_id(EOS),
        pad_token_id=tok.token_to_id(PAD),
        tie_word_embeddings=tie_word_embeddings,
        initializer_range=initializer_range,  # default larger than HF's so log-probs vary across tokens
        **({"num_labels": 1} if reward else {}),
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    model.save_pretrained(path)
    return path


_CACHE: dict[tuple, Path] = {}
_ROOT: Path | None = None


def tiny_model_path(**kwargs) -> Path:
    """``make_tiny_model`` cached per option set for the whole process (temp folder removed at exit)."""
    global _ROOT
    key = tuple(sorted(kwargs.items()))
    if key not in _CACHE:
        if _ROOT is None:
            _ROOT = Path(tempfile.mkdtemp(prefix="prefkit-tiny-"))
            atexit.register(shutil.rmtree, _ROOT, True)
        _CACHE[key] = make_tiny_model(_ROOT / f"m{len(_CACHE)}", **kwargs)
    return _CACHE[key]


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """Path of a cached tiny model folder (chat template with BOS, tokenizer adds BOS)."""
    return tiny_model_path()


@pytest.fixture(scope="session")
def tiny_model_no_template() -> Path:
    """Path of a cached tiny model folder whose tokenizer has no chat template."""
    return tiny_model_path(chat_template=False)
