"""What `prefkit score`'s reward-model jobs share, below them: the job on a built set's pairs
(:mod:`prefkit.rewards.score`) and the one on a generated set's completions (:mod:`prefkit.rewards.rm`) write the
same manifest section (``rm_scores``) from the same work folder (``.score-work``), take the same default
``max_length`` and report the reward model the same way."""

from __future__ import annotations

from typing import Any

from prefkit.reflogps.provenance import section

#: the manifest section and the work folder of the job
SECTION = "rm_scores"
WORK_DIR = ".score-work"
LABEL = "reward-model score"
#: ``max_length`` when the reward model states no context length (TRL's ``RewardConfig.max_length`` default)
TRL_REWARD_DEFAULT_MAX_LENGTH = 1024


def default_max_length(model: Any, tokenizer: Any) -> int:
    """The longest text the reward model can hold: its ``max_position_embeddings``, or the tokenizer's
    ``model_max_length`` when smaller (transformers' "no limit" sentinel ignored); TRL's ``RewardConfig`` default
    1024 when neither says."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    limits = [getattr(cfg, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    known = [int(n) for n in limits if isinstance(n, int) and 0 < n < 10**9]
    return min(known) if known else TRL_REWARD_DEFAULT_MAX_LENGTH


def scores_section(loaded: Any, settings: dict, info: dict) -> dict:
    """The manifest's ``rm_scores`` section: the reference job's provenance fields, with the reward rule."""

    sec = section(loaded.provenance, settings, info)
    sec["truncation_mode"] = "none: pairs with a text longer than max_length are not scored (null)"
    sec["tokenization_rule"] = sec.pop("trl_tokenization_rule")
    sec["num_labels"] = 1
    sec["pad_token_id"] = info["engine"].get("pad_token_id")
    return sec


def model_summary(section: dict) -> dict:
    """What a summary says of the reward model that scored (from the manifest's ``rm_scores`` section)."""
    keys = ("revision", "dtype", "device", "world_size", "max_length")
    return {"reward_model": section["model"], **{key: section[key] for key in keys}}
