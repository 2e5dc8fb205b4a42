"""torchtune's preference_dataset (torchtune/datasets/_preference.py) built as a DPO recipe builds it: the card's
``dataset`` section (argv[1], an OmegaConf YAML) through torchtune.config.instantiate, with a tokenizer that
records the messages it is given (ChosenRejectedToMessages' output). Prints, per row, the chosen and rejected
messages as (role, text, masked)."""

import json
import sys

from omegaconf import OmegaConf
from torchtune import config


class Recorder:
    """A ModelTokenizer that keeps the messages instead of tokenizing them."""

    def __init__(self):
        self.seen = []

    def tokenize_messages(self, messages, **kwargs):
        self.seen.append([[m.role, m.text_content, m.masked] for m in messages])
        return [1, 2], [True, False]


cfg = OmegaConf.load(sys.argv[1])
tok = Recorder()
ds = config.instantiate(cfg.dataset, tok)
for i in range(len(ds)):
    ds[i]
print(json.dumps([{"chosen": c, "rejected": r} for c, r in zip(tok.seen[::2], tok.seen[1::2], strict=True)]))
