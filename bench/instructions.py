"""Instructions per request, counted by valgrind's callgrind: the same count on every run, whatever the load.

``python -m bench.instructions`` runs each (variant, kind) in its own interpreter under callgrind, which counts
only what runs inside one ``functools.reduce`` call: the loop of requests, not the imports or the warm-up.
The timed tables drift by several µs between runs on a shared host; these counts do not move, so a change of
a few hundred instructions is visible. They are a proxy, not a timing: an instruction in corstrace's code
(run once per request, so rarely in cache) costs more time than the average one in the framework around it.

Needs valgrind (``apt-get install -y valgrind``) and a libpython with its symbol table (pyenv and Debian
builds have one). Each run costs ~40 s of CPU, mostly the interpreter starting under valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.apps import KIND_LABELS, KINDS, VARIANT_LABELS, build, call, configure_production_logging, http_scope

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("bare", "observing", "deciding", "corstrace", "inspector")
# Counted when asked for (--variants): OpenTelemetry absent, OpenTelemetry's middleware alone and with corstrace.
OTEL_VARIANTS = ("no-otel", "otel", "otel+corstrace")
LABELS = {**VARIANT_LABELS, "inspector": "+ corstrace, inspector on, no client (request path only)"}
# callgrind counts only inside this C function: the measured loop is the one functools.reduce call.
_MARKER = "functools_reduce"
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def child(variant: str, kind: str, n: int) -> None:
    """Run ``n`` requests of ``kind`` through ``variant`` inside functools.reduce (under callgrind)."""
    configure_production_logging()
    app = build(variant)
    scope = http_scope(kind)

    async def warm_up() -> None:
        for _ in range(100):
            await call(app, scope)

    asyncio.run(warm_up())

    def one(done: int, _: int) -> int:
        # The in-process app never waits for anything: one send() runs a request to completion.
        request = call(app, scope)
        try:
            request.send(None)
        except StopIteration:
            return done + 1
        request.close()
        msg = f"{variant}/{kind}: the request waited for the event loop; it cannot be counted this way"
        raise RuntimeError(msg)

    functools.reduce(one, range(n), 0)


def parse_collected(stderr: str) -> int:
    """The instruction count callgrind printed (0 when it counted nothing)."""
    found = _COLLECTED.search(stderr)
    return int(found.group(1)) if found else 0


def count(variant: str, kind: str, n: int) -> float:
    """Instructions per request for one (variant, kind), from a fresh interpreter under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--collect-atstart=no",
                f"--toggle-collect={_MARKER}",
                f"--callgrind-out-file={tmp}/callgrind.out",
                sys.executable,
                "-m",
                "bench.instructions",
                "--child",
                variant,
                kind,
                str(n),
            ],
            cwd=ROOT,
            # A fixed hash seed: str hashes decide dict and set layouts, and so a few hundred instructions.
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        msg = f"{variant}/{kind} failed under valgrind (exit {done.returncode}):\n{tail}"
        raise RuntimeError(msg)
    collected = parse_collected(done.stderr)
    if collected == 0:
        msg = (
            f"callgrind counted nothing: this Python ({sys.executable}) has no `{_MARKER}` symbol to count "
            "inside (a stripped libpython). Run it with a Python built with its symbol table."
        )
        raise RuntimeError(msg)
    return collected / n


def format_table(counts: dict[str, dict[str, float]], n: int) -> str:
    kinds = list(counts)
    variants = [v for v in counts[kinds[0]] if v != "bare"]
    lines = [
        f"Instructions per request (callgrind, {n} requests per cell, each in a fresh interpreter); each cell is "
        "the ratio to the bare stack and the instructions added.",
        "",
        "| request | bare | " + " | ".join(LABELS[v] for v in variants) + " |",
        "|---|---:|" + "---:|" * len(variants),
    ]
    for kind in kinds:
        bare = counts[kind]["bare"]
        cells = " | ".join(f"{counts[kind][v] / bare:.3f}× ({(counts[kind][v] - bare) / 1000:+.1f}k)" for v in variants)
        lines.append(f"| {KIND_LABELS[kind]} | {bare / 1000:.1f}k | {cells} |")
    if "otel" in variants and "otel+corstrace" in variants:
        lines += ["", "corstrace on top of OpenTelemetry's ASGI middleware (otel+corstrace minus otel):", ""]
        for kind in kinds:
            otel, both = counts[kind]["otel"], counts[kind]["otel+corstrace"]
            added = f"{(both - otel) / 1000:+.1f}k ({both / otel:.3f}× the instrumented app)"
            lines.append(f"- {KIND_LABELS[kind]}: {added}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, from {','.join(KINDS)}")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, from {','.join(VARIANTS + OTEL_VARIANTS)}"
    )
    parser.add_argument("--requests", type=int, default=300, help="requests counted per cell (default 300)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs at once (default: CPUs)")
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        variant, kind, n = args.child
        child(variant, kind, int(n))
        return
    kinds = tuple(args.kinds.split(","))
    variants = tuple(dict.fromkeys(("bare", *args.variants.split(","))))
    unknown = (set(kinds) - set(KINDS)) | (set(variants) - set(VARIANTS + OTEL_VARIANTS))
    if unknown:
        parser.error(f"unknown kinds or variants: {', '.join(sorted(unknown))}")
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    if shutil.which("valgrind") is None:
        parser.exit(2, "python -m bench.instructions: valgrind is not installed (apt-get install -y valgrind).\n")
    cells = [(kind, variant) for kind in kinds for variant in variants]
    counts: dict[str, dict[str, float]] = {kind: {} for kind in kinds}
    print(f"Counting {len(cells)} cells under callgrind, {args.jobs} at a time (~40 s each)...", file=sys.stderr)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(count, variant, kind, args.requests): (kind, variant) for kind, variant in cells}
        try:
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                kind, variant = futures[future]
                counts[kind][variant] = future.result()
                print(f"  [{done}/{len(cells)}] {kind} / {variant}: {counts[kind][variant]:,.0f}", file=sys.stderr)
        except RuntimeError as exc:
            for pending in futures:
                pending.cancel()
            parser.exit(2, f"python -m bench.instructions: {exc}\n")
    ordered = {kind: {variant: counts[kind][variant] for variant in variants} for kind in kinds}
    print(format_table(ordered, args.requests))


if __name__ == "__main__":
    main()
