"""Benchmark: chat template + token-length filter, prefkit vs TRL's `maybe_apply_chat_template` + tokenizer `map`.

Data: N message rows (default 100k; system + user prompt, one assistant answer each side, lognormal lengths),
made in code with a fixed seed, held as one Arrow table. Tokenizer: a byte-level BPE trained in code on the
same vocabulary (most words one token), with prefkit's built-in `chatml` template (the same on both sides).

* prefkit: `prefkit.filters.tokens.apply_target` (what `build --tokenizer T --max-length L` runs on each split):
  render P / P+chosen / P+rejected with transformers' compiled template, batch-encode with the Rust
  tokenizer, TRL's exact prompt/completion split, drop rows whose prompt+answer exceeds L.
* TRL recipe (what TRL's docs suggest users do before training): `Dataset.map(maybe_apply_chat_template)`,
  then a batched `map` that tokenizes prompt/chosen/rejected and stores the lengths, then a batched `filter`.

Both start from the same in-memory Arrow table and end with the kept row indices; the two sides run
interleaved in one process, repeated, and medians are reported. The kept counts are printed side by side (the
recipe tokenizes prompt and answers separately, so its counts can differ slightly from TRL's actual rule).

    python benchmarks/template_filter.py                   # 100k rows, 3 repeats
    python benchmarks/template_filter.py --rows 20000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

WORDS = (
    "the model answer question data python list value error function return because first second example "
    "result number string time people system make good better best explain simple method step write code "
    "using without between should could would about which their there other these those while where river "
    "mountain history science music language physics chemistry biology reason evidence summary translate "
    "table chart average median weight train test score token prompt chosen rejected assistant user please"
).split()


def make_table(rows: int, seed: int = 0):
    import numpy as np
    import pyarrow as pa

    from prefkit.record import MESSAGE_TYPE

    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS)

    def texts(n: int, mean_words: float) -> list[str]:
        lengths = np.clip(rng.lognormal(np.log(mean_words), 0.6, n).astype(int), 3, 3000)
        flat = vocab[rng.integers(0, len(vocab), lengths.sum())]
        out, pos = [], 0
        for n_words in lengths:
            out.append(" ".join(flat[pos : pos + n_words]).capitalize() + ".")
            pos += n_words
        return out

    system, user, good, bad = texts(rows, 12), texts(rows, 60), texts(rows, 180), texts(rows, 150)
    msg = pa.list_(MESSAGE_TYPE)
    return pa.table(
        {
            "prompt": pa.array(
                [
                    [{"role": "system", "content": s}, {"role": "user", "content": u}]
                    for s, u in zip(system, user, strict=True)
                ],
                msg,
            ),
            "chosen": pa.array([[{"role": "assistant", "content": g}] for g in good], msg),
            "rejected": pa.array([[{"role": "assistant", "content": b}] for b in bad], msg),
        }
    )


def make_tokenizer(vocab_size: int = 16000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from prefkit.chat.templates import get_chat_template

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    import random

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(30)) for _ in range(5000)]
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=32768
    )
    fast.chat_template = get_chat_template("chatml")
    return fast


def run_prefkit(table, tokenizer, max_length: int) -> int:
    from prefkit.chat.target import Target
    from prefkit.chat.templates import ChatRenderer
    from prefkit.filters.tokens import TokenFilterOptions, apply_target

    target = Target(ChatRenderer.from_tokenizer(tokenizer), "tokenizer", tokenizer)
    result = apply_target(
        table.column("prompt").to_pylist(),
        table.column("chosen").to_pylist(),
        table.column("rejected").to_pylist(),
        target,
        TokenFilterOptions(max_length=max_length),
    )
    return sum(r is None for r in result.reasons)


def run_trl(table, tokenizer, max_length: int) -> int:
    import datasets
    from trl.data_utils import maybe_apply_chat_template

    datasets.disable_progress_bars()
    datasets.disable_caching()
    ds = datasets.Dataset(table)
    ds = ds.map(maybe_apply_chat_template, fn_kwargs={"processing_class": tokenizer})

    def lengths(batch):
        p = tokenizer(batch["prompt"], add_special_tokens=False)["input_ids"]
        c = tokenizer(batch["chosen"], add_special_tokens=False)["input_ids"]
        r = tokenizer(batch["rejected"], add_special_tokens=False)["input_ids"]
        return {
            "prompt_len": [len(x) for x in p],
            "chosen_len": [len(x) for x in c],
            "rejected_len": [len(x) for x in r],
        }

    ds = ds.map(lengths, batched=True)
    ds = ds.filter(
        lambda b: [
            p + max(c, r) <= max_length
            for p, c, r in zip(b["prompt_len"], b["chosen_len"], b["rejected_len"], strict=True)
        ],
        batched=True,
        input_columns=None,
    )
    return ds.num_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()

    t0 = time.perf_counter()
    table = make_table(args.rows)
    tokenizer = make_tokenizer()
    print(
        f"data: {args.rows:,} rows, tokenizer vocab {len(tokenizer):,}, setup {time.perf_counter() - t0:.1f}s"
    )
    times: dict[str, list[float]] = {"prefkit": [], "trl_recipe": []}
    kept: dict[str, int] = {}
    for rep in range(args.repeats):
        for name, fn in (("prefkit", run_prefkit), ("trl_recipe", run_trl))[:: 1 if rep % 2 == 0 else -1]:
            start = time.perf_counter()
            kept[name] = fn(table, tokenizer, args.max_length)
            times[name].append(time.perf_counter() - start)
            print(f"  repeat {rep + 1} {name:<10} {times[name][-1]:7.2f}s  kept {kept[name]:,}", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "rows": args.rows,
        "max_length": args.max_length,
        "repeats": args.repeats,
        "median_seconds": {k: round(v, 3) for k, v in med.items()},
        "rows_per_second": {k: round(args.rows / v) for k, v in med.items()},
        "speedup": round(med["trl_recipe"] / med["prefkit"], 2),
        "kept": kept,
    }
    print(
        json.dumps(result, indent=2)
        if args.json
        else f"median prefkit {med['prefkit']:.2f}s, TRL recipe {med['trl_recipe']:.2f}s, "
        f"speedup {result['speedup']}x"
    )


if __name__ == "__main__":
    main()
