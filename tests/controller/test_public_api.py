"""The public API of ``controller``: small, sorted, pinned, and cheap to import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import controller
from controller.experiment import spec, validation
from controller.ingest import writer
from controller.reports import notebook

PUBLIC = {
    "BatchWriter": writer.BatchWriter,
    "DatabaseSink": writer.DatabaseSink,
    "ExperimentSpec": spec.ExperimentSpec,
    "SpecError": validation.SpecError,
    "load_report": notebook.load,
    "parse_experiment": validation.parse_experiment,
}


def test_the_public_names_are_pinned_and_sorted() -> None:
    assert controller.__all__ == sorted(PUBLIC)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_each_public_name_is_the_documented_object(name: str) -> None:
    assert getattr(controller, name) is PUBLIC[name]


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="nope"):
        controller.nope  # noqa: B018


def test_importing_controller_loads_nothing_heavy() -> None:
    probe = "import json, sys, controller; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    loaded = set(json.loads(done.stdout))
    heavy = {"numpy", "scipy", "sqlalchemy", "pyarrow", "pandas", "kubernetes", "analysis"}
    assert heavy & loaded == set()
