"""The CRD as the API server would apply it: defaults, then the CEL rules.

The CEL rules are evaluated with cel-python plus the two Kubernetes list functions they
use (``isSorted``, ``sum``); the rules must accept every example and reject every spec the
Python validator rejects for a cross-field reason. Defaulting is simulated to check that
what the API server stores parses to the same spec as what was applied.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml
from celpy import celtypes

from controller.experiment import crd, validation
from tests.specs import MINIMAL

EXAMPLES = sorted((Path(__file__).parents[2] / "manifests" / "examples").glob("*.yaml"))


def _is_sorted(items: Any) -> Any:
    return celtypes.BoolType(all(items[i] <= items[i + 1] for i in range(len(items) - 1)))


def _sum(items: Any) -> Any:
    total = items[0] if items else celtypes.IntType(0)
    for item in items[1:]:
        total = total + item
    return total


_ENV = celpy.Environment()
_FUNCTIONS = {"isSorted": _is_sorted, "sum": _sum}


@functools.cache
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule), functions=_FUNCTIONS)


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill in ``default`` values the way the API server does (recursively, objects only)."""
    if isinstance(value, dict):
        out = dict(value)
        for name, child in schema.get("properties", {}).items():
            if name not in out and "default" in child:
                out[name] = copy.deepcopy(child["default"])
            if name in out:
                out[name] = apply_defaults(child, out[name])
        return out
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def cel_failures(schema: dict[str, Any], value: Any, path: str = "spec") -> Iterator[str]:
    """The messages of every CEL rule that ``value`` breaks."""
    for rule in schema.get("x-kubernetes-validations", []):
        if not _program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)}):
            yield f"{path}: {rule['message']}"
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                yield from cel_failures(child, value[name], f"{path}.{name}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from cel_failures(schema["items"], item, f"{path}[{i}]")


def _example_spec(path: Path) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(path.read_text())["spec"]
    return spec


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_cel_accepts_the_examples(path: Path) -> None:
    defaulted = apply_defaults(crd.SPEC_SCHEMA, _example_spec(path))
    assert list(cel_failures(crd.SPEC_SCHEMA, defaulted)) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_defaulting_keeps_the_meaning(path: Path) -> None:
    raw = _example_spec(path)
    defaulted = apply_defaults(crd.SPEC_SCHEMA, raw)
    assert defaulted != raw
    assert validation.validate_spec(defaulted) == validation.validate_spec(raw)


Mutation = Callable[[dict[str, Any]], None]


def _guardrail(i: int, **changes: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        g = raw["analysis"]["guardrails"][i]
        for key, value in changes.items():
            if value is None:
                g.pop(key, None)
            else:
                g[key] = value

    return mutate


def _top(**changes: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        raw.update(changes)

    return mutate


def _analysis(**changes: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is None:
                raw["analysis"].pop(key, None)
            else:
                raw["analysis"][key] = value

    return mutate


# Specs that pass the per-field schema but break a cross-field rule.
CROSS_FIELD = {
    "weights not increasing": _top(
        steps=[{"weight": 50, "minDuration": "1m"}, {"weight": 5, "minDuration": "1m"}]
    ),
    "equal weights": _top(
        steps=[{"weight": 5, "minDuration": "1m"}, {"weight": 5, "minDuration": "1m"}]
    ),
    "two routers": _top(
        router={"gatewayAPI": {"httpRoute": "r"}, "kserve": {"inferenceService": "i"}}
    ),
    "same names": _top(challenger={"name": "a"}),
    "same istio subsets": _top(
        router={"istio": {"virtualService": "v", "championSubset": "x", "challengerSubset": "x"}}
    ),
    "replicas with one deployment": _top(
        router={"replicas": {"totalReplicas": 4}}, challenger={"name": "b", "deployment": "a"}
    ),
    "mean without margin": _guardrail(0, margin=None),
    "kappa on a mean": _guardrail(0, kappa=2),
    "direction on a rate": _guardrail(2, direction="higherIsBetter"),
    "rate without kappa": _guardrail(2, kappa=None),
    "margin on a rate": _guardrail(2, margin={"relative": 0.1}),
    "threshold on a rate": _guardrail(2, thresholdMs=100),
    "tail without threshold": _guardrail(1, thresholdMs=None),
    "tail with two thresholds": _guardrail(1, thresholdFromBaseline={"quantile": 0.99}),
    "margin with both": _guardrail(0, margin={"relative": 0.1, "absolute": 1}),
    "latency without margin": _guardrail(2, kind="latency", kappa=None),
    "absolute margin on a latency": _guardrail(
        2, kind="latency", kappa=None, margin={"absolute": 1.0}
    ),
    "kappa on a latency": _guardrail(2, kind="latency", margin={"relative": 0.05}),
    "direction on a latency": _guardrail(
        2, kind="latency", kappa=None, margin={"relative": 0.05}, direction="lowerIsBetter"
    ),
    "mean without cap": _analysis(revenueCap=None),
    "cap with both": _analysis(revenueCap={"value": 1, "fromBaseline": {"quantile": 0.999}}),
    "derived cap without baseline": _analysis(revenueCap={"fromBaseline": {"quantile": 0.999}}),
    "baseline with nothing derived": _analysis(baseline={"duration": "30m"}),
    "zero interval": _analysis(interval="0s"),
    "max duration below the steps": _top(maxDuration="15m"),
}


@pytest.mark.parametrize("name", list(CROSS_FIELD))
def test_cel_rejects_what_the_validator_rejects(name: str) -> None:
    raw = copy.deepcopy(MINIMAL)
    CROSS_FIELD[name](raw)
    with pytest.raises(validation.SpecError):
        validation.validate_spec(raw)
    defaulted = apply_defaults(crd.SPEC_SCHEMA, raw)
    # What the API server checks first: the per-field schema (oneOf included) ...
    schema_ok = jsonschema.Draft4Validator(crd.SPEC_SCHEMA).is_valid(defaulted)
    # ... then CEL; one of the two must refuse.
    assert not schema_ok or list(cel_failures(crd.SPEC_SCHEMA, defaulted))


def test_minimal_spec_passes_both() -> None:
    defaulted = apply_defaults(crd.SPEC_SCHEMA, MINIMAL)
    assert jsonschema.Draft4Validator(crd.SPEC_SCHEMA).is_valid(defaulted)
    assert list(cel_failures(crd.SPEC_SCHEMA, defaulted)) == []
