"""The spec model, the shared validator, manual requests and frozen frozen."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controller.decide import manual
from controller.experiment import crd, defaults, frozen, spec, validation
from tests.specs import MINIMAL

EXAMPLES = sorted((Path(__file__).parents[2] / "manifests" / "examples").glob("*.yaml"))


def test_examples_parse() -> None:
    assert len(EXAMPLES) == 4
    kinds = set()
    for path in EXAMPLES:
        parsed = validation.parse_experiment(yaml.safe_load(path.read_text()))
        kinds.add(parsed.router.kind)
    assert kinds == set(spec.RouterKind)


def test_defaults_are_filled_in() -> None:
    s = validation.validate_spec(MINIMAL)
    assert s.champion == spec.Arm("a", "a", "a")
    assert s.router == spec.GatewayAPIRouter("r", 0)
    assert s.steps[0] == spec.Step(5, timedelta(minutes=10), 0)
    a = s.analysis
    assert a.interval == timedelta(minutes=1)
    assert a.alpha == 0.05
    assert a.burn_in == spec.BurnIn(3000, 200, 10, 100)
    assert a.srm_enabled is True
    assert a.allowed_lateness == timedelta(minutes=2)
    assert a.baseline is None and not a.needs_baseline
    assert a.guardrails[0] == spec.MeanGuardrail(
        "revenue", spec.Margin(spec.MarginKind.RELATIVE, 0.02), spec.Direction.HIGHER_IS_BETTER
    )
    assert s.promotion is spec.PromotionMode.AUTOMATIC
    assert s.failure_policy == spec.FailurePolicy(
        timedelta(minutes=15), timedelta(minutes=10), timedelta(minutes=10)
    )
    assert s.max_duration == timedelta(hours=24)


def test_parsed_values_are_frozen() -> None:
    s = validation.validate_spec(MINIMAL)
    with pytest.raises(AttributeError):
        s.max_duration = timedelta(0)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("250ms", 0.25),
        ("1m0.5s", 60.5),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert spec.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1d", "5", "m", "-5m", "5 m", "5m ", "1h-2m", "5M"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="text"):
        spec.parse_duration(text)


@given(st.integers(min_value=0, max_value=10**7))
def test_format_duration_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert spec.parse_duration(spec.format_duration(value)) == value


Mutation = Callable[[dict[str, Any]], object]


def _set(path: str, value: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _del(path: str) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return mutate


G = "analysis.guardrails"
BAD = [
    ("weights not increasing", _set("steps.1.weight", 5), "spec.steps[1].weight"),
    ("weight zero", _set("steps.0.weight", 0), "spec.steps[0].weight"),
    ("weight above 100", _set("steps.1.weight", 101), "spec.steps[1].weight"),
    ("no steps", _set("steps", []), "spec.steps"),
    ("bad step duration", _set("steps.0.minDuration", "ten minutes"), "spec.steps[0].minDuration"),
    ("negative samples", _set("steps.0.minSamples", -1), "spec.steps[0].minSamples"),
    ("two routers", _set("router.istio", {"virtualService": "v"}), "spec.router"),
    ("no router", _set("router", {}), "spec.router"),
    ("missing champion", _del("champion"), "spec.champion"),
    ("missing challenger name", _set("challenger", {"service": "s"}), "spec.challenger.name"),
    ("same arm names", _set("challenger.name", "a"), "spec.challenger.name"),
    ("alpha zero", _set("analysis.alpha", 0), "spec.analysis.alpha"),
    ("alpha too large", _set("analysis.alpha", 0.7), "spec.analysis.alpha"),
    ("interval zero", _set("analysis.interval", "0s"), "spec.analysis.interval"),
    ("unknown guardrail kind", _set(f"{G}.0.kind", "median"), "spec.analysis.guardrails[0].kind"),
    ("kappa below one", _set(f"{G}.2.kappa", 0.5), "spec.analysis.guardrails[2].kappa"),
    ("rate without kappa", _del(f"{G}.2.kappa"), "spec.analysis.guardrails[2].kappa"),
    ("mean without margin", _del(f"{G}.0.margin"), "spec.analysis.guardrails[0].margin"),
    (
        "margin both relative and absolute",
        _set(f"{G}.0.margin", {"relative": 0.1, "absolute": 1}),
        "spec.analysis.guardrails[0].margin",
    ),
    (
        "relative margin above 1",
        _set(f"{G}.0.margin", {"relative": 2}),
        f"spec.{G}[0].margin.relative",
    ),
    (
        "margin on a rate",
        _set(f"{G}.2.margin", {"relative": 0.1}),
        "spec.analysis.guardrails[2].margin",
    ),
    ("kappa on a mean", _set(f"{G}.0.kappa", 2), "spec.analysis.guardrails[0].kappa"),
    (
        "threshold on a rate",
        _set(f"{G}.2.thresholdMs", 100),
        "spec.analysis.guardrails[2].thresholdMs",
    ),
    (
        "tail without threshold",
        _del(f"{G}.1.thresholdMs"),
        "spec.analysis.guardrails[1].thresholdMs",
    ),
    (
        "tail with two thresholds",
        _set(f"{G}.1.thresholdFromBaseline", {"quantile": 0.99}),
        "spec.analysis.guardrails[1].thresholdMs",
    ),
    (
        "duplicate guardrail names",
        _set(f"{G}.2.name", "revenue"),
        "spec.analysis.guardrails[2].name",
    ),
    (
        "guardrail name not DNS-like",
        _set(f"{G}.2.name", "Errors!"),
        "spec.analysis.guardrails[2].name",
    ),
    ("no guardrails", _set(G, []), "spec.analysis.guardrails"),
    ("mean without revenue cap", _del("analysis.revenueCap"), "spec.analysis.revenueCap"),
    (
        "cap value and fromBaseline",
        _set("analysis.revenueCap.fromBaseline", {"quantile": 0.999}),
        "spec.analysis.revenueCap",
    ),
    (
        "derived cap without baseline",
        _set("analysis.revenueCap", {"fromBaseline": {"quantile": 0.999}}),
        "spec.analysis.baseline",
    ),
    (
        "baseline with nothing derived",
        _set("analysis.baseline", {"duration": "30m"}),
        "spec.analysis.baseline",
    ),
    (
        "quantile out of range",
        _set("analysis.revenueCap", {"fromBaseline": {"quantile": 1}}),
        "spec.analysis.revenueCap.fromBaseline.quantile",
    ),
    ("bad max duration", _set("maxDuration", "1d"), "spec.maxDuration"),
    ("max duration below the steps", _set("maxDuration", "15m"), "spec.maxDuration"),
    ("unknown field", _set(f"{G}.1.thresholdMS", 100), "spec.analysis.guardrails[1].thresholdMS"),
    ("unknown top-level field", _set("canary", {}), "spec.canary"),
    ("bad promotion mode", _set("promotion", {"mode": "auto"}), "spec.promotion.mode"),
    (
        "bad grace period",
        _set("failurePolicy", {"missingData": {"gracePeriod": "soon"}}),
        "spec.failurePolicy.missingData.gracePeriod",
    ),
    (
        "same istio subsets",
        _set(
            "router",
            {"istio": {"virtualService": "v", "championSubset": "x", "challengerSubset": "x"}},
        ),
        "spec.router.istio.challengerSubset",
    ),
    (
        "replicas too few",
        _set("router", {"replicas": {"totalReplicas": 1}}),
        "spec.router.replicas.totalReplicas",
    ),
    (
        "replicas with one deployment",
        lambda r: (
            _set("router", {"replicas": {"totalReplicas": 4}})(r),
            _set("challenger.deployment", "a")(r),
        ),
        "spec.challenger.deployment",
    ),
    (
        "negative rule index",
        _set("router.gatewayAPI.ruleIndex", -1),
        "spec.router.gatewayAPI.ruleIndex",
    ),
    (
        "empty route name",
        _set("router.gatewayAPI.httpRoute", ""),
        "spec.router.gatewayAPI.httpRoute",
    ),
]


@pytest.mark.parametrize(("mutate", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_spec_names_the_field(mutate: Mutation, field: str) -> None:
    raw = copy.deepcopy(MINIMAL)
    mutate(raw)
    with pytest.raises(validation.SpecError) as caught:
        validation.validate_spec(raw)
    fields = [issue.field for issue in caught.value.issues]
    assert field in fields
    assert str(caught.value).startswith(caught.value.field + ": ")


def test_every_issue_is_reported() -> None:
    raw = copy.deepcopy(MINIMAL)
    raw["maxDuration"] = "1d"
    raw["analysis"]["alpha"] = 2
    with pytest.raises(validation.SpecError) as caught:
        validation.validate_spec(raw)
    assert {i.field for i in caught.value.issues} == {"spec.maxDuration", "spec.analysis.alpha"}
    text = str(caught.value)
    assert "more)" not in text  # every problem is named, none summarised as "(and N more)"
    assert "spec.maxDuration: " in text and "spec.analysis.alpha: " in text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"apiVersion": "canaryctl.dev/v1", "kind": "Experiment", "spec": MINIMAL}, "apiVersion"),
        ({"apiVersion": "canaryctl.dev/v1alpha1", "kind": "Rollout", "spec": MINIMAL}, "kind"),
        ({"apiVersion": "canaryctl.dev/v1alpha1", "kind": "Experiment"}, "spec"),
        ({"spec": ["not", "an", "object"]}, "spec"),
    ],
)
def test_bad_envelope(body: dict[str, Any], field: str) -> None:
    with pytest.raises(validation.SpecError) as caught:
        validation.parse_experiment(body)
    assert caught.value.field == field


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(validation.SpecError, ValueError)
    with pytest.raises(ValueError, match="issues"):
        validation.SpecError([])


def test_derived_settings_need_a_baseline() -> None:
    raw = copy.deepcopy(MINIMAL)
    raw["analysis"]["guardrails"][1] = {
        "name": "latency",
        "kind": "tail",
        "thresholdFromBaseline": {"quantile": 0.99, "margin": 0.2},
        "kappa": 1.2,
    }
    raw["analysis"]["baseline"] = {"duration": "30m"}
    raw["maxDuration"] = "1h"
    s = validation.validate_spec(raw)
    assert s.analysis.needs_baseline
    assert s.analysis.guardrails[1] == spec.TailGuardrail(
        "latency", 1.2, None, spec.FromBaseline(0.99, 0.2)
    )


# -- frozen settings ---------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_frozen_analysis_round_trips(path: Path) -> None:
    a = validation.parse_experiment(yaml.safe_load(path.read_text())).analysis
    raw = frozen.analysis_to_raw(a)
    assert validation.analysis_from_raw(raw) == a
    assert frozen.digest(validation.analysis_from_raw(raw)) == frozen.digest(a)


def test_digest_changes_with_any_setting() -> None:
    base = validation.validate_spec(MINIMAL).analysis
    raw = copy.deepcopy(MINIMAL)
    raw["analysis"]["guardrails"][2]["kappa"] = 1.6
    assert frozen.digest(validation.validate_spec(raw).analysis) != frozen.digest(base)
    explicit = copy.deepcopy(MINIMAL)
    explicit["analysis"]["alpha"] = 0.05  # the default, spelled out
    assert frozen.digest(validation.validate_spec(explicit).analysis) == frozen.digest(base)


# -- manual requests ---------------------------------------------------------------------

ANN = manual.REQUEST_ANNOTATION


def test_request_round_trips() -> None:
    req = manual.ManualRequest(
        "r-1",
        manual.RequestAction.PROMOTE,
        "alice@example.com",
        "looks good",
        full=True,
        requested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert manual.parse_request(manual.format_request(req)) == req


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("not json", "JSON"),
        ('["a"]', "object"),
        ('{"action": "rollback", "actor": "a"}', "id"),
        ('{"id": "x y", "action": "rollback", "actor": "a"}', "id"),
        ('{"id": "r", "action": "explode", "actor": "a"}', "action"),
        ('{"id": "r", "action": "rollback"}', "actor"),
        ('{"id": "r", "action": "rollback", "actor": "a", "full": true}', "full"),
        ('{"id": "r", "action": "promote", "actor": "a", "full": "yes"}', "full"),
        ('{"id": "r", "action": "rollback", "actor": "a", "force": true}', "force"),
        ('{"id": "r", "action": "rollback", "actor": "a", "requestedAt": "noon"}', "requestedAt"),
    ],
)
def test_malformed_requests(value: str, error: str) -> None:
    parsed = manual.parse_request({ANN: value})
    assert isinstance(parsed, manual.MalformedRequest)
    assert error in parsed.error
    assert parsed.id  # always something to mark handled
    assert manual.parse_request({ANN: value}) == parsed  # stable id


def test_no_request() -> None:
    assert manual.parse_request(None) is None
    assert manual.parse_request({"other": "x"}) is None


def test_request_defaults() -> None:
    parsed = manual.parse_request({ANN: '{"id": "r", "action": "pause", "actor": "bob"}'})
    assert parsed == manual.ManualRequest("r", manual.RequestAction.PAUSE, "bob", "")


# -- documentation -----------------------------------------------------------------------


def _field_paths(node: dict[str, Any], path: str) -> list[str]:
    out = []
    for name, child in node.get("properties", {}).items():
        out.append(f"{path}.{name}")
        out += _field_paths(child, f"{path}.{name}")
    if "items" in node:
        out += _field_paths(node["items"], f"{path}[]")
    return out


def test_every_spec_field_is_documented() -> None:
    text = (Path(__file__).parents[2] / "docs" / "spec.md").read_text()
    missing = [p for p in _field_paths(crd.SPEC_SCHEMA, "spec") if f"`{p}`" not in text]
    assert not missing


def _schema_at(path: str) -> dict[str, Any]:
    node: dict[str, Any] = crd.SPEC_SCHEMA
    for part in path.split("."):
        name = part.removesuffix("[]")
        node = node["properties"][name]
        if part.endswith("[]"):
            node = node["items"]
    return node


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# The API server would add a schema default to every guardrail kind, so the parser adds it.
_PARSER_ONLY = {"analysis.guardrails[].direction"}


@pytest.mark.parametrize("path", sorted(defaults.BY_PATH))
def test_each_default_is_stated_once_for_the_schema_and_the_docs(path: str) -> None:
    value = defaults.BY_PATH[path]
    node = _schema_at(path)
    if path in _PARSER_ONLY:
        assert "default" not in node
    elif "gracePeriod" not in path:  # a grace period's default sits on its parent object
        assert node["default"] == value
    row = next(
        line
        for line in (Path(__file__).parents[2] / "docs" / "spec.md").read_text().splitlines()
        if line.startswith(f"| `spec.{path}` |")
    )
    assert f"`{_shown(value)}`" in re.split(r"(?<!\\)\|", row)[3], row


def test_grace_period_defaults_come_from_the_defaults_module() -> None:
    policy = crd.SPEC_SCHEMA["properties"]["failurePolicy"]["properties"]
    assert {k: v["default"]["gracePeriod"] for k, v in policy.items()} == {
        "missingData": defaults.MISSING_DATA_GRACE,
        "databaseUnreachable": defaults.DATABASE_UNREACHABLE_GRACE,
        "challengerNotReady": defaults.CHALLENGER_NOT_READY_GRACE,
    }


def test_a_minimal_spec_parses_to_the_stated_defaults() -> None:
    parsed = validation.validate_spec(MINIMAL)
    a = parsed.analysis
    assert (a.alpha, a.interval, a.allowed_lateness, a.srm_enabled) == (
        defaults.ALPHA,
        spec.parse_duration(defaults.INTERVAL),
        spec.parse_duration(defaults.ALLOWED_LATENESS),
        defaults.SRM_ENABLED,
    )
    assert (a.burn_in.min_requests, a.burn_in.min_non_zero_revenue) == (
        defaults.BURN_IN_MIN_REQUESTS,
        defaults.BURN_IN_MIN_NON_ZERO_REVENUE,
    )
    assert parsed.max_duration == spec.parse_duration(defaults.MAX_DURATION)
    assert parsed.promotion is defaults.PROMOTION_MODE


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_routing_snapshot_rebuilds_the_router(path: Path) -> None:
    parsed = validation.parse_experiment(yaml.safe_load(path.read_text()))
    routing = frozen.routing_to_raw(parsed)
    raw = {
        **routing,
        "steps": [{"weight": 5, "minDuration": "1m"}],
        "analysis": MINIMAL["analysis"],
    }
    rebuilt = validation.validate_spec(raw)
    assert (rebuilt.router, rebuilt.champion, rebuilt.challenger) == (
        parsed.router,
        parsed.champion,
        parsed.challenger,
    )


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 200)
    | st.floats(-2, 2, allow_nan=False)
    | st.sampled_from(["", "5m", "0s", "x", "mean", "tail", "rate", "revenue", "1d"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["name", "kind", "weight", "minDuration", "margin", "relative", "kappa", "value"]
            ),
            inner,
            max_size=3,
        )
    ),
    max_leaves=6,
)
_PATHS = [p.removeprefix("spec.") for p in _field_paths(crd.SPEC_SCHEMA, "spec")]


@given(st.lists(st.tuples(st.sampled_from(_PATHS), _json), min_size=1, max_size=3))
def test_validator_never_crashes(edits: list[tuple[str, Any]]) -> None:
    """Whatever is written where, the result is a spec or a SpecError naming a field."""
    raw = copy.deepcopy(MINIMAL)
    for path, value in edits:
        node: Any = raw
        parts = path.replace("[]", ".0").split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[0] if node else None
            elif isinstance(node, dict):
                node = node.setdefault(part, {}) if part != "0" else None
            if not isinstance(node, (dict, list)):
                break
        else:
            if isinstance(node, dict):
                node[parts[-1]] = value
    try:
        validation.validate_spec(raw)
    except validation.SpecError as error:
        assert all(issue.field.startswith("spec") for issue in error.issues)
