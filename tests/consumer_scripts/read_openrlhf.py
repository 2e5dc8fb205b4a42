"""OpenRLHF's reward / DPO data rule (openrlhf/datasets/reward_dataset.py preprocess_data) on the exported folder
as datasets loads it, with --data.apply_chat_template and no prompt key, and the tokenizer saved in argv[2].
Prints, per row, the reward-model texts and the DPO prompt / chosen / rejected; and whether openrlhf/cli/train_rm.py's parser
knows each flag of the card's command (argv[3:])."""

import importlib.util
import json
import sys

import datasets
from openrlhf.datasets.reward_dataset import preprocess_data
from transformers import AutoTokenizer

folder, tokenizer = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(tokenizer)
rows = []
for data in datasets.load_dataset(folder, split="train"):
    _, chosen, rejected, margin = preprocess_data(
        data, None, None, "chosen", "rejected", tok.apply_chat_template
    )
    dpo = preprocess_data(data, None, None, "chosen", "rejected", tok.apply_chat_template, is_dpo=True)
    rows.append(
        {"source_index": data["source_index"], "rm": [chosen, rejected, margin], "dpo": list(dpo[:3])}
    )
with open(importlib.util.find_spec("openrlhf.cli.train_rm").origin) as f:
    source = f.read()  # its argparse flags
flags = {f: f'"{f}"' in source for f in sys.argv[3:]}
print(json.dumps({"rows": rows, "flags": flags}))
