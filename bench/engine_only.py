"""The verdict engine alone: ``evaluate()`` calls per second, on ``bench/bench_engine.py``'s leg kinds.

``bench_engine.py`` (the engine's own micro-benchmark, also runnable on its own) owns the cases and the
timing loop; this wraps it for the suite's report.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.bench_engine import CASES, measure


@dataclass
class EngineResult:
    # leg kind -> evaluations per second (median of bench_engine's five rounds)
    per_second: dict[str, float]


def run(seconds: float = 1.0) -> EngineResult:
    return EngineResult({name: measure(request, response, seconds) for name, (request, response) in CASES.items()})
