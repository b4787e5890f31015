"""The Prometheus text exposition format (version 0.0.4), parsed with labels.

One parser for every test and bench script. A lookup names a metric and, as
keyword arguments, the labels a series must carry (a series may carry more);
the values of every matching series are summed. A metric with no matching
series is an error, not a zero: a test must not pass because an endpoint was
down or a series was never created.
"""
import re
from collections import namedtuple

Sample = namedtuple("Sample", "name labels value")

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class MetricAbsent(AssertionError):
    """No series of the metric matched the labels asked for."""


class ParseError(ValueError):
    pass


def _labels(text, line):
    out = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if not m:
            raise ParseError(f"bad labels in {line!r}")
        out[m.group(1)] = re.sub(r'\\[\\"n]', lambda e: _UNESCAPE[e.group(0)], m.group(2))
        pos = m.end()
    return out


def parse(text):
    """Every sample in `text`, as Sample(name, labels dict, float value)."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ParseError(f"not a sample: {line!r}")
        samples.append(Sample(m.group(1), _labels(m.group(2) or "", line), float(m.group(3))))
    return samples


def select(samples, name, **labels):
    """The samples of `name` whose labels include every `labels` item."""
    if isinstance(samples, str):
        samples = parse(samples)
    want = {k: str(v) for k, v in labels.items()}
    return [s for s in samples
            if s.name == name and all(s.labels.get(k) == v for k, v in want.items())]


_REQUIRED = object()


def value(samples, name, default=_REQUIRED, **labels):
    """The sum of the matching series; MetricAbsent if there is none, unless a
    `default` is given (a counter that has not counted anything yet)."""
    found = select(samples, name, **labels)
    if not found:
        if default is not _REQUIRED:
            return default
        raise MetricAbsent(f"no series {name}{labels or ''}")
    return sum(s.value for s in found)
