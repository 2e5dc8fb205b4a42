"""LLaMA-Factory's whole data path for reward / DPO training (llamafactory.data.get_dataset, stage "rm": the
entries of OUT/dataset_info.json loaded, aligned and encoded pairwise by its "qwen" template) on the exported
folder (argv[1]) with the tokenizer saved in argv[2]. Prints, per row, the decoded chosen / rejected sequences."""

import json
import sys
import tempfile

from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.hparams import DataArguments, ModelArguments
from transformers import AutoTokenizer, Seq2SeqTrainingArguments

folder, tokenizer = sys.argv[1:3]
with open(f"{folder}/dataset_info.json") as f:
    names = list(json.load(f))
tok = AutoTokenizer.from_pretrained(tokenizer)
data_args = DataArguments(dataset_dir=folder, dataset=names, template="qwen", cutoff_len=4096)
model_args = ModelArguments(model_name_or_path=tokenizer)
training_args = Seq2SeqTrainingArguments(output_dir=tempfile.mkdtemp())
template = get_template_and_fix_tokenizer(tok, data_args)
module = get_dataset(template, model_args, data_args, training_args, stage="rm", tokenizer=tok)
rows = [
    {"chosen": tok.decode(r["chosen_input_ids"]), "rejected": tok.decode(r["rejected_input_ids"])}
    for r in module["train_dataset"]
]
print(json.dumps(rows))
