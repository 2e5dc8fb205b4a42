"""Integrations with trainers: :mod:`.trl` (``PrecomputedRefDPOTrainer``, also importable as ``prefkit.trl``)."""
