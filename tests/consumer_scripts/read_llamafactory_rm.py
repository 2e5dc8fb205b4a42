"""LLaMA-Factory's whole data path for reward / DPO training, configured by the card's YAML (argv[1], placeholders
filled in): the config parsed by llamafactory.hparams.parser._parse_train_args (unknown keys are an error), then
llamafactory.data.get_dataset with stage "rm" (the entries of OUT/dataset_info.json loaded, aligned and encoded
pairwise by the configured template). Prints the parsed stage and, per row, the decoded chosen / rejected."""

import json
import sys

import yaml
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.hparams.parser import _parse_train_args
from transformers import AutoTokenizer

with open(sys.argv[1]) as f:
    config = yaml.safe_load(f)
model_args, data_args, training_args, finetuning_args, _ = _parse_train_args(config)
tok = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
template = get_template_and_fix_tokenizer(tok, data_args)
module = get_dataset(template, model_args, data_args, training_args, stage="rm", tokenizer=tok)
rows = [
    {"chosen": tok.decode(r["chosen_input_ids"]), "rejected": tok.decode(r["rejected_input_ids"])}
    for r in module["train_dataset"]
]
print(json.dumps({"stage": finetuning_args.stage, "pref_beta": finetuning_args.pref_beta, "rows": rows}))
