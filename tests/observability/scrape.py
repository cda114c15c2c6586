"""Read a ``/metrics`` answer with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

#: ``{(sample name, ((label, value), ...)): value}``, labels sorted by name.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``; None if there is none."""
    return samples.get((name, tuple(sorted(labels.items()))))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every ``name`` sample whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= set(found))


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    """Every value the label ``label`` takes among the ``name`` samples."""
    return {dict(found)[label] for (n, found) in samples if n == name and label in dict(found)}
