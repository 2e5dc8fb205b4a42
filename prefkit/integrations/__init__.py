"""Integrations with trainers: :mod:`.trl` (``PrecomputedRefDPOTrainer`` and ``PrecomputedRefKTOTrainer``, also
importable as ``prefkit.trl``)."""
