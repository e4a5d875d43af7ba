"""canaryctl's controller: the Experiment model, the decision, the operator, storage,
ingestion, routers, reports and the CLI (``docs/architecture.md`` maps them).

The names below are the public API that the README and ``docs/`` show; everything else is
reached through its module. They are imported on first use, so ``import controller``
(which every CLI command does) stays light. ``tests/controller/test_public_api.py`` pins them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.experiment.spec import ExperimentSpec
    from controller.experiment.validation import SpecError, parse_experiment
    from controller.ingest.writer import BatchWriter, DatabaseSink
    from controller.reports.notebook import load as load_report

__all__ = [
    "BatchWriter",
    "DatabaseSink",
    "ExperimentSpec",
    "SpecError",
    "load_report",
    "parse_experiment",
]

_WHERE = {
    "BatchWriter": ("controller.ingest.writer", "BatchWriter"),
    "DatabaseSink": ("controller.ingest.writer", "DatabaseSink"),
    "ExperimentSpec": ("controller.experiment.spec", "ExperimentSpec"),
    "SpecError": ("controller.experiment.validation", "SpecError"),
    "load_report": ("controller.reports.notebook", "load"),
    "parse_experiment": ("controller.experiment.validation", "parse_experiment"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'controller' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
