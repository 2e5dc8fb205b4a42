"""Tokenizers shaped like real model families, built in code (no network): the family's special tokens as added
tokens, its BOS/EOS names, and either a byte-level BPE (Llama 3, Qwen, Phi-3, ChatML models) or a
SentencePiece-style Metaspace BPE (Mistral, Zephyr, Gemma), trained on a small corpus."""

from __future__ import annotations

from functools import cache

from tests.tinymodel import corpus

#: family -> (bos, eos, extra special tokens, sentencepiece-style)
FAMILIES = {
    "chatml": ("<s>", "<|im_end|>", ["<|im_start|>"], False),
    "llama-3": ("<|begin_of_text|>", "<|eot_id|>", ["<|start_header_id|>", "<|end_header_id|>"], False),
    "mistral": ("<s>", "</s>", ["[INST]", "[/INST]"], True),
    "zephyr": ("<s>", "</s>", ["<|user|>", "<|assistant|>", "<|system|>"], True),
    "gemma": ("<bos>", "<eos>", ["<start_of_turn>", "<end_of_turn>"], True),
    "phi-3": ("<s>", "<|endoftext|>", ["<|user|>", "<|assistant|>", "<|system|>", "<|end|>"], False),
    "qwen": (None, "<|im_end|>", ["<|im_start|>", "<|endoftext|>"], False),
    "qwen3": (None, "<|im_end|>", ["<|im_start|>", "<|endoftext|>", "<think>", "</think>"], False),
}


@cache
def _tokenizer_json(family: str) -> str:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    bos, eos, extra, spm = FAMILIES[family]
    specials = [t for t in ("<pad>", bos, eos, *extra) if t]
    tok = Tokenizer(models.BPE(unk_token=None))
    if spm:
        tok.normalizer = normalizers.Sequence([])
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet = sorted({c for line in corpus() for c in line} | {"▁", "\n"})
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    return tok.to_str()


def family_tokenizer(family: str, template: str | None = None):
    """A fresh ``PreTrainedTokenizerFast`` for ``family`` (``template`` set as its chat template)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    bos, eos, extra, _ = FAMILIES[family]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(family)),
        bos_token=bos,
        eos_token=eos,
        pad_token="<pad>",
        additional_special_tokens=extra,
    )
    if template is not None:
        fast.chat_template = template
    return fast
