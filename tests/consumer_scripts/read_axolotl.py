"""axolotl's DPO chat_template.default strategy (axolotl/prompt_strategies/dpo/chat_template.py) configured by the
card's YAML (argv[2]), on the exported folder (argv[1]) as datasets loads it, with the tokenizer saved in argv[3]
and chat_template: tokenizer_default. Prints, per row, the prompt / chosen / rejected texts axolotl trains on."""

import json
import sys

import datasets
import yaml
from axolotl.prompt_strategies.dpo.chat_template import default
from transformers import AutoTokenizer

folder, config, tokenizer = sys.argv[1:4]
with open(config) as f:
    cfg = yaml.safe_load(f)
transform = default(cfg, dataset_idx=0)
transform = transform[0] if isinstance(transform, tuple) else transform
tok = AutoTokenizer.from_pretrained(tokenizer)
rows = []
for sample in datasets.load_dataset(folder, split=cfg["datasets"][0]["split"]):
    out = transform(sample, tokenizer=tok)
    rows.append(
        {"source_index": sample["source_index"], **{k: out[k] for k in ("prompt", "chosen", "rejected")}}
    )
print(json.dumps(rows))
