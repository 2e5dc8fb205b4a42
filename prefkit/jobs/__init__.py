"""The sharded job that `reflogps`, `score` and `generate` run on: what every job can be told (``options.py``:
``JobOptions``), work shards and the work folder (``plan.py``), shard leases any number of workers share
(``leases.py``), the worker loop, ``JobKind`` and ``JobSpec`` (``runner.py``), the atomic merge of the finished
shards into OUT (``merge.py``), what a job reports (``report.py``: progress, counts, each worker's summary) and
torchrun (``distributed.py``).

It knows nothing about what a shard computes: each job passes its own shard function.
"""
