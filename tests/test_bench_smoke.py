"""The benchmark suite runs (tiny counts, no timing assertions: a benchmark is not a test)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from bench import ab, engine_only, inprocess, instructions, memory, network, run

# The suite configures structlog for production (debug dropped); later tests expect the defaults back.
pytestmark = pytest.mark.usefixtures("restore_structlog")


def test_inprocess_table_and_targets_render() -> None:
    result = inprocess.run(rounds=1, n=5)
    assert set(result.kinds) == set(inprocess.KINDS)
    assert "| request |" in run.format_inprocess(result)
    assert len(run.targets(result)) == 6
    assert run.format_targets(run.targets(result)).startswith("| target |")


def test_memory_and_slow_consumer_run() -> None:
    flood = memory.flood(200, 2)
    assert flood.stores["inspector ring"] == 200
    assert "RSS" in run.format_memory(flood, "flood")
    stalled = memory.slow_consumer(400, 2)
    # The client stopped reading: its queue is capped and the rest was dropped, not buffered.
    assert stalled.stores["client 0 queue"] <= 256
    assert stalled.stores["records dropped for slow clients"] > 0


def test_engine_only_runs() -> None:
    result = engine_only.run(seconds=0.01)
    assert set(result.per_second) == set(engine_only.CASES)
    assert "evaluations/s" in run.format_engine(result)


def test_wrk_output_is_parsed() -> None:
    sample = """Running 1s test @ http://127.0.0.1:1/items/42
  Latency Distribution
     50%    6.72ms
     75%    8.00ms
     90%   10.00ms
     99%  850.00us
Requests/sec:   2048.12
"""
    assert network.parse_wrk(sample) == (2048.12, 6.72, 0.85)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)")
def test_network_section_runs() -> None:
    result = network.run(rounds=1, seconds=1, connections=2)
    assert result.skipped is None
    assert "requests/s" in run.format_network(result)


def test_ab_compares_another_revision_with_the_working_tree() -> None:
    timings = asyncio.run(ab.compare("HEAD", ("simple", "preflight"), rounds=2, n=2, inspector=False))
    assert list(timings["simple"]) == ["bare", "bare2", "HEAD", "working tree"]
    assert all(len(rounds) == 2 for rounds in timings["preflight"].values())
    assert ab.format_table(timings).splitlines()[0] == "| request | bare µs | bare2 | HEAD | working tree |"


def test_instruction_counter_runs_every_variant_without_waiting_for_the_event_loop() -> None:
    # What runs under callgrind, run natively: a request that waited for the event loop would raise.
    for variant in instructions.VARIANTS:
        instructions.child(variant, "preflight", 3)


def test_instruction_table_reads_callgrind_and_renders() -> None:
    assert instructions.parse_collected("==1== Events    : Ir\n==1== Collected : 43718715\n") == 43718715
    assert instructions.parse_collected("valgrind: no such file") == 0
    table = instructions.format_table({"simple": {"bare": 400_000.0, "corstrace": 420_000.0}}, 300)
    assert "| allowed simple GET | 400.0k | 1.050× (+20.0k) |" in table
