"""Reward scoring on the sharded job (:mod:`prefkit.jobs`): what `score` can be told (``options.py``), reward-model
scores of a built set's pairs (``reward.py``: the engine; ``score.py``: the job and ``prefkit.score``), of a
generated set's completions (``rm.py``), and LLM judges with rubrics as data (``judge.py``, ``rubrics/*.json``);
what the reward-model jobs share (the manifest section, the work folder, the default ``max_length``) is
``common.py``, below them. The label audit of a scored set is a statistic: :mod:`prefkit.output.audit`.
"""
