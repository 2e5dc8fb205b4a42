"""prefkit: preference-data preparation for DPO.

Library first: every CLI command is one function call here (``prefkit.build``, ``prefkit.detect``,
``prefkit.reflogps``, ``prefkit.verify``, ``prefkit.score``, ``prefkit.compute_stats``, ``prefkit.push``). Heavy
dependencies (torch, transformers, datasets) are imported lazily, so ``import prefkit`` and ``prefkit --help`` stay
instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefkit import _moved

__version__ = "0.3.0"

_LAZY = {
    "build": "prefkit.pipeline",
    "BuildResult": "prefkit.pipeline",
    "BuildOptions": "prefkit.options",
    "load_recipe": "prefkit.options",
    "detect": "prefkit.formats",
    "detect_source": "prefkit.pipeline",
    "normalise": "prefkit.formats",
    "load_source": "prefkit.sources",
    "reflogps": "prefkit.reflogps.job",
    "verify": "prefkit.reflogps.verify",
    "score": "prefkit.reflogps.score",
    "compute_stats": "prefkit.output.stats",
    "push": "prefkit.publish.hub",
    "write_output": "prefkit.output",
    "read_output": "prefkit.output",
    "load_target": "prefkit.chat.target",
    "PrefkitError": "prefkit.errors",
    "PreferenceRecord": "prefkit.record",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from prefkit.errors import PrefkitError as PrefkitError
    from prefkit.record import PreferenceRecord as PreferenceRecord

_moved.install()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        return getattr(module, name)
    raise AttributeError(f"module 'prefkit' has no attribute {name!r}")
