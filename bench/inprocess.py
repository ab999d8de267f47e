"""In-process cost per request: every variant called directly as an ASGI app, interleaved round by round.

Each round times ``n`` sequential requests of one kind through every variant (in a rotating order, so no
variant always runs first or last), and the result per variant is the median over rounds of
(variant - bare) and variant / bare *within the same round*: slow drift of the machine cancels out.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Scope

from bench.apps import KINDS, VARIANTS, InspectorClient, build, call, configure_production_logging, http_scope

# The event loop gets a turn every YIELD_EVERY requests (in every variant alike), so the inspector's sender task
# streams to its client during the measurement, as it would under a server.
YIELD_EVERY = 20
# Longer than the inspector's batch interval (50 ms).
SETTLE_SECONDS = 0.06


@dataclass
class KindResult:
    kind: str
    # variant -> per-round mean µs per request
    per_round: dict[str, list[float]] = field(default_factory=dict)

    def median_us(self, variant: str) -> float:
        return statistics.median(self.per_round[variant])

    def added_us(self, variant: str) -> float:
        return statistics.median(v - b for v, b in zip(self.per_round[variant], self.per_round["bare"], strict=True))

    def ratio(self, variant: str) -> float:
        return statistics.median(v / b for v, b in zip(self.per_round[variant], self.per_round["bare"], strict=True))


@dataclass
class InProcessResult:
    rounds: int
    requests_per_round: int
    variants: tuple[str, ...]
    kinds: dict[str, KindResult]
    inspector_events_streamed: int = 0
    stalled_client_frames: int = 0


async def _time(app: ASGIApp, scope: Scope, n: int, reader: InspectorClient | None = None) -> float:
    """Mean µs per request over ``n`` requests.

    With a reading inspector client, the streaming those requests caused is billed to them too: what its
    sender task has not sent when the last request returns is drained, and the CPU time that takes is
    added (CPU, not wall time: the sender's idle wait between batches is nobody's cost).
    """
    sleep = asyncio.sleep
    # Let the previous batch's background work finish first (the inspector's sender wakes every 50 ms to
    # stream what was queued), so it is not billed to this variant; and start every batch from the same
    # garbage-collector state, so a collection caused by the previous variant's garbage is not either.
    # Spin rather than sleep: an idle vCPU comes back slower, which would bill the wake-up to this batch.
    settled = time.perf_counter() + SETTLE_SECONDS
    while time.perf_counter() < settled:
        await sleep(0)
    gc.collect()
    started = time.perf_counter()
    for i in range(n):
        await call(app, scope)
        if i % YIELD_EVERY == 0:
            await sleep(0)
    elapsed = time.perf_counter() - started
    if reader is not None:
        elapsed += await reader.drain()
    return elapsed / n * 1e6


async def measure(
    rounds: int = 15, n: int = 1000, variants: tuple[str, ...] = VARIANTS, kinds: tuple[str, ...] = KINDS
) -> InProcessResult:
    configure_production_logging()
    apps = {variant: build(variant) for variant in variants}
    clients = []
    for variant in variants:
        if variant in ("inspector", "stalled"):
            client = InspectorClient(apps[variant], stall=variant == "stalled")
            await client.start()
            clients.append((variant, client))
    readers = {variant: client for variant, client in clients if variant == "inspector"}
    results = {kind: KindResult(kind, {v: [] for v in variants}) for kind in kinds}
    scopes = {kind: http_scope(kind) for kind in kinds}
    try:
        # Warm-up: builds middleware stacks, runs corstrace's one-time startup lint, fills caches.
        for kind in kinds:
            for variant in variants:
                await _time(apps[variant], scopes[kind], max(10, n // 10))
        # Setup objects (apps, OpenTelemetry, FastAPI's models) never die: keep the collector from re-scanning them.
        gc.freeze()
        for r in range(rounds):
            for kind in kinds:
                order = variants[r % len(variants) :] + variants[: r % len(variants)]
                for variant in order:
                    seconds = await _time(apps[variant], scopes[kind], n, readers.get(variant))
                    results[kind].per_round[variant].append(seconds)
    finally:
        streamed = stalled_frames = 0
        for variant, client in clients:
            if variant == "inspector":
                streamed = client.events
            else:
                stalled_frames = client.frames
            await client.stop()
    return InProcessResult(rounds, n, variants, results, streamed, stalled_frames)


def run(rounds: int = 15, n: int = 1000, kinds: tuple[str, ...] = KINDS) -> InProcessResult:
    return asyncio.run(measure(rounds, n, kinds=kinds))
