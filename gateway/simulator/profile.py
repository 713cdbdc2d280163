"""How a simulated provider behaves: frozen value types, and parsing them from a plain (JSON/YAML) mapping.

Every validation error is a `ValueError` whose message starts with the path of the bad field,
e.g. `ttft.median_ms: must be > 0` or `outages[1].end_s: must be > start_s`.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from gateway.simulator.midstream import AFTER_FIRST_TOKEN, FaultPoint, parse_fault_point
from gateway.simulator.stats import key_fingerprint

LatencyKind = Literal["fixed", "lognormal", "empirical", "quantiles"]

_LATENCY_KEYS: dict[str, frozenset[str]] = {
    "fixed": frozenset({"kind", "ms"}),
    "lognormal": frozenset({"kind", "median_ms", "sigma"}),
    "empirical": frozenset({"kind", "samples_ms"}),
    "quantiles": frozenset({"kind", "quantiles_ms"}),
}
_KINDS = ", ".join(_LATENCY_KEYS)


def _check_finite(field: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{field}: must be finite")


def _check_non_negative(field: str, value: float) -> None:
    _check_finite(field, value)
    if value < 0:
        raise ValueError(f"{field}: must be >= 0")


@dataclass(frozen=True, slots=True)
class Latency:
    """A delay distribution in milliseconds. Build with `fixed`, `lognormal`, `empirical` or `quantiles`."""

    kind: LatencyKind = "fixed"
    ms: float = 0.0  # fixed
    median_ms: float = 0.0  # lognormal: the median, i.e. exp(mu)
    sigma: float = 0.0  # lognormal: std-dev of the log
    samples_ms: tuple[float, ...] = ()  # empirical: drawn uniformly
    # quantiles: (q, ms) points of the quantile function, q from 0 to 1, sampled with linear interpolation
    # between them: a distribution fitted from traces (`python -m loadtest fit`), tail included.
    quantiles_ms: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        # Messages name the field relative to the latency; the profile parser prefixes the latency's own name.
        if self.kind == "fixed":
            _check_non_negative("ms", self.ms)
        elif self.kind == "lognormal":
            _check_finite("median_ms", self.median_ms)
            if self.median_ms <= 0:
                raise ValueError("median_ms: must be > 0")
            _check_non_negative("sigma", self.sigma)
        elif self.kind == "empirical":
            if not self.samples_ms:
                raise ValueError("samples_ms: must not be empty")
            for i, sample in enumerate(self.samples_ms):
                _check_non_negative(f"samples_ms[{i}]", sample)
        elif self.kind == "quantiles":
            _check_quantile_table(self.quantiles_ms)
        else:
            raise ValueError(f"kind: must be one of {_KINDS} (got {self.kind!r})")

    @classmethod
    def fixed(cls, ms: float) -> Latency:
        return cls(kind="fixed", ms=float(ms))

    @classmethod
    def lognormal(cls, median_ms: float, sigma: float) -> Latency:
        return cls(kind="lognormal", median_ms=float(median_ms), sigma=float(sigma))

    @classmethod
    def empirical(cls, samples_ms: list[float] | tuple[float, ...]) -> Latency:
        return cls(kind="empirical", samples_ms=tuple(float(s) for s in samples_ms))

    @classmethod
    def quantiles(cls, points: list[tuple[float, float]] | tuple[tuple[float, float], ...]) -> Latency:
        return cls(kind="quantiles", quantiles_ms=tuple((float(q), float(ms)) for q, ms in points))

    @property
    def is_zero(self) -> bool:
        """True when every sample is 0: lets the server skip sleeping (and the RNG) on the hot path."""
        return self.kind == "fixed" and self.ms == 0

    def sample_ms(self, rng: random.Random) -> float:
        """One delay. Only `lognormal` and `empirical` consume randomness, so fixed delays keep seeds aligned."""
        if self.kind == "fixed":
            return self.ms
        if self.kind == "lognormal":
            return rng.lognormvariate(math.log(self.median_ms), self.sigma)
        if self.kind == "quantiles":
            return _interpolate(self.quantiles_ms, rng.random())
        return rng.choice(self.samples_ms)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "fixed":
            return {"kind": "fixed", "ms": self.ms}
        if self.kind == "lognormal":
            return {"kind": "lognormal", "median_ms": self.median_ms, "sigma": self.sigma}
        if self.kind == "quantiles":
            return {"kind": "quantiles", "quantiles_ms": [[q, ms] for q, ms in self.quantiles_ms]}
        return {"kind": "empirical", "samples_ms": list(self.samples_ms)}


def _check_quantile_table(points: tuple[tuple[float, float], ...]) -> None:
    if len(points) < 2:
        raise ValueError("quantiles_ms: needs at least two [q, ms] points (q = 0 and q = 1)")
    for i, (q, ms) in enumerate(points):
        _check_finite(f"quantiles_ms[{i}][0]", q)
        _check_non_negative(f"quantiles_ms[{i}][1]", ms)
        if i and q <= points[i - 1][0]:
            raise ValueError(f"quantiles_ms[{i}][0]: q must increase, got {q:g} after {points[i - 1][0]:g}")
        if i and ms < points[i - 1][1]:
            raise ValueError(f"quantiles_ms[{i}][1]: ms must not decrease, got {ms:g} after {points[i - 1][1]:g}")
    if points[0][0] != 0.0 or points[-1][0] != 1.0:
        raise ValueError("quantiles_ms: the first q must be 0 and the last 1 (the whole distribution)")


def _interpolate(points: tuple[tuple[float, float], ...], u: float) -> float:
    """The quantile function at u in [0, 1): linear between the two table points around u."""
    i = bisect.bisect_right(points, u, key=lambda point: point[0])  # points[i - 1].q <= u < points[i].q
    if i >= len(points):
        return points[-1][1]
    (q0, ms0), (q1, ms1) = points[i - 1], points[i]
    return ms0 + (u - q0) / (q1 - q0) * (ms1 - ms0)


ZERO_LATENCY = Latency.fixed(0)


@dataclass(frozen=True, slots=True)
class Outage:
    """A window, in seconds since the server started (or was last reset), when every request fails at once."""

    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        _check_non_negative("start_s", self.start_s)
        _check_finite("end_s", self.end_s)
        if self.end_s <= self.start_s:
            raise ValueError("end_s: must be > start_s")

    def covers(self, elapsed_s: float) -> bool:
        return self.start_s <= elapsed_s < self.end_s


@dataclass(frozen=True, slots=True)
class SimProfile:
    """One simulated provider's behaviour. The defaults are a fast, healthy provider. Times are in ms."""

    ttft: Latency = ZERO_LATENCY  # before the first token
    per_token: Latency = ZERO_LATENCY  # between tokens
    output_tokens: int = 16  # tokens per answer, unless the request's max_tokens is smaller
    stall_prob: float = 0.0  # chance of an extra `stall_ms` before the first token: what hedging fixes
    stall_ms: float = 0.0
    error_rate: float = 0.0  # chance a request is answered at once with `error_status`
    error_status: int = 500
    retry_after_s: float = 1.0  # sent as `retry-after` on every 429
    midstream_error_rate: float = 0.0  # chance a streamed response fails mid-way (an error event)
    midstream_error_at: FaultPoint = AFTER_FIRST_TOKEN  # after how many tokens: a number or [lo, hi]
    midstream_stall_rate: float = 0.0  # chance a streamed response goes silent mid-way for midstream_stall_ms
    midstream_stall_ms: float = 0.0
    midstream_stall_at: FaultPoint = AFTER_FIRST_TOKEN
    outages: tuple[Outage, ...] = ()
    outage_status: int = 503
    hang: bool = False  # accept requests and never answer until the client goes away
    require_key: str | None = None  # if set, requests must carry this key
    models: tuple[str, ...] = ("sim-model",)  # what GET /v1/models lists
    prompt_cache: bool = True  # cache prompts and bill reads and writes as the APIs do (see billing.py)
    reasoning_tokens: int = 0  # reasoning a request that asks for it spends (billed as output, not streamed)

    def __post_init__(self) -> None:
        if self.output_tokens < 1:
            raise ValueError("output_tokens: must be >= 1")
        for name in ("stall_prob", "error_rate", "midstream_error_rate", "midstream_stall_rate"):
            value = getattr(self, name)
            _check_finite(name, value)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: must be between 0 and 1")
        _check_non_negative("stall_ms", self.stall_ms)
        _check_non_negative("midstream_stall_ms", self.midstream_stall_ms)
        _check_non_negative("retry_after_s", self.retry_after_s)
        for name in ("error_status", "outage_status"):
            if not 400 <= getattr(self, name) <= 599:
                raise ValueError(f"{name}: must be an HTTP error status (400-599)")
        if self.require_key is not None and not self.require_key:
            raise ValueError("require_key: must not be empty (omit it to accept any key)")
        if not self.models:
            raise ValueError("models: must not be empty")
        if self.reasoning_tokens < 0:
            raise ValueError("reasoning_tokens: must be >= 0")

    def outage_at(self, elapsed_s: float) -> bool:
        return any(window.covers(elapsed_s) for window in self.outages)

    def to_dict(self, *, include_secrets: bool = False) -> dict[str, Any]:
        """The mapping `parse_profile` reads. `require_key` is shown as a fingerprint unless asked otherwise."""
        key = self.require_key
        return {
            "ttft": self.ttft.to_dict(),
            "per_token": self.per_token.to_dict(),
            "output_tokens": self.output_tokens,
            "stall_prob": self.stall_prob,
            "stall_ms": self.stall_ms,
            "error_rate": self.error_rate,
            "error_status": self.error_status,
            "retry_after_s": self.retry_after_s,
            "midstream_error_rate": self.midstream_error_rate,
            "midstream_error_at": self.midstream_error_at.to_plain(),
            "midstream_stall_rate": self.midstream_stall_rate,
            "midstream_stall_ms": self.midstream_stall_ms,
            "midstream_stall_at": self.midstream_stall_at.to_plain(),
            "outages": [[w.start_s, w.end_s] for w in self.outages],
            "outage_status": self.outage_status,
            "hang": self.hang,
            "require_key": key if include_secrets or key is None else key_fingerprint(key),
            "models": list(self.models),
            "prompt_cache": self.prompt_cache,
            "reasoning_tokens": self.reasoning_tokens,
        }


# ---- parsing -------------------------------------------------------------------------------------------------


def parse_profile(data: Mapping[str, object]) -> SimProfile:
    """A `SimProfile` from a plain mapping (parsed JSON or YAML). Missing fields take their defaults.

    Latencies may be a number (fixed ms), a list (empirical samples), or a mapping:
    `{ms}`, `{median_ms, sigma}` (lognormal), `{samples_ms}`, optionally with an explicit `kind`.
    Outages are `[start_s, end_s]` pairs or `{start_s, end_s}` mappings.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"profile: must be a mapping (got {_type_name(data)})")
    unknown = sorted(str(k) for k in data if k not in _PROFILE_FIELDS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field (known: {', '.join(_PROFILE_FIELDS)})")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[str(name)] = _PROFILE_FIELDS[str(name)](str(name), value)
    # Range checks live in SimProfile.__post_init__; their messages already name the field.
    return SimProfile(**kwargs)


def load_profile_file(path: str | Path) -> SimProfile:
    """Parse a YAML (or JSON: YAML is a superset) file holding one profile mapping. An empty file is the default."""
    text = Path(path).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return parse_profile({} if data is None else data)


def parse_latency(field: str, value: object) -> Latency:
    """A `Latency` from its plain form; `field` is its path, used to name it in errors."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = _number(field, value)
        return _checked(field, lambda: Latency.fixed(ms))
    if isinstance(value, list):
        samples = _float_list(field, value)
        return _checked(field, lambda: Latency.empirical(samples))
    if not isinstance(value, Mapping):
        raise ValueError(f"{field}: must be a number of ms, a list of ms, or a mapping (got {_type_name(value)})")
    keys = {str(k) for k in value}
    kind = value.get("kind")
    if kind is None:
        if "empirical" in keys:  # `{empirical: [..]}` shorthand
            if keys != {"empirical"}:
                raise ValueError(f"{field}: 'empirical' cannot be combined with other fields")
            shorthand = _float_list(f"{field}.empirical", value["empirical"])
            return _checked(field, lambda: Latency.empirical(shorthand))
        kind = ("lognormal" if keys & {"median_ms", "sigma"} else
                "empirical" if "samples_ms" in keys else "quantiles" if "quantiles_ms" in keys else
                "fixed" if "ms" in keys else None)
        if kind is None:
            raise ValueError(f"{field}: expected 'ms', 'median_ms' and 'sigma', 'samples_ms' or 'quantiles_ms'")
    if kind not in _LATENCY_KEYS:
        raise ValueError(f"{field}.kind: must be one of {_KINDS} (got {kind!r})")
    extra = sorted(keys - _LATENCY_KEYS[str(kind)])
    if extra:
        raise ValueError(f"{field}.{extra[0]}: not a field of a {kind} latency")
    for required in sorted(_LATENCY_KEYS[str(kind)] - {"kind"}):
        if required not in keys:
            raise ValueError(f"{field}.{required}: required for a {kind} latency")
    if kind == "fixed":
        fixed_ms = _number(f"{field}.ms", value["ms"])
        return _checked(field, lambda: Latency.fixed(fixed_ms))
    if kind == "lognormal":
        median = _number(f"{field}.median_ms", value["median_ms"])
        sigma = _number(f"{field}.sigma", value["sigma"])
        return _checked(field, lambda: Latency.lognormal(median, sigma))
    if kind == "quantiles":
        table = _pair_list(f"{field}.quantiles_ms", value["quantiles_ms"])
        return _checked(field, lambda: Latency.quantiles(table))
    listed = _float_list(f"{field}.samples_ms", value["samples_ms"])
    return _checked(field, lambda: Latency.empirical(listed))


def _checked(field: str, build: Callable[[], Latency]) -> Latency:
    """Run a Latency constructor, prefixing its field-relative error with the latency's own path."""
    try:
        return build()
    except ValueError as exc:
        raise ValueError(f"{field}.{exc}") from None


def _parse_outages(field: str, value: object) -> tuple[Outage, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{field}: must be a list of [start_s, end_s] pairs (got {_type_name(value)})")
    windows: list[Outage] = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if isinstance(item, Mapping):
            extra = sorted(str(k) for k in item if k not in ("start_s", "end_s"))
            if extra:
                raise ValueError(f"{where}.{extra[0]}: unknown field (known: start_s, end_s)")
            if "start_s" not in item or "end_s" not in item:
                raise ValueError(f"{where}: needs start_s and end_s")
            start, end = item["start_s"], item["end_s"]
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            start, end = item
        else:
            raise ValueError(f"{where}: must be a [start_s, end_s] pair")
        try:
            windows.append(Outage(_number(f"{where}.start_s", start), _number(f"{where}.end_s", end)))
        except ValueError as exc:
            msg = str(exc)
            raise ValueError(msg if msg.startswith(where) else f"{where}.{msg}") from None
    return tuple(windows)


def _int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field}: must be an integer (got {_type_name(value)})")
    return value


def _number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field}: must be a number (got {_type_name(value)})")
    _check_finite(field, float(value))
    return float(value)


def _bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{field}: must be true or false (got {_type_name(value)})")
    return value


def _optional_str(field: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{field}: must be a string (got {_type_name(value)})")
    return value


def _str_tuple(field: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{field}: must be a list of non-empty strings")
    return tuple(value)


def _float_list(field: str, value: object) -> list[float]:
    if not isinstance(value, list):
        raise ValueError(f"{field}: must be a list of numbers (got {_type_name(value)})")
    return [_number(f"{field}[{i}]", v) for i, v in enumerate(value)]


def _pair_list(field: str, value: object) -> list[tuple[float, float]]:
    if not isinstance(value, list):
        raise ValueError(f"{field}: must be a list of [q, ms] pairs (got {_type_name(value)})")
    pairs: list[tuple[float, float]] = []
    for i, item in enumerate(value):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError(f"{field}[{i}]: must be a [q, ms] pair")
        pairs.append((_number(f"{field}[{i}][0]", item[0]), _number(f"{field}[{i}][1]", item[1])))
    return pairs


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


_PROFILE_FIELDS: dict[str, Callable[[str, object], object]] = {
    "ttft": parse_latency,
    "per_token": parse_latency,
    "output_tokens": _int,
    "stall_prob": _number,
    "stall_ms": _number,
    "error_rate": _number,
    "error_status": _int,
    "retry_after_s": _number,
    "midstream_error_rate": _number,
    "midstream_error_at": parse_fault_point,
    "midstream_stall_rate": _number,
    "midstream_stall_ms": _number,
    "midstream_stall_at": parse_fault_point,
    "outages": _parse_outages,
    "outage_status": _int,
    "hang": _bool,
    "require_key": _optional_str,
    "models": _str_tuple,
    "prompt_cache": _bool,
    "reasoning_tokens": _int,
}
