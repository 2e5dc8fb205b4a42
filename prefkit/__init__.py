"""prefkit: preference-data preparation for DPO.

Library first: every CLI command is one function call here. Heavy dependencies (torch, transformers,
datasets) are imported lazily, so ``import prefkit`` and ``prefkit --help`` stay instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "build": "prefkit.pipeline",
    "BuildResult": "prefkit.pipeline",
    "load_source": "prefkit.sources",
    "detect": "prefkit.formats",
    "normalise": "prefkit.formats",
    "write_output": "prefkit.output",
    "read_output": "prefkit.output",
    "PrefkitError": "prefkit.errors",
    "PreferenceRecord": "prefkit.records",
    "compute_stats": "prefkit.stats",
    "load_target": "prefkit.target",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from prefkit.errors import PrefkitError as PrefkitError
    from prefkit.records import PreferenceRecord as PreferenceRecord


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        return getattr(module, name)
    raise AttributeError(f"module 'prefkit' has no attribute {name!r}")
