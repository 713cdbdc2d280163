"""A strict-enough parser for Prometheus text exposition 0.0.4, so tests can check /metrics really parses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_VALUE = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|Inf|NaN)"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{({_LABEL}(?:,{_LABEL})*)?\}})? ({_VALUE})$")
_META = re.compile(rf"^# (HELP|TYPE) ({_NAME})(?: (.*))?$")
_LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_ESCAPE = re.compile(r"\\(.)")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


@dataclass
class Exposition:
    types: dict[str, str] = field(default_factory=dict)
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float:
        """The one sample called `name` whose labels include `labels`."""
        found = [v for n, lab, v in self.samples if n == name and all(lab.get(k) == x for k, x in labels.items())]
        if len(found) != 1:
            raise KeyError(f"{name} {labels}: {len(found)} samples")
        return found[0]

    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}


def _family(sample_name: str, types: dict[str, str]) -> str | None:
    if sample_name in types:
        return sample_name
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name.removesuffix(suffix)
        if base != sample_name and types.get(base) == "histogram":
            return base
    return None


def parse(text: str) -> Exposition:
    """Raises ValueError on any line that is not valid exposition, or a sample with no # TYPE before it."""
    out = Exposition()
    if text and not text.endswith("\n"):
        raise ValueError("exposition must end with a newline")
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        if line.startswith("#"):
            meta = _META.match(line)
            if meta and meta.group(1) == "TYPE":
                if meta.group(3) not in _TYPES:
                    raise ValueError(f"line {number}: unknown type {meta.group(3)!r}")
                out.types[meta.group(2)] = str(meta.group(3))
            continue
        sample = _SAMPLE.match(line)
        if sample is None:
            raise ValueError(f"line {number}: not a sample: {line!r}")
        name = sample.group(1)
        if _family(name, out.types) is None:
            raise ValueError(f"line {number}: {name} has no # TYPE line before it")
        labels = {k: _ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), v)
                  for k, v in _LABEL_PAIR.findall(sample.group(2) or "")}
        raw = sample.group(3).replace("Inf", "inf")
        out.samples.append((name, labels, float(raw)))
    return out
