"""The one reader of Prometheus text exposition for the Python tools.

`prometheus_client.parser.text_string_to_metric_families` does the parsing
(escapes, exemplars, timestamps, NaN/Inf); this module only reshapes its
families into the two views the tools use. The benchmark (`service.py`),
the observability checks (`tests/ops/obscheck.py`) and their shell script
all read /metrics through here.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, Labels], float]]:
    """-> (types {family as on its # TYPE line: type}, samples {(name, labels): value}).

    Raises ValueError on text that is not exposition format.
    """
    types: dict[str, str] = {}
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        # The client library calls the text format's "untyped" "unknown" and
        # drops a counter's "_total" from the family name; undo both so the
        # names match the # TYPE lines pyexec writes.
        typ = "untyped" if family.type == "unknown" else family.type
        types[family.name] = typ
        if typ == "counter":
            types[family.name + "_total"] = typ
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return types, samples


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def by_series(text: str) -> dict[str, float]:
    """{'name{label="v",...}': value}, the series written as in the text (labels in their order)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


def total(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float | None:
    """Sum of the samples of `name` whose labels include `labels`; None when there is none."""
    want = set(labels.items())
    vals = [v for (n, ls), v in samples.items() if n == name and want <= ls]
    return sum(vals) if vals else None
