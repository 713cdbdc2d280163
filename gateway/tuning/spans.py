"""Reading recorded spans: the gateway's own JSON-lines files, and OTLP JSON exports (e.g. a collector's `file`
exporter, or a trace downloaded from a backend), both into the JSON-lines shape (`name, trace_id, span_id,
parent_id, kind, start_ns, end_ns, status, attributes`).

Defensive: the files are another program's output, possibly cut by a crash; lines that are neither spans nor
OTLP documents are counted, not fatal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

Span = dict[str, Any]

# OTLP's numeric span kinds (SpanKind enum); JSON exports may also spell them SPAN_KIND_SERVER etc.
_OTLP_KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(slots=True)
class SpanFile:
    path: Path
    spans: list[Span] = field(default_factory=list)
    bad_lines: int = 0


def read_span_file(path: str | Path) -> SpanFile:
    """Every span in `path`: JSON lines of spans, JSON lines of OTLP documents, or one OTLP JSON document."""
    path = Path(path)
    data = path.read_bytes()
    out = SpanFile(path)
    lines = data.splitlines()
    parsed: list[object] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            out.bad_lines += 1
    if out.bad_lines and not parsed:  # perhaps one pretty-printed OTLP document
        with contextlib.suppress(orjson.JSONDecodeError):
            parsed, out.bad_lines = [orjson.loads(data)], 0
    for item in parsed:
        if isinstance(item, dict) and "resourceSpans" in item:
            out.spans.extend(otlp_spans(item))
        elif isinstance(item, dict) and isinstance(item.get("attributes"), dict):
            out.spans.append(item)
        else:
            out.bad_lines += 1
    return out


def otlp_spans(document: dict[str, Any]) -> Iterator[Span]:
    """The spans of one OTLP/JSON `ExportTraceServiceRequest`, in the JSON-lines shape."""
    for resource_spans in _list(document.get("resourceSpans")):
        resource = resource_spans.get("resource") if isinstance(resource_spans, dict) else None
        service = otlp_attributes(resource.get("attributes") if isinstance(resource, dict) else None).get(
            "service.name")
        for scope_spans in _list(resource_spans.get("scopeSpans") if isinstance(resource_spans, dict) else None):
            for raw in _list(scope_spans.get("spans") if isinstance(scope_spans, dict) else None):
                if isinstance(raw, dict):
                    yield _from_otlp(raw, service)


def _from_otlp(raw: dict[str, Any], service: object) -> Span:
    kind = raw.get("kind")
    if isinstance(kind, str):
        kind = kind.removeprefix("SPAN_KIND_")
    elif isinstance(kind, int):
        kind = _OTLP_KINDS.get(kind, "INTERNAL")
    status = raw.get("status")
    code = status.get("code") if isinstance(status, dict) else None
    return {"name": raw.get("name", ""), "trace_id": raw.get("traceId"), "span_id": raw.get("spanId"),
            "parent_id": raw.get("parentSpanId") or None, "kind": kind,
            "start_ns": _int(raw.get("startTimeUnixNano")), "end_ns": _int(raw.get("endTimeUnixNano")),
            "status": "ERROR" if code in (2, "STATUS_CODE_ERROR") else "UNSET",
            "attributes": otlp_attributes(raw.get("attributes")), "service_name": service}


def otlp_attributes(raw: object) -> dict[str, Any]:
    """OTLP's `[{key, value: {stringValue | intValue | doubleValue | boolValue | arrayValue}}]` as a dict."""
    out: dict[str, Any] = {}
    for item in _list(raw):
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            out[item["key"]] = _any_value(item.get("value"))
    return out


def _any_value(value: object) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        return None
    (kind, inner), = value.items()
    if kind == "intValue":  # int64 travels as a string in OTLP/JSON
        return _int(inner)
    if kind == "doubleValue":
        return float(inner) if isinstance(inner, int | float | str) else None
    if kind == "arrayValue":
        return [_any_value(v) for v in _list(inner.get("values") if isinstance(inner, dict) else None)]
    return inner


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def read_span_files(paths: Iterable[str | Path]) -> list[SpanFile]:
    return [read_span_file(p) for p in paths]
