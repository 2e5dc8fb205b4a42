"""Synthetic preference data for the benchmarks: random word texts with lognormal lengths, made in code with a
fixed seed (no download), and UltraFeedback-binarized-shaped conversations."""

from __future__ import annotations

WORDS = (
    "the model answer question data python list value error function return because first second example "
    "result number string time people system make good better best explain simple method step write code "
    "using without between should could would about which their there other these those while where"
).split()


def random_texts(rng, n: int, mean_words: float, tag: str | None = None) -> list[str]:
    """``n`` texts of :data:`WORDS` drawn by ``rng`` (a numpy Generator), lognormal lengths around
    ``mean_words`` (3 to 2000 words); ``tag``: each text starts with ``<tag><i>`` (unique texts)."""
    import numpy as np

    vocab = np.array(WORDS)
    lengths = np.clip(rng.lognormal(np.log(mean_words), 0.6, n).astype(int), 3, 2000)
    flat = vocab[rng.integers(0, len(vocab), lengths.sum())]
    out, pos = [], 0
    for i, n_words in enumerate(lengths):
        text = " ".join(flat[pos : pos + n_words])
        out.append(f"{tag}{i} {text}" if tag is not None else text)
        pos += n_words
    return out


def uf_conversations(prompts: list[str], answers: list[str]):
    """``[user, assistant]`` message lists as a pyarrow array, as UltraFeedback-binarized's chosen/rejected."""
    import pyarrow as pa

    return pa.array(
        [
            [{"content": q, "role": "user"}, {"content": a, "role": "assistant"}]
            for q, a in zip(prompts, answers, strict=True)
        ]
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``, /proc), in MiB. Not ``ru_maxrss``: on Linux it survives
    fork + exec, so a child would report its parent's peak when that was higher (the parent made the data)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")
