"""Run the whole suite and print a markdown report: ``python -m bench`` (full, writes bench/RESULTS.md) or
``python -m bench --quick`` (a smoke run in well under a minute; numbers are indicative only).

Nothing here fails on slow numbers: the targets are reported as holding or not, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import engine_only, inprocess, network
from bench.apps import KIND_LABELS, VARIANT_LABELS
from bench.memory import MemoryResult

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"


@dataclasses.dataclass(frozen=True)
class Sizes:
    rounds: int
    requests: int
    net_rounds: int
    net_seconds: float
    flood: int
    stalled: int
    huge: int
    engine: float


# Many short rounds rather than a few long ones: the two batches of a comparison then run ~50 ms apart, so the
# shared host's slow moments hit both alike, and a median of 31 comparisons shrugs off the ones that do not.
FULL = Sizes(
    rounds=31, requests=500, net_rounds=5, net_seconds=5, flood=1_000_000, stalled=200_000, huge=4_000, engine=1.0
)
QUICK = Sizes(rounds=3, requests=200, net_rounds=1, net_seconds=1, flood=20_000, stalled=5_000, huge=200, engine=0.1)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import fastapi
    import starlette
    import structlog

    return (
        f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, Python {platform.python_version()}, "
        f"FastAPI {fastapi.__version__}, Starlette {starlette.__version__}, structlog {structlog.__version__}"
    )


def _memory_in_subprocess(kind: str, exchanges: int, samples: int) -> MemoryResult:
    """A fresh interpreter per memory run, so the RSS seen is corstrace's and not the earlier sections'."""
    code = (
        "import dataclasses, json, sys; from bench import memory; "
        f"r = memory.{kind}({exchanges}, {samples}); print(json.dumps(dataclasses.asdict(r)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    data["samples"] = [tuple(sample) for sample in data["samples"]]
    return MemoryResult(**data)


# --- formatting -----------------------------------------------------------------------------------


def _cell(result: inprocess.KindResult, variant: str) -> str:
    return f"{result.ratio(variant):.3f}× ({result.added_us(variant):+.1f} µs)"


def format_inprocess(result: inprocess.InProcessResult) -> str:
    shown = [v for v in result.variants if v != "bare"]
    lines = [
        f"In-process, µs per request: medians over {result.rounds} interleaved rounds of "
        f"{result.requests_per_round} requests; each cell is the ratio to the bare stack and the µs added, "
        "both as medians of per-round comparisons.",
        "",
        "| request | bare µs | " + " | ".join(VARIANT_LABELS[v] for v in shown) + " |",
        "|---|---:|" + "---:|" * len(shown),
    ]
    for kind, kind_result in result.kinds.items():
        cells = " | ".join(_cell(kind_result, v) for v in shown)
        lines.append(f"| {KIND_LABELS[kind]} | {kind_result.median_us('bare'):.1f} | {cells} |")
    lines.append("")
    lines.append(
        f"The reading inspector client received {result.inspector_events_streamed} records during the run; "
        f"the stalled one took {result.stalled_client_frames} frames and then never read again."
    )
    return "\n".join(lines)


def targets(result: inprocess.InProcessResult) -> list[tuple[str, bool, str, str]]:
    """(target, holds, measured, floor) for each of issue #6's in-process targets.

    ``floor`` is what the minimal deciding layer (bench/floor.py) reads in the same place: no design that
    explains every leg can go below it.
    """
    k = result.kinds
    out: list[tuple[str, bool, str, str]] = []
    floors = "deciding" in result.variants

    def ratio(kind: str, variant: str) -> float:
        return k[kind].ratio(variant)

    def floor(kind: str) -> str:
        return f"{ratio(kind, 'deciding'):.3f}× ({k[kind].added_us('deciding'):+.1f} µs)" if floors else "not measured"

    if "no_origin" in k:
        r = ratio("no_origin", "corstrace")
        out.append(("no `Origin`: ≤ 1.01×", r <= 1.01, f"{r:.3f}×", floor("no_origin")))
    for kind in ("simple", "blocked"):
        if kind in k:
            r, added, otel = ratio(kind, "corstrace"), k[kind].added_us("corstrace"), k[kind].added_us("otel")
            holds = r <= 1.05 and added < otel / 2
            out.append(
                (
                    f"{KIND_LABELS[kind]}: ≤ 1.05× and < ½ of OpenTelemetry's µs",
                    holds,
                    f"{r:.3f}×, {added:+.1f} µs vs OpenTelemetry {otel:+.1f} µs",
                    floor(kind),
                )
            )
    if "preflight" in k:
        r = ratio("preflight", "corstrace")
        out.append(("preflight: ≤ 1.30×", r <= 1.30, f"{r:.3f}×", floor("preflight")))
    for variant, label in (("inspector", "inspector on, reading client"), ("stalled", "inspector on, stalled client")):
        worst = max(((ratio(kind, variant), kind) for kind in k if kind != "error"), default=None)
        if worst is not None:
            out.append(
                (
                    f"{label}: ≤ 1.10× (every kind but the raising handler)",
                    worst[0] <= 1.10,
                    f"worst {worst[0]:.3f}× ({KIND_LABELS[worst[1]]})",
                    f"{floor(worst[1])} on that kind",
                )
            )
    return out


def format_targets(rows: list[tuple[str, bool, str, str]]) -> str:
    lines = [
        "| target | holds | measured | floor: the minimal deciding layer, same run |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {'yes' if holds else '**no**'} | {measured} | {floor} |" for name, holds, measured, floor in rows
    ]
    return "\n".join(lines)


def format_network(result: network.NetworkResult) -> str:
    if result.skipped:
        return f"Skipped: {result.skipped}."
    lines = [
        f"uvicorn (1 worker) on loopback, `wrk -t1 -c{result.connections} -d{result.seconds:g}s --latency` in another "
        f"process, allowed cross-origin GET; medians over {len(result.runs['bare'])} alternating runs per variant.",
        "",
        "| variant | requests/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for variant in result.runs:
        rps, p50, p99 = (result.median(variant, i) for i in range(3))
        lines.append(f"| {variant} | {rps:,.0f} | {p50:.2f} | {p99:.2f} |")
    if result.runs.get("corstrace") and result.runs.get("bare"):
        ratios = [result.median("corstrace", i) / result.median("bare", i) for i in range(3)]
        lines.append(
            f"| corstrace / bare | {ratios[0]:.3f}× | {ratios[1]:.3f}× | {ratios[2]:.3f}× |",
        )
    return "\n".join(lines)


def format_memory(result: MemoryResult, what: str) -> str:
    samples = ", ".join(f"{done:,}: {rss:.1f}" for done, rss in result.samples)
    stores = ", ".join(f"{name} {size:,}" for name, size in result.stores.items())
    return (
        f"{what}: {result.exchanges:,} exchanges in {result.seconds:.0f} s. RSS (MiB) after n exchanges: {samples}. "
        f"**Growth after warm-up (last three quarters): {result.growth_after_warmup:+.1f} MiB.** "
        f"Store sizes at the end: {stores}."
    )


def format_engine(result: engine_only.EngineResult) -> str:
    lines = ["| leg | evaluations/s | µs each |", "|---|---:|---:|"]
    lines += [f"| {name} | {rate:,.0f} | {1e6 / rate:.1f} |" for name, rate in result.per_second.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts: proves the suite runs, in < 1 min")
    parser.add_argument("--no-network", action="store_true", help="skip the uvicorn + wrk section")
    parser.add_argument("--inprocess-only", action="store_true", help="only the in-process table (for profiling)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    command = "python -m bench" + (" --quick" if args.quick else "")
    header = [
        "# corstrace benchmark results",
        "",
        f"Command: `{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Machine: {machine()}; load average before the run {os.getloadavg()[0]:.2f}.",
        "",
    ]
    print("\n".join(header), flush=True)
    sections: list[str] = []

    def section(title: str, body: str) -> None:
        text = f"## {title}\n\n{body}\n"
        sections.append(text)
        print(text, flush=True)

    table = inprocess.run(sizes.rounds, sizes.requests)
    section("In-process cost per request", format_inprocess(table))
    section("Targets (same run)", format_targets(targets(table)))
    if not args.inprocess_only:
        if not args.no_network:
            section("Over the network", format_network(network.run(sizes.net_rounds, sizes.net_seconds)))
        flood = _memory_in_subprocess("flood", sizes.flood, 8)
        section(
            "Memory",
            format_memory(flood, "Inspector on (buffer_size=1000), one reading client, many origins and paths"),
        )
        stalled = _memory_in_subprocess("slow_consumer", sizes.stalled, 4)
        section(
            "Slow consumer",
            format_memory(stalled, "Inspector on, one client that stopped reading")
            + " Latency with the stalled client is the in-process table's *stalled client* column.",
        )
        huge = _memory_in_subprocess("huge_headers", sizes.huge, 4)
        section(
            "Huge headers",
            format_memory(huge, "Inspector on, a stalled client, every request unique with > 0.5 MB of headers"),
        )
        section("The engine alone (`corstrace.engine.evaluate`)", format_engine(engine_only.run(sizes.engine)))
    footer = f"Total time {time.monotonic() - started:.0f} s; load average after the run {os.getloadavg()[0]:.2f}."
    print(footer)
    if not args.quick and not args.inprocess_only and not args.no_network:
        RESULTS.write_text("\n".join(header) + "\n" + "\n".join(sections) + "\n" + footer + "\n")
        print(f"Saved to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
