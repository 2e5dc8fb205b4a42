"""prefkit: preference-data preparation for DPO.

Library first: every CLI command is one function call here, returning a result with ``summary()`` (the text the
command prints) and ``to_dict()`` (what ``--json`` prints): ``prefkit.build`` (:class:`BuildResult`),
``prefkit.detect`` (:class:`DetectResult`), ``prefkit.presets`` (:class:`PresetsResult`), ``prefkit.stats``
(:class:`StatsResult`), ``prefkit.reflogps`` (:class:`ReflogpsResult`), ``prefkit.score`` (:class:`ScoreResult`),
``prefkit.verify`` (:class:`VerifyResult`), ``prefkit.push`` (:class:`PushResult`). A command's flags are its
function's keywords (``--min-margin 1`` is ``min_margin=1``). Every name here is imported on first use, so
``import prefkit`` and ``prefkit --help`` stay fast; type checkers see them all (the ``TYPE_CHECKING`` block).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefkit import _moved
from prefkit.version import __version__

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    # the commands and their results
    "build": "prefkit.pipeline",
    "BuildResult": "prefkit.pipeline",
    "detect": "prefkit.pipeline",
    "DetectResult": "prefkit.results",
    "presets": "prefkit.formats.presets",
    "PresetsResult": "prefkit.formats.presets",
    "stats": "prefkit.output.stats",
    "StatsResult": "prefkit.results",
    "reflogps": "prefkit.reflogps.job",
    "ReflogpsResult": "prefkit.job_results",
    "score": "prefkit.rewards.score",
    "ScoreResult": "prefkit.job_results",
    "verify": "prefkit.reflogps.verify",
    "VerifyResult": "prefkit.job_results",
    "push": "prefkit.publish.hub",
    "PushResult": "prefkit.publish.hub",
    "generate": "prefkit.generate.job",
    "GenerateResult": "prefkit.job_results",
    "report": "prefkit.report",
    "ReportResult": "prefkit.report",
    # building blocks
    "BuildOptions": "prefkit.options",
    "load_recipe": "prefkit.options",
    "detect_source": "prefkit.pipeline",
    "normalise": "prefkit.formats",
    "load_source": "prefkit.sources",
    "compute_stats": "prefkit.output.stats",
    "write_output": "prefkit.output",
    "read_output": "prefkit.output",
    "load_target": "prefkit.chat.target",
    "PrefkitError": "prefkit.errors",
    "PreferenceRecord": "prefkit.record",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover - what the lazy names are, for type checkers and IDEs
    from prefkit.chat.target import load_target as load_target
    from prefkit.errors import PrefkitError as PrefkitError
    from prefkit.formats import normalise as normalise
    from prefkit.formats.presets import PresetsResult as PresetsResult
    from prefkit.formats.presets import presets as presets
    from prefkit.generate.job import generate as generate
    from prefkit.job_results import GenerateResult as GenerateResult
    from prefkit.job_results import ReflogpsResult as ReflogpsResult
    from prefkit.job_results import ScoreResult as ScoreResult
    from prefkit.job_results import VerifyResult as VerifyResult
    from prefkit.options import BuildOptions as BuildOptions
    from prefkit.options import load_recipe as load_recipe
    from prefkit.output import read_output as read_output
    from prefkit.output import write_output as write_output
    from prefkit.output.stats import compute_stats as compute_stats
    from prefkit.output.stats import stats as stats
    from prefkit.pipeline import BuildResult as BuildResult
    from prefkit.pipeline import build as build
    from prefkit.pipeline import detect as detect
    from prefkit.pipeline import detect_source as detect_source
    from prefkit.publish.hub import PushResult as PushResult
    from prefkit.publish.hub import push as push
    from prefkit.record import PreferenceRecord as PreferenceRecord
    from prefkit.reflogps.job import reflogps as reflogps
    from prefkit.reflogps.verify import verify as verify
    from prefkit.report import ReportResult as ReportResult
    from prefkit.report import report as report
    from prefkit.results import DetectResult as DetectResult
    from prefkit.results import StatsResult as StatsResult
    from prefkit.rewards.score import score as score
    from prefkit.sources import load_source as load_source

_moved.install()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        # importing prefkit.reflogps.job binds the (callable) package prefkit.reflogps: keep one object
        return globals().get(name, getattr(module, name))
    raise AttributeError(f"module 'prefkit' has no attribute {name!r}")
