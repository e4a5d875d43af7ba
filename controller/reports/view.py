"""The ReportView: everything a report shows, as frozen values.

Sits between the store and the renderers: ``read.build`` fetches an experiment's row, its
decision log, its looks (what the analysis showed at every finalised minute) and its
minute rollups, and :func:`from_rows` turns them into a view; ``render`` turns a view into
HTML, JSON or CSV and ``notebook`` into DataFrames. Nothing here recomputes a statistic:
every number is the one the operator recorded when it decided, and the frozen settings are
read through their one codec. Pure: no queries, no writes, no clock.

Longer than the house's 400 lines because the view's value types (a dozen small frozen
dataclasses, the report's schema) sit beside the functions that fill them; split them
apart and every reader would import two modules to name one report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from analysis import sequential
from controller.decide import actions
from controller.experiment import defaults, frozen, spec, validation
from controller.operate import evaluate
from controller.reports import results as res

if TYPE_CHECKING:
    from controller.storage import models

MINUTE = timedelta(minutes=1)

#: Decision kinds that end an experiment (the outcome a report leads with).
FINAL_KINDS = tuple(
    k.value
    for k in (
        actions.DecisionKind.ROLLBACK,
        actions.DecisionKind.PROMOTE,
        actions.DecisionKind.FAIL,
    )
)


@dataclass(frozen=True)
class GuardrailInfo:
    """A guardrail as frozen, with the line its estimate is judged against."""

    name: str
    kind: str
    margin_line: float  # mean: −margin (higherIsBetter) or +margin; tail/rate: κ
    null_line: float  # no effect: 0 for a mean difference, 1 for a ratio
    scale: str  # "relative" (a fraction of the champion's mean), "absolute" or "ratio"
    describe: str  # the rule in words, e.g. "fails when B/A−1 is surely below −5 %"
    direction: str | None = None
    margin: float | None = None
    kappa: float | None = None
    threshold_ms: float | None = None
    threshold_source: str | None = None


@dataclass(frozen=True)
class GuardrailPoint:
    """One guardrail at one look (the minute ``evaluated_until`` closes)."""

    evaluated_until: datetime
    step_index: int
    estimate: float | None
    lower: float | None
    upper: float | None
    p_value: float | None
    p_value_noninferiority: float | None
    verdict: str
    reason_code: str


@dataclass(frozen=True)
class SrmPoint:
    evaluated_until: datetime
    p_value: float | None
    observed_share: float | None
    expected_share: float | None
    mismatch: bool


@dataclass(frozen=True)
class Look:
    """What the analysis showed at one look: verdict, per-step samples per arm, SRM."""

    evaluated_until: datetime
    at: datetime
    step_index: int
    challenger_weight: int
    verdict: str
    samples_champion: int
    samples_challenger: int
    srm: SrmPoint


@dataclass(frozen=True)
class MinuteTraffic:
    """One minute of finalised requests per arm (from the minute rollups)."""

    minute: datetime
    champion_n: int
    challenger_n: int
    champion_errors: int
    challenger_errors: int
    champion_revenue: float
    challenger_revenue: float

    @property
    def challenger_share(self) -> float | None:
        total = self.champion_n + self.challenger_n
        return None if total == 0 else self.challenger_n / total


@dataclass(frozen=True)
class StepWindow:
    """A traffic step's test window ``[start, end)`` (end None: still open)."""

    index: int
    weight: int
    share: float
    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class DecisionEntry:
    at: datetime
    kind: str
    actor: str
    reason_code: str
    reason: str


@dataclass(frozen=True)
class Failure:
    """What made the experiment roll back, with the numbers at that moment."""

    reason_code: str
    reason: str
    at: datetime
    guardrail: str | None = None
    kind: str | None = None
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    p_value: float | None = None
    alpha: float | None = None
    margin_line: float | None = None
    scale: str | None = None
    first_failed_at: datetime | None = None  # the first look that showed FAIL
    step_index: int | None = None
    step_weight: int | None = None


@dataclass(frozen=True)
class Settings:
    """The frozen analysis settings: enough to reproduce every number in the report."""

    frozen_at: datetime | None
    alpha: float
    alpha_each: float
    n_tests: int
    samples_per_arm: int | None
    n_star: float
    revenue_cap: float | None
    revenue_cap_source: str | None
    burn_in_requests: int | None
    burn_in_nonzero: int | None
    allowed_lateness: str | None
    interval: str | None
    srm_enabled: bool
    evaluated_until: datetime | None
    data_start: datetime | None
    data_end: datetime | None
    snapshot: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportView:
    """One experiment's report (see the module docstring)."""

    namespace: str
    name: str
    phase: str
    champion: str
    challenger: str
    n_steps: int
    created_at: datetime
    outcome: DecisionEntry | None
    failure: Failure | None
    settings: Settings
    guardrails: tuple[GuardrailInfo, ...]
    series: Mapping[str, tuple[GuardrailPoint, ...]]
    looks: tuple[Look, ...]
    minutes: tuple[MinuteTraffic, ...]
    steps: tuple[StepWindow, ...]
    decisions: tuple[DecisionEntry, ...]
    results: tuple[res.ResultRow, ...] = ()
    latency: tuple[res.LatencyRow, ...] = ()
    step_samples: tuple[res.StepSample, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def outcome_kind(self) -> str:
        """Which first screen the report leads with (see :func:`outcome_kind`)."""
        return outcome_kind(self.phase, self.outcome)

    def to_dict(self) -> dict[str, Any]:
        """The whole view as JSON-ready data (datetimes as ISO 8601 strings)."""
        data: dict[str, Any] = _jsonable(asdict(self))
        return data | {"key": self.key}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# ----------------------------------------------------------------------------- reading


def _num(value: Any) -> float | None:
    if value is None:
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _describe(g: frozen.GuardrailTest) -> str:
    if g.scale is frozen.Scale.RATIO:
        what = (
            "share of requests slower than the threshold"
            if g.kind is spec.GuardrailKind.TAIL
            else "error rate"
        )
        return f"fails when the challenger's {what} is surely above κ = {g.margin_line:g} × the champion's"
    relative = g.scale is frozen.Scale.RELATIVE
    line = g.margin_line
    shown = (f"{100 * line:+g} %" if relative else f"{line:+g}").replace("-", "−")
    side = "below" if g.direction is spec.Direction.HIGHER_IS_BETTER else "above"
    return f"fails when {'B/A−1' if relative else 'B−A'} is surely {side} {shown}"


def _info(g: frozen.GuardrailTest) -> GuardrailInfo:
    return GuardrailInfo(
        g.name,
        g.kind.value,
        g.margin_line,
        g.null_line,
        g.scale.value,
        _describe(g),
        direction=None if g.direction is None else g.direction.value,
        margin=g.margin,
        kappa=g.kappa,
        threshold_ms=g.threshold_ms,
        threshold_source=g.threshold_source,
    )


def guardrail_infos(settings: frozen.FrozenSettings) -> tuple[GuardrailInfo, ...]:
    """Each frozen guardrail with its margin line and scale, as recorded at the freeze."""
    return tuple(_info(g) for g in settings.guardrails)


def settings_of(exp: models.Experiment) -> frozen.FrozenSettings | None:
    """The frozen settings as recorded; before the freeze, those the spec would freeze."""
    if exp.settings:
        return frozen.from_json(exp.settings, frozen_at=exp.settings_frozen_at or exp.created_at)
    try:
        parsed = validation.validate_spec(exp.spec or {})
    except validation.SpecError:
        return None  # an invalid spec never ran a test
    return frozen.freeze(parsed, exp.created_at)


def _settings(
    exp: models.Experiment,
    fs: frozen.FrozenSettings | None,
    extent: tuple[datetime, datetime] | None,
) -> Settings:
    state = exp.analysis_state or {}
    a = None if fs is None else fs.analysis
    tuning = None if a is None else a.tuning.samples_per_arm
    shares = [] if fs is None else [g.alpha for g in fs.guardrails]
    if fs is not None and fs.srm.enabled:
        shares.append(fs.srm.alpha)
    return Settings(
        frozen_at=exp.settings_frozen_at,
        alpha=defaults.ALPHA if fs is None else fs.family_alpha,
        alpha_each=shares[0] if shares else 0.0,
        n_tests=len(shares),
        samples_per_arm=tuning,
        n_star=float(tuning) if tuning else float(sequential.DEFAULT_N_STAR),
        revenue_cap=None if fs is None else _num(fs.revenue_cap),
        revenue_cap_source=None if fs is None else fs.revenue_cap_source,
        burn_in_requests=None if a is None else a.burn_in.min_requests,
        burn_in_nonzero=None if a is None else a.burn_in.min_non_zero_revenue,
        allowed_lateness=None if a is None else spec.format_duration(a.allowed_lateness),
        interval=None if a is None else spec.format_duration(a.interval),
        srm_enabled=True if fs is None else fs.srm.enabled,
        evaluated_until=_time(state.get("evaluatedUntil")),
        data_start=None if extent is None else extent[0],
        data_end=None if extent is None else extent[1] + MINUTE,
        snapshot={} if fs is None else frozen.to_json(fs),
    )


def _points(looks: Sequence[Mapping[str, Any]], name: str) -> tuple[GuardrailPoint, ...]:
    out = []
    for look in looks:
        g = next((g for g in look.get("guardrails") or [] if g["name"] == name), None)
        if g is None:
            continue
        out.append(
            GuardrailPoint(
                look["evaluated_until"],
                int(look["step_index"]),
                _num(g.get("estimate")),
                _num(g.get("lower")),
                _num(g.get("upper")),
                _num(g.get("pValue")),
                _num(g.get("pValueNonInferiority")),
                g.get("verdict", ""),
                g.get("reasonCode", ""),
            )
        )
    return tuple(out)


def _look(raw: Mapping[str, Any]) -> Look:
    srm = raw.get("srm") or {}
    samples = raw.get("samples") or {}
    return Look(
        raw["evaluated_until"],
        raw["at"],
        int(raw["step_index"]),
        int(raw["challenger_weight"]),
        raw["verdict"],
        int(samples.get("champion", 0)),
        int(samples.get("challenger", 0)),
        SrmPoint(
            raw["evaluated_until"],
            _num(srm.get("pValue")),
            _num(srm.get("observedShare")),
            _num(srm.get("expectedShare")),
            bool(srm.get("mismatch", False)),
        ),
    )


def _minutes(rows: Sequence[Mapping[str, Any]]) -> tuple[MinuteTraffic, ...]:
    by_minute: dict[datetime, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        by_minute.setdefault(row["period"], {})[row["arm"]] = row
    out = []
    for minute in sorted(by_minute):
        arms = by_minute[minute]
        a, b = arms.get("champion", {}), arms.get("challenger", {})
        out.append(
            MinuteTraffic(
                minute,
                int(a.get("n", 0)),
                int(b.get("n", 0)),
                int(a.get("errors", 0)),
                int(b.get("errors", 0)),
                float(a.get("revenue_capped_sum", 0)),
                float(b.get("revenue_capped_sum", 0)),
            )
        )
    return tuple(out)


def _failure(
    final: DecisionEntry | None,
    evidence: Mapping[str, Any],
    infos: Sequence[GuardrailInfo],
    series: Mapping[str, Sequence[GuardrailPoint]],
    steps: Sequence[StepWindow],
    alpha_each: float,
) -> Failure | None:
    if final is None or final.kind != "rollback":
        return None
    analysis_ev = evidence.get("analysis") or {}
    prefix = "guardrail_failed:"
    name = final.reason_code[len(prefix) :] if final.reason_code.startswith(prefix) else None
    step_index = evidence.get("stepIndex")
    weight = next((s.weight for s in steps if s.index == step_index), None)
    if name is None:
        return Failure(
            final.reason_code, final.reason, final.at, step_index=step_index, step_weight=weight
        )
    logged: list[dict[str, Any]] = analysis_ev.get("guardrails") or []
    g = next((g for g in logged if g.get("name") == name), {})
    info = next((i for i in infos if i.name == name), None)
    first = next((p.evaluated_until for p in series.get(name, ()) if p.verdict == "fail"), None)
    return Failure(
        final.reason_code,
        final.reason,
        final.at,
        guardrail=name,
        kind=g.get("kind"),
        estimate=_num(g.get("estimate")),
        lower=_num(g.get("lower")),
        upper=_num(g.get("upper")),
        p_value=_num(g.get("pValue")),
        alpha=alpha_each,
        margin_line=None if info is None else info.margin_line,
        scale=None if info is None else info.scale,
        first_failed_at=first,
        step_index=step_index,
        step_weight=weight,
    )


def outcome_kind(phase: str, final: DecisionEntry | None) -> str:
    """Which first screen the report leads with.

    ``guardrail_rollback``, ``srm_rollback``, ``inconclusive`` (maxDuration reached without
    a pass), ``rollback`` (any other reason, e.g. manual), ``promoted``, ``no_harm_found``
    (promoted on "no harm found"), ``failed`` or ``running``.
    """
    if final is not None and final.kind == "rollback":
        code = final.reason_code
        if code.startswith("guardrail_failed:"):
            return "guardrail_rollback"
        return {res.SRM: "srm_rollback", res.INCONCLUSIVE: "inconclusive"}.get(code, "rollback")
    if final is not None and final.kind == "promote":
        return "no_harm_found" if final.reason_code == res.NO_HARM_FOUND else "promoted"
    if phase == "Failed" or (final is not None and final.kind == "fail"):
        return "failed"
    return {"Promoted": "promoted", "RolledBack": "rollback"}.get(phase, "running")


def _recorded(
    final_evidence: Mapping[str, Any], raw_looks: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Per-guardrail figures as the engine recorded them: the final decision's, else the last look's.

    A "no harm found" promotion records each guardrail's largest harm not excluded in its
    evidence (``noHarmFound``); it is kept beside the look's figures.
    """
    rows = (final_evidence.get("analysis") or {}).get("guardrails") or final_evidence.get(
        "guardrails"
    )
    if not rows:
        rows = raw_looks[-1].get("guardrails") or [] if raw_looks else []
    harm = {
        h.get("name"): h.get("largestHarmNotExcluded")
        for h in final_evidence.get("noHarmFound") or []
    }
    return [
        {**r, "largestHarmNotExcluded": harm[r.get("name")]}
        if harm.get(r.get("name")) is not None
        else r
        for r in rows
    ]


def from_rows(
    exp: models.Experiment,
    raw_decisions: Sequence[models.Decision],
    raw_looks: Sequence[Mapping[str, Any]],
    extent: tuple[datetime, datetime] | None,
    rows: Sequence[Mapping[str, Any]],
    step_samples: Sequence[res.StepSample] = (),
) -> ReportView:
    """The report from what the store holds (``read.build`` fetches it): pure, no queries.

    ``step_samples`` are both arms' statistics over the last look's step windows (the
    results table's per-arm values and the reproduction snippet's input).
    """
    fs = settings_of(exp)
    infos = () if fs is None else guardrail_infos(fs)
    settings = _settings(exp, fs, extent)
    series = {g.name: _points(raw_looks, g.name) for g in infos}
    steps = tuple(
        StepWindow(
            int(s["index"]),
            int(s["weight"]),
            float(s["share"]),
            datetime.fromisoformat(s["start"]),
            _time(s["end"]),
        )
        for s in (exp.analysis_state or {}).get("steps") or []
    )
    decisions = tuple(
        DecisionEntry(d.at, d.kind, d.actor, d.reason_code, d.reason) for d in raw_decisions
    )
    final_raw = next((d for d in reversed(raw_decisions) if d.kind in FINAL_KINDS), None)
    final = (
        None
        if final_raw is None
        else DecisionEntry(
            final_raw.at, final_raw.kind, final_raw.actor, final_raw.reason_code, final_raw.reason
        )
    )
    outcome = final or (decisions[-1] if decisions else None)
    raw_spec = exp.spec or {}
    routing = None if fs is None else fs.routing
    specs = {} if fs is None else {g.name: g for g in evaluate.guardrails_for(fs)}
    evidence = {} if final_raw is None else (final_raw.evidence or {})
    return ReportView(
        namespace=exp.namespace,
        name=exp.name,
        phase=exp.phase,
        champion=routing.champion.name
        if routing
        else (raw_spec.get("champion") or {}).get("name", "champion"),
        challenger=routing.challenger.name
        if routing
        else (raw_spec.get("challenger") or {}).get("name", "challenger"),
        n_steps=len(raw_spec.get("steps") or []),
        created_at=exp.created_at,
        outcome=outcome,
        failure=_failure(
            final,
            {} if final_raw is None else final_raw.evidence,
            infos,
            series,
            steps,
            settings.alpha_each,
        ),
        settings=settings,
        guardrails=infos,
        series=series,
        looks=tuple(_look(raw) for raw in raw_looks),
        minutes=_minutes(rows),
        steps=steps,
        decisions=decisions,
        results=res.result_rows(infos, specs, _recorded(evidence, raw_looks), step_samples),
        latency=res.latency_rows(step_samples),
        step_samples=tuple(step_samples),
    )


def extent_end(extent: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    """``data_extent``'s first and last minute as a half-open window ``[first, last + 1m)``."""
    return extent[0], extent[1] + MINUTE
