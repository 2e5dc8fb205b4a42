"""torchtune's preference_dataset (torchtune/datasets/_preference.py) on the exported parquet files, with a
tokenizer that records the messages it is given (ChosenRejectedToMessages' output). Prints, per row, the chosen
and rejected messages as (role, text, masked)."""

import json
import sys

from torchtune.datasets import preference_dataset


class Recorder:
    """A ModelTokenizer that keeps the messages instead of tokenizing them."""

    def __init__(self):
        self.seen = []

    def tokenize_messages(self, messages, **kwargs):
        self.seen.append([[m.role, m.text_content, m.masked] for m in messages])
        return [1, 2], [True, False]


files = sys.argv[1:]
tok = Recorder()
ds = preference_dataset(tok, source="parquet", data_files=files, split="train")
for i in range(len(ds)):
    ds[i]
print(json.dumps([{"chosen": c, "rejected": r} for c, r in zip(tok.seen[::2], tok.seen[1::2], strict=True)]))
