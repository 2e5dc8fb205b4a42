"""How to train on each export: the consumer's own config or command, as the dataset card shows it.

Each function takes the set's load id (its folder, or its Hub repo) and the data files of each split (paths in
the folder) and returns ``(language, text)``: the card puts the text in a fenced block of that language, and
``tests/test_export.py`` parses it (YAML with ``yaml.safe_load``, Python with ``ast.parse``, a shell command
with ``shlex.split``). Placeholders the user fills in are upper case (``MODEL``). Keys are the consumers' own:

- TRL's ``trl kto --config`` YAML (``trl/scripts/kto.py``: ``ScriptArguments`` + ``KTOConfig`` + ``ModelConfig``)
- OpenRLHF's ``openrlhf.cli.train_rm`` flags (0.11: ``--data.dataset``, ``--data.chosen_key``,
  ``--data.rejected_key``, ``--data.apply_chat_template``, ``--model.margin_loss_enable``)
- LLaMA-Factory's ``llamafactory-cli train`` YAML (``stage: dpo``, ``dataset_dir``, ``dataset``, ``template``)
- axolotl's YAML (``rl: dpo``, ``datasets[].type: chat_template.default``, ``field_messages`` / ``field_chosen``
  / ``field_rejected``)
- NeMo-RL's ``examples/run_dpo.py`` YAML (``data.train.data_path`` to the JSONL, ``dataset_name:
  PreferenceDataset``)
- torchtune's DPO recipe YAML (``dataset._component_: torchtune.datasets.preference_dataset``)
- the hosted API's upload (``client.files.create(purpose="fine-tune")``, ``client.fine_tuning.jobs.create(method=
  {"type": "dpo", ...})``)
"""

from __future__ import annotations

import json

import yaml

from prefkit.output.shapes import dataset_info


def _yaml(data: dict, comment: str) -> tuple[str, str]:
    return "yaml", f"# {comment}\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _first(files: dict[str, list[str]], split: str = "train") -> list[str]:
    return files.get(split) or next(iter(files.values()), [])


def kto_yaml(load_id: str, files: dict[str, list[str]]) -> tuple[str, str]:
    config = {
        "model_name_or_path": "MODEL",
        "dataset_name": load_id,
        "dataset_train_split": "train",
        "output_dir": "kto",
        "per_device_train_batch_size": 8,
        "learning_rate": 5.0e-7,
    }
    return _yaml(config, "kto.yaml: trl kto --config kto.yaml")


def openrlhf_command(load_id: str, files: dict[str, list[str]]) -> tuple[str, str]:
    flags = [
        "deepspeed --module openrlhf.cli.train_rm",
        "--model.model_name_or_path MODEL",
        f"--data.dataset {load_id}",
        "--data.apply_chat_template",
        "--data.chosen_key chosen",
        "--data.rejected_key rejected",
        "--model.margin_loss_enable",
        "--ckpt.output_dir rm",
    ]
    return "bash", " \\\n  ".join(flags) + "\n"


def llamafactory_yaml(load_id: str, files: dict[str, list[str]]) -> tuple[str, str]:
    name = load_id.rstrip("/").split("/")[-1]
    entries = [k for k in dataset_info(name, files) if "_train" in k] or list(dataset_info(name, files))
    config = {
        "model_name_or_path": "MODEL",
        "stage": "dpo",
        "do_train": True,
        "finetuning_type": "lora",
        "pref_beta": 0.1,
        "pref_loss": "sigmoid",
        "dataset_dir": load_id,
        "dataset": ",".join(entries),
        "template": "TEMPLATE",
        "output_dir": "dpo",
    }
    return _yaml(config, "dpo.yaml: llamafactory-cli train dpo.yaml (dataset_dir holds dataset_info.json)")


def axolotl_yaml(load_id: str, files: dict[str, list[str]]) -> tuple[str, str]:
    config = {
        "base_model": "MODEL",
        "rl": "dpo",
        "chat_template": "tokenizer_default",
        "datasets": [
            {
                "path": load_id,
                "split": "train",
                "type": "chat_template.default",
                "field_messages": "messages",
                "field_chosen": "chosen",
                "field_rejected": "rejected",
            }
        ],
        "output_dir": "dpo",
    }
    return _yaml(config, "dpo.yaml: axolotl train dpo.yaml")


def nemo_rl_yaml(load_id: str, files: dict[str, list[str]]) -> tuple[str, str]:
    data: dict = {"train": {"data_path": f"{load_id}/nemo-rl/train.jsonl"}}
    if "test" in files:
        data["validation"] = {"data_path": f"{load_id}/nemo-rl/test.jsonl"}
    data["default"] = {"dataset_name": "PreferenceDataset", "prompt_file": None, "system_prompt_file": None}
    return _yaml(
        {"data": data},
        "the data section of examples/configs/dpo.yaml: uv run examples/run_dpo.py --config dpo.yaml",
    )


def torchtune_yaml(load_id: str, files: dict[str, list[str]]) -> tuple[str, str]:
    config = {
        "dataset": {
            "_component_": "torchtune.datasets.preference_dataset",
            "source": "parquet",
            "data_files": [f"{load_id}/{p}" for p in _first(files)],
            "split": "train",
        }
    }
    return _yaml(
        config,
        "the dataset section of a DPO recipe config: tune run lora_dpo_single_device --config dpo.yaml",
    )


def openai_upload(load_id: str, files: dict[str, list[str]]) -> tuple[str, str]:
    validation = (
        f'\nvalidation = client.files.create(file=open("{load_id}/openai/test.jsonl", "rb"), purpose="fine-tune")'
        if "test" in files
        else ""
    )
    method = json.dumps({"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}})
    extra = ", validation_file=validation.id" if "test" in files else ""
    text = (
        "from openai import OpenAI\n\n"
        "client = OpenAI()\n"
        f'train = client.files.create(file=open("{load_id}/openai/train.jsonl", "rb"), purpose="fine-tune")'
        f"{validation}\n"
        f'job = client.fine_tuning.jobs.create(model="MODEL", training_file=train.id{extra}, method={method})\n'
    )
    return "python", text
