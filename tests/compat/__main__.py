"""``python -m tests.compat``: run the compatibility run from a checkout's root and print what it found."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.compat.runner import INJECTED_ORIGIN, Comparison, CompatError, Run, compare, default_cache, run
from tests.compat.suites import SUITES, missing


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.compat",
        description=(
            "Run Starlette's and FastAPI's own test suites (their sdists at the installed versions) bare and with "
            "CORSTraceMiddleware as the outermost layer of every app, and report every test that passes bare "
            "but not wrapped. Arguments after `--` go to pytest (a subset: paths, -k, -x)."
        ),
    )
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"{', '.join(SUITES)} (default: all)")
    parser.add_argument("--inspector", choices=("on", "off", "both"), default="both", help="default: both")
    parser.add_argument(
        "--origin",
        choices=("as-sent", "injected", "both"),
        default="both",
        help=f"as-sent: requests as the tests send them (few carry an Origin); injected: corstrace alone sees "
        f"Origin: {INJECTED_ORIGIN} on every request without one, so every leg is traced (the apps still get "
        "the original scope). Default: both",
    )
    parser.add_argument("--jobs", type=int, default=0, help="pytest-xdist workers per run (default: none)")
    parser.add_argument("--cache", type=Path, default=None, help=f"sdists and reports (default: {default_cache()})")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, pytest_args = argv[:split], argv[split + 1 :]
    options = _parser().parse_args(argv)
    names = options.suites or list(SUITES)
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        _parser().error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    inspectors = ("on", "off") if options.inspector == "both" else (options.inspector,)
    origins = {"as-sent": (None,), "injected": (INJECTED_ORIGIN,), "both": (None, INJECTED_ORIGIN)}[options.origin]
    variants = [(inspector, origin) for origin in origins for inspector in inspectors]
    results: list[tuple[Run, list[tuple[Run, Comparison]]]] = []
    try:
        for name in names:
            suite = SUITES[name]
            absent = missing(suite)
            if absent:
                raise CompatError(
                    f"{name}'s test requirements are not installed: {', '.join(absent)} (pip install -e '.[test]')"
                )
            print(f"{name} {suite.installed_version()}: bare run ...", flush=True)
            bare = run(suite, "bare", cache=options.cache, pytest_args=tuple(pytest_args), jobs=options.jobs)
            print(f"  bare: {bare.seconds} s, {bare.counts()}", flush=True)
            wrapped_runs = []
            for inspector, origin in variants:
                print(f"{name}: wrapped run, inspector {inspector}, Origin {origin or 'as sent'} ...", flush=True)
                wrapped = run(
                    suite,
                    "wrapped",
                    inspector=inspector,
                    cache=options.cache,
                    pytest_args=tuple(pytest_args),
                    jobs=options.jobs,
                    inject_origin=origin,
                )
                comparison = compare(bare, wrapped, selected=bool(pytest_args))
                print(f"  wrapped ({wrapped.variant}): {wrapped.seconds} s, {wrapped.counts()}", flush=True)
                print(comparison.summary(), flush=True)
                wrapped_runs.append((wrapped, comparison))
            results.append((bare, wrapped_runs))
    except CompatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if options.json is not None:
        options.json.write_text(json.dumps([_as_json(bare, wrapped) for bare, wrapped in results], indent=1))
    ok = all(comparison.ok for _, wrapped in results for _, comparison in wrapped)
    print(
        "\ncompatibility run: "
        + (
            "every test that passed bare passed wrapped (exclusions and known bugs aside)"
            if ok
            else "FAILED: see NEW FAILURE / INTERNAL ERROR / FIXED? above"
        )
    )
    return 0 if ok else 1


def _as_json(bare: Run, wrapped: list[tuple[Run, Comparison]]) -> dict[str, object]:
    return {
        "suite": bare.suite,
        "bare": {"seconds": bare.seconds, "counts": bare.counts()},
        "wrapped": [
            {
                "inspector": run.inspector,
                "injected_origin": run.injected,
                "seconds": run.seconds,
                "counts": run.counts(),
                "ok": comparison.ok,
                "regressions": sorted(comparison.regressions),
                "internal_errors": sorted(comparison.internal_errors),
                "excluded": comparison.excluded,
                "known": comparison.known,
                "fixed": comparison.fixed,
            }
            for run, comparison in wrapped
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
