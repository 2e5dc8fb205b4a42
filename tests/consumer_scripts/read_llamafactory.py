"""LLaMA-Factory reads an exported folder as its users do: the entries of OUT/dataset_info.json
(llamafactory.data.parser.get_dataset_list) loaded and aligned by llamafactory.data.loader._load_single_dataset
(SharegptDatasetConverter). Prints, per row, the aligned _prompt / _response / _system / _tools."""

import json
import sys
import tempfile

from llamafactory.data.loader import _load_single_dataset
from llamafactory.data.parser import get_dataset_list
from llamafactory.hparams import DataArguments, ModelArguments
from transformers import Seq2SeqTrainingArguments

folder = sys.argv[1]
with open(f"{folder}/dataset_info.json") as f:
    names = list(json.load(f))
data_args = DataArguments(dataset_dir=folder, dataset=names)
model_args = ModelArguments(model_name_or_path="unused")
training_args = Seq2SeqTrainingArguments(output_dir=tempfile.mkdtemp())
rows = []
for attr in get_dataset_list(names, folder):
    for row in _load_single_dataset(attr, model_args, data_args, training_args):
        rows.append({k: row[k] for k in ("_prompt", "_response", "_system", "_tools")})
print(json.dumps(rows))
