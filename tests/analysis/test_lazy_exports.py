"""``analysis`` imports its exported names on first use, so a light submodule stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import analysis


def test_every_exported_name_has_a_home_and_only_those() -> None:
    assert set(analysis._MODULE_OF) == set(analysis.__all__)
    assert set(dir(analysis)) >= set(analysis.__all__)


def test_submodules_stay_reachable_as_attributes() -> None:
    assert analysis.sequential.DEFAULT_N_STAR > 0
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = analysis.nothing  # type: ignore[attr-defined]


def test_a_light_submodule_does_not_import_scipy() -> None:
    probe = "import sys, analysis.buckets; print('scipy' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
