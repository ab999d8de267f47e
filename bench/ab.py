"""Compare the working tree's corstrace with another revision's, side by side in one process.

``python -m bench.ab --against 2c7a29a`` loads that revision's ``corstrace`` package (from ``git archive``,
renamed so both import at once) and times the same FastAPI app with each, plus the bare app twice (the
noise floor). On a shared host the full suite's ratios drift by several µs between runs; many short rounds
in one process, with the variants rotated every round, resolve a change of a few µs.

The loop never yields to the event loop, so an inspector's sender never runs: with ``--inspector`` this
measures the request path alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

from bench.apps import KINDS, call, configure_production_logging, fastapi_app, http_scope
from corstrace import CORSTraceMiddleware

ROOT = Path(__file__).resolve().parent.parent


def load_revision(revision: str, into: Path) -> Any:
    """The CORSTraceMiddleware class of ``revision``, imported as the package ``corstrace_at_rev``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "corstrace"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into)  # our own repository's archive
    package = into / "corstrace_at_rev"
    (into / "corstrace").rename(package)
    for source in package.rglob("*.py"):
        text = source.read_text()
        source.write_text(re.sub(r"\b(from|import) corstrace\b", r"\1 corstrace_at_rev", text))
    sys.path.insert(0, str(into))
    from corstrace_at_rev.middleware import CORSTraceMiddleware as Theirs  # type: ignore[import-not-found]

    return Theirs


def _app(middleware: Any | None, inspector: bool) -> ASGIApp:
    app = fastapi_app()
    if middleware is not None:
        app.add_middleware(middleware, inspector=inspector)
    return app


async def compare(
    revision: str, kinds: tuple[str, ...], rounds: int, n: int, inspector: bool
) -> dict[str, dict[str, list[float]]]:
    """Per kind and variant, the µs per request of every round."""
    configure_production_logging()
    with tempfile.TemporaryDirectory() as tmp:
        theirs = load_revision(revision, Path(tmp))
        apps = {
            "bare": _app(None, inspector),
            "bare2": _app(None, inspector),
            revision: _app(theirs, inspector),
            "working tree": _app(CORSTraceMiddleware, inspector),
        }
        variants = list(apps)
        timings: dict[str, dict[str, list[float]]] = {}
        for kind in kinds:
            scope = http_scope(kind)
            for app in apps.values():  # warm-up: startup lint, caches
                for _ in range(100):
                    await call(app, scope)
            gc.collect()
            per: dict[str, list[float]] = {variant: [] for variant in variants}
            for r in range(rounds):
                for variant in variants[r % len(variants) :] + variants[: r % len(variants)]:
                    app = apps[variant]
                    started = time.perf_counter()
                    for _ in range(n):
                        await call(app, scope)
                    per[variant].append((time.perf_counter() - started) / n * 1e6)
            timings[kind] = per
    return timings


def format_table(timings: dict[str, dict[str, list[float]]]) -> str:
    kinds = list(timings)
    variants = list(timings[kinds[0]])[1:]
    lines = [
        "| request | bare µs | " + " | ".join(variants) + " |",
        "|---|---:|" + "---:|" * len(variants),
    ]
    for kind in kinds:
        per = timings[kind]
        bare = per["bare"]
        cells = [
            f"+{statistics.median(v - b for v, b in zip(per[variant], bare, strict=True)):.1f} µs".replace("+-", "-")
            for variant in variants
        ]
        lines.append(f"| {kind} | {statistics.median(bare):.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ab", description="Compare the working tree's corstrace with another revision's."
    )
    parser.add_argument("--against", required=True, help="the git revision to compare with (e.g. main, HEAD~3)")
    parser.add_argument("--kinds", default=",".join(k for k in KINDS), help=f"comma-separated, from {KINDS}")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=200, help="requests per variant per round")
    parser.add_argument("--inspector", action="store_true", help="inspector on (no client; request path only)")
    args = parser.parse_args(argv)
    kinds = tuple(args.kinds.split(","))
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    try:
        timings = asyncio.run(compare(args.against, kinds, args.rounds, args.requests, args.inspector))
    except subprocess.CalledProcessError as exc:
        parser.exit(2, f"python -m bench.ab: cannot read {args.against!r} from git: {exc.stderr.decode().strip()}\n")
    print(
        f"Median over {args.rounds} rotated rounds of {args.requests} requests of the µs each variant adds to the bare "
        f"app{' (inspector on, no client)' if args.inspector else ''}:\n"
    )
    print(format_table(timings))


if __name__ == "__main__":
    main()
