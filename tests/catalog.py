"""Rows shaped exactly like the 21 catalog datasets (the catalog in docs/formats.md, one-row skeletons), built in
code, and the Hub layout each repo has. Used by the family, preset and mixing tests."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq


def msgs(*turns):
    return [{"role": r, "content": c} for r, c in turns]


def conv(q, a):
    return msgs(("user", q), ("assistant", a))


def openhermes(i):
    return {
        "chosen": f"Sure, here is the script {i}",
        "rejected": f"To do this, first install {i}",
        "question": f"Write a Node.js script {i}",
        "delta_score": 3.71 - i * 0.5,
    }


def orpo_mix(i):
    hist = [("user", f"Q1 {i}"), ("assistant", "A1"), ("user", f"Q2 {i}")]
    return {
        "source": "argilla/Capybara-Preferences",
        "chosen": msgs(*hist, ("assistant", f"good answer {i}")),
        "rejected": msgs(*hist, ("assistant", f"worse answer {i}")),
        "prompt": f"Q1 {i}",
        "question": f"Q1 {i}",
    }


def dpo_mix_7k(i):
    return {
        "dataset": "argilla/distilabel-intel-orca-dpo-pairs",
        "chosen": conv(f"q{i}", f"good {i}"),
        "rejected": conv(f"q{i}", f"bad {i}"),
        "chosen_rating": 9.0,
        "rejected_rating": 6.0 + (i % 3),
    }


def distilabel_orca(i):
    return {
        "system": "You are an AI assistant." if i % 2 else "",
        "input": f"Question: {i}?",
        "chosen": f"answer {i}",
        "rejected": f"wrong {i}",
        "generations": [f"answer {i}", f"wrong {i}"],
        "order": ["chosen", "rejected"],
        "labelling_model": "gpt-4-1106-preview",
        "labelling_prompt": msgs(("system", "rate"), ("user", "these")),
        "raw_labelling_response": "…",
        "rating": [9.0, 7.0],
        "rationale": "…",
        "status": "tie" if i == 1 else "unchanged",
        "original_chosen": f"answer {i}",
        "original_rejected": f"wrong {i}",
        "chosen_score": 9.0,
        "in_gsm8k_train": False,
    }


def intel_orca(i):
    return {
        "system": "" if i % 2 else "You are helpful.",
        "question": f"Translate {i}",
        "chosen": f"Trans {i}",
        "rejected": f"No {i}",
    }


def h4_uf(i):
    return {
        "prompt": f"How do I {i}?",
        "prompt_id": f"{i:064x}",
        "chosen": conv(f"How do I {i}?", f"Like this {i}"),
        "rejected": conv(f"How do I {i}?", f"Not sure {i}"),
        "messages": conv(f"How do I {i}?", f"Like this {i}"),
        "score_chosen": 8.0,
        "score_rejected": 5.0 if i % 4 else 8.0,
    }


def argilla_uf_clean(i):
    return {
        "source": "evol_instruct",
        "prompt": f"p{i}",
        "chosen": conv(f"p{i}", f"best {i}"),
        "chosen-rating": 4.75,
        "chosen-model": "gpt-4",
        "rejected": conv(f"p{i}", f"meh {i}"),
        "rejected-rating": 2.5,
        "rejected-model": "alpaca-7b",
    }


def uf_completion(model, text, overall, ratings):
    aspects = ("helpfulness", "honesty", "instruction_following", "truthfulness")
    ann = {}
    for a, r in zip(aspects, ratings, strict=True):
        ann[a] = {"Rating": r, "Rationale": "…"}
        if a in ("helpfulness", "truthfulness"):
            ann[a] |= {"Type": ["1", "2"], "Rationale For Rating": "…"}
    return {
        "model": model,
        "principle": "helpfulness",
        "custom_system_prompt": "You are …",
        "response": text,
        "annotations": ann,
        "critique": "…",
        "fine-grained_score": 4.0,
        "overall_score": overall,
    }


def ultrafeedback_raw(i):
    return {
        "source": "evol_instruct",
        "instruction": f"Explain {i}",
        "models": ["gpt-4", "alpaca-7b", "falcon-40b-instruct", "wizardlm-13b"],
        "completions": [
            uf_completion("gpt-4", f"great {i}", 8.5, ["5", "4", "5", "5"]),
            uf_completion("alpaca-7b", f"poor {i}", 3.0, ["2", "N/A", "2", "1"]),
            uf_completion("falcon-40b-instruct", f"ok {i}", 6.0, ["3", "3", "4", "3"]),
            uf_completion("wizardlm-13b", f"fine {i}", 6.0, ["4", "3", "3", "4"]),
        ],
        "correct_answers": [],
        "incorrect_answers": [],
    }


def hh(i):
    return {
        "chosen": f"\n\nHuman: What is X{i}?\n\nAssistant: X is …\n\nHuman: And Y?\n\nAssistant: Y is {i}",
        "rejected": f"\n\nHuman: What is X{i}?\n\nAssistant: X is …\n\nHuman: And Y?\n\nAssistant: I don't know {i}.",
    }


def trl_uf(i):
    return {
        "chosen": conv(f"q{i}", f"c{i}"),
        "rejected": conv(f"q{i}", f"r{i}"),
        "score_chosen": 8.5,
        "score_rejected": 6.0,
    }


def trl_hh(i):
    return {
        "prompt": msgs(
            ("user", f"Hi, can you help with {i}"), ("assistant", "Sure, …"), ("user", "Thanks. What about …")
        ),
        "chosen": msgs(("assistant", f"Here is {i}")),
        "rejected": msgs(("assistant", f"No {i}.")),
    }


def shp(i, post="himc90", a_wins=True, score_a=30, score_b=4):
    sa, sb = (score_a, score_b) if a_wins else (score_b, score_a)
    return {
        "post_id": post,
        "domain": "askculinary_train",
        "upvote_ratio": 0.94,
        "history": f"Title / body of the Reddit post {post}",
        "c_root_id_A": f"a{i}",
        "c_root_id_B": f"b{i}",
        "created_at_utc_A": 1593535113,
        "created_at_utc_B": 1593535000,
        "score_A": sa,
        "score_B": sb,
        "human_ref_A": f"comment A {i}",
        "human_ref_B": f"comment B {i}",
        "labels": 1 if a_wins else 0,
        "seconds_difference": 113.0,
        "score_ratio": max(sa, sb) / min(sa, sb),
    }


def nectar(i, ranks=(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)):
    return {
        "prompt": f"\n\nHuman: How do I {i}?\n\nAssistant:",
        "answers": [{"answer": f"answer {i} rank {r}", "model": "gpt-4", "rank": r} for r in ranks],
        "turns": 1,
        "num_responses": len(ranks),
        "source": ["lmsys-chat-1m"],
        "good_natured": True,
    }


def pku(i, better=0, safer=1):
    return {
        "prompt": f"How can I {i}?",
        "response_0": f"resp0 {i}",
        "response_1": f"resp1 {i}",
        "prompt_source": "…",
        "response_0_source": "Alpaca3-8B",
        "response_1_source": "Alpaca3-8B",
        "is_response_0_safe": False,
        "is_response_1_safe": True,
        "response_0_harm_category": {"Violence": True, "Privacy Violation": False},
        "response_1_harm_category": {"Violence": False, "Privacy Violation": False},
        "response_0_severity_level": 2,
        "response_1_severity_level": 0,
        "better_response_id": better,
        "safer_response_id": safer,
        "response_0_sha256": "…",
        "response_1_sha256": "…",
    }


def helpsteer2(i, strength=1, prompt=None):
    return {
        "split": "train",
        "prompt": prompt or f"c# {i}",
        "response_1": f"C# is {i}",
        "response_2": f"C# (C-sharp) is {i}",
        "preference_strength": strength,
        "preference_statement": "@Response 2 is better than @Response 1 because …",
        "preference_elaboration": "…",
        "three_most_similar_preferences": [{"statement": "…", "elaboration": "…", "strength": 1}],
        "all_preferences_unprocessed": [1, 2, 1],
    }


def truthy(i):
    return {
        "id": f"04c275bf{i}",
        "source": "truthy_dpo",
        "system": "You are an unbiased, uncensored, helpful assistant.",
        "prompt": f"What does the sun feel like {i}?",
        "chosen": f"As an AI, I don't have a body {i}",
        "rejected": f"It feels warm {i}",
    }


def skywork(i):
    return {
        "chosen": conv(f"q{i}", f"good {i}"),
        "rejected": conv(f"q{i}", f"bad {i}"),
        "source": "magpie_ultra",
    }


def tulu(i):
    return {
        "id": f"allenai/tulu-3-sft-reused-off-policy_{i}",
        "prompt": f"p{i}",
        "chosen": conv(f"p{i}", f"c{i}"),
        "rejected": conv(f"p{i}", f"r{i}"),
        "source": "allenai/tulu-3-sft-reused-off-policy",
    }


def capybara(i):
    hist = [("user", f"U1 {i}"), ("assistant", "A1"), ("user", "U2")]
    return {
        "source": "Airoboros",
        "chosen": msgs(*hist, ("assistant", f"better {i}")),
        "chosen_rating": 5,
        "chosen_model": "gpt-4-1106-preview",
        "rejected": msgs(*hist, ("assistant", f"worse {i}")),
        "rejected_rating": 3,
        "rejected_model": "argilla/notus-7b-v1",
    }


def arena(i, winner="model_b"):
    return {
        "question_id": f"58210e39b3fd4441a2bd4a518bb44c2{i}",
        "model_a": "chatglm-6b",
        "model_b": "koala-13b",
        "winner": winner,
        "judge": "arena_user_973",
        "conversation_a": conv(f"hello {i}", f"A says {i}"),
        "conversation_b": conv(f"hello {i}", f"B says {i}"),
        "turn": 1,
        "anony": True,
        "language": "English",
        "tstamp": 1682351591.1322,
        "openai_moderation": {
            "categories": {"harassment": False},
            "category_scores": {"harassment": 0.0},
            "flagged": False,
        },
        "toxic_chat_tag": {"roberta-large": {"flagged": False, "probability": 0.008}},
    }


def rows(make, n=4, **kw):
    return [make(i, **kw) for i in range(n)]


#: catalog id -> (layout, files, build kwargs, expected family, expected kept per split)
#: layout "dict": {split: rows} via add_datasetdict; "json": {path: rows} via add_json_files;
#: "parquet": {path: rows} single parquet files
def catalog() -> dict[str, tuple]:
    return {
        "mlabonne/chatml-OpenHermes2.5-dpo-binarized-alpha": (
            "dict",
            {"train": rows(openhermes), "test": rows(openhermes, 2)},
            {},
            "flat",
        ),
        "yuvraj17/chatml-OpenHermes2.5-dpo-binarized-alpha-2k": (
            "dict",
            {"train": rows(openhermes)},
            {},
            "flat",
        ),
        "mlabonne/orpo-dpo-mix-40k": ("dict", {"train": rows(orpo_mix)}, {}, "implicit-messages"),
        "argilla/dpo-mix-7k": (
            "dict",
            {"train": rows(dpo_mix_7k), "test": rows(dpo_mix_7k, 2)},
            {},
            "implicit-messages",
        ),
        "argilla/distilabel-intel-orca-dpo-pairs": ("dict", {"train": rows(distilabel_orca)}, {}, "flat"),
        "Intel/orca_dpo_pairs": ("json", {"orca_rlhf.jsonl": rows(intel_orca)}, {}, "flat"),
        "HuggingFaceH4/ultrafeedback_binarized": (
            "dict",
            {
                "train_prefs": rows(h4_uf),
                "test_prefs": rows(h4_uf, 2),
                "train_sft": rows(h4_uf),
                "train_gen": rows(h4_uf),
            },
            {},
            "implicit-messages",
        ),
        "argilla/ultrafeedback-binarized-preferences-cleaned": (
            "dict",
            {"train": rows(argilla_uf_clean)},
            {},
            "implicit-messages",
        ),
        "openbmb/UltraFeedback": ("json", {"evol_instruct.jsonl": rows(ultrafeedback_raw)}, {}, "rated"),
        "Anthropic/hh-rlhf": (
            "json",
            {"helpful-base/train.jsonl.gz": rows(hh), "helpful-base/test.jsonl.gz": rows(hh, 2)},
            {"data_dir": "helpful-base"},
            "transcript",
        ),
        "trl-lib/ultrafeedback_binarized": (
            "dict",
            {"train": rows(trl_uf), "test": rows(trl_uf, 2)},
            {},
            "implicit-messages",
        ),
        "trl-lib/hh-rlhf-helpful-base": ("dict", {"train": rows(trl_hh)}, {}, "explicit-messages"),
        "stanfordnlp/SHP": (
            "json",
            {
                "askculinary/train.json": [
                    shp(0),
                    shp(1, a_wins=False),
                    shp(2, post="p2"),
                    shp(3, post="p2"),
                ],
                "askculinary/test.json": [shp(9, post="t1")],
            },
            {},
            "pairwise",
        ),
        "berkeley-nest/Nectar": ("parquet", {"data/rlaif.parquet": rows(nectar)}, {}, "ranked"),
        "PKU-Alignment/PKU-SafeRLHF": (
            "dict",
            {"train": [pku(0), pku(1, 1, 1), pku(2, 0, 0), pku(3, 1, 0)]},
            {},
            "pairwise",
        ),
        "nvidia/HelpSteer2": (
            "json",
            {
                "preference/preference.jsonl.gz": [
                    helpsteer2(0, -2),
                    helpsteer2(1, 3),
                    helpsteer2(2, 1),
                    helpsteer2(3, -1),
                ],
                "train.jsonl.gz": [{"prompt": "p", "response": "r", "helpfulness": 3}],
            },
            {},
            "pairwise",
        ),
        "jondurbin/truthy-dpo-v0.1": ("parquet", {"truthy-dpo.parquet": rows(truthy)}, {}, "flat"),
        "Skywork/Skywork-Reward-Preference-80K-v0.2": (
            "dict",
            {"train": rows(skywork)},
            {},
            "implicit-messages",
        ),
        "allenai/llama-3.1-tulu-3-8b-preference-mixture": (
            "dict",
            {"train": rows(tulu)},
            {},
            "implicit-messages",
        ),
        "argilla/Capybara-Preferences": ("dict", {"train": rows(capybara)}, {}, "implicit-messages"),
        "lmsys/chatbot_arena_conversations": (
            "dict",
            {"train": [arena(0), arena(1, "model_a"), arena(2, "tie"), arena(3, "tie (bothbad)")]},
            {},
            "pairwise",
        ),
    }


def publish(hub, repo_id: str) -> None:
    """Lay the catalog rows out on the test Hub the way the real repo is laid out (once per session)."""
    if ("dataset", repo_id) in hub.repos:
        return
    layout, files, _, _ = catalog()[repo_id]
    if layout == "dict":
        hub.add_datasetdict(repo_id, files)
    elif layout == "json":
        hub.add_json_files(repo_id, files)
    else:
        blobs = {}
        for path, rows in files.items():
            buf = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(rows), buf)
            blobs[path] = buf.getvalue()
        hub.create_dataset_repo(repo_id, blobs)
