"""Old module paths of prefkit 0.1 and 0.2, kept importable (with a DeprecationWarning) after the code moved into the
pipeline's folders (docs/architecture.md). ``prefkit.trl`` is the documented path of the TRL trainer and stays
without a warning."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings
from typing import Any

#: The release that removes the deprecated old paths.
REMOVED_IN = "0.4.0"

#: old module -> (new module, deprecated)
MOVED = {
    "prefkit.trl": ("prefkit.integrations.trl", False),
    "prefkit.records": ("prefkit.record", True),
    "prefkit.templates": ("prefkit.chat.tokenize", True),
    "prefkit.chat_templates": ("prefkit.chat.templates", True),
    "prefkit.target": ("prefkit.chat.target", True),
    "prefkit.token_filters": ("prefkit.chat.lengths", True),
    "prefkit.models": ("prefkit.loading.model", True),
    "prefkit.card": ("prefkit.output.card", True),
    "prefkit.export": ("prefkit.output.exports", True),
    "prefkit.stats": ("prefkit.output.stats", True),
    "prefkit.hub": ("prefkit.publish.hub", True),
    "prefkit.presets": ("prefkit.formats.presets", True),
    "prefkit.mix": ("prefkit.select.mix", True),
    "prefkit.dedup": ("prefkit.select.dedup", True),
    "prefkit.splits": ("prefkit.select.splits", True),
    # 0.3: the sharded job, reward scoring and model loading in packages of their own (docs/architecture.md)
    "prefkit.reflogps.plan": ("prefkit.jobs.plan", True),
    "prefkit.reflogps.leases": ("prefkit.jobs.leases", True),
    "prefkit.reflogps.runner": ("prefkit.jobs.runner", True),
    "prefkit.reflogps.report": ("prefkit.jobs.report", True),
    "prefkit.reflogps.distributed": ("prefkit.jobs.distributed", True),
    "prefkit.reflogps.reward": ("prefkit.rewards.reward", True),
    "prefkit.reflogps.score": ("prefkit.rewards.score", True),
    "prefkit.reflogps.audit": ("prefkit.output.audit", True),
    "prefkit.reflogps.model": ("prefkit.loading.model", True),
    "prefkit.reflogps.merge": ("prefkit.jobs.merge", True),
    "prefkit.generate.rm": ("prefkit.rewards.rm", True),
    "prefkit.generate.judge": ("prefkit.rewards.judge", True),
    "prefkit.sources.presets": ("prefkit.formats.presets", True),
    "prefkit.publish.licences": ("prefkit.output.licences", True),
    "prefkit.output.folder": ("prefkit.store.folder", True),
    "prefkit.output.lock": ("prefkit.store.lock", True),
    "prefkit.output.writer": ("prefkit.store.writer", True),
}


#: old module paths that are also the names of the package's functions (``prefkit.stats(out)``): importing the
#: old path sets the package's attribute to the module, so that module calls its function of the same name too
CALLABLE = ("prefkit.stats", "prefkit.presets")


class _CallableModule(types.ModuleType):
    """A module that is also its function (:data:`CALLABLE`): ``prefkit.stats(out)`` after ``import prefkit.stats``
    calls :func:`prefkit.output.stats.stats` as it did before the import."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as the module now at the new one (the same module object)."""

    def find_spec(self, fullname, path, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new, deprecated = MOVED[spec.name]
        if deprecated:
            warnings.warn(
                f"{spec.name} moved to {new}; the old path will be removed in prefkit {REMOVED_IN}",
                DeprecationWarning,
                stacklevel=3,
            )
        module = importlib.import_module(new)
        if spec.name in CALLABLE:
            module.__class__ = _CallableModule
        return module

    def exec_module(self, module):  # the module is already executed
        sys.modules[module.__spec__.name if module.__spec__ else module.__name__] = module


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
