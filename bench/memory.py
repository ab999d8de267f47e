"""Memory under a flood, and a stalled inspector client.

``flood``: a million cross-origin exchanges with many distinct origins and paths (allowed, blocked and
preflights) through the in-process app with the inspector on and a client connected; RSS is sampled along
the way. Every store corstrace keeps is bounded (the inspector ring by ``buffer_size``, each client's queue,
the blocked-event aggregator and the exchange tracker by fixed caps), so RSS must stop growing once they fill.

``slow_consumer``: the same app with a client that stopped reading: the publisher must not wait for it,
so latency is unchanged (see the in-process table's "stalled" variant) and its queue stays bounded.

``huge_headers``: every request unique and huge (a 0.5 MB ``Origin``, a 100 KB header, 200 small ones), with
a stalled inspector client: what is recorded is cut to byte bounds and no cache keeps huge keys, so RSS must
stay flat although each request carries more than half a megabyte.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from dataclasses import dataclass, field

from starlette.types import Scope

from bench.apps import InspectorClient, build, call, configure_production_logging, find_tracer, http_scope
from corstrace import CORSTraceMiddleware


def rss_mib() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _scopes(count: int) -> list[Scope]:
    """``count`` distinct legs: allowed origins (regex), blocked ones, preflights, across many paths."""
    scopes = []
    for i in range(count):
        path = f"/items/{i % 9973}"
        if i % 10 == 9:
            scopes.append(http_scope("preflight", origin=f"http://app{i % 5003}.example", path=path))
        elif i % 4 == 3:
            scopes.append(http_scope("blocked", origin=f"http://evil{i % 4099}.example", path=path))
        else:
            scopes.append(http_scope("simple", origin=f"http://app{i % 5003}.example", path=path))
    return scopes


@dataclass
class MemoryResult:
    exchanges: int
    # (exchanges done, RSS MiB)
    samples: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    stores: dict[str, int] = field(default_factory=dict)

    @property
    def growth_after_warmup(self) -> float:
        """RSS growth from the first sample after warm-up (a quarter of the run) to the end, in MiB."""
        warm = [rss for done, rss in self.samples if done >= self.exchanges // 4]
        return warm[-1] - warm[0] if warm else 0.0


def _stores(tracer: CORSTraceMiddleware | None) -> dict[str, int]:
    if tracer is None:
        return {}
    stores = tracer._recorder.sizes()
    hub = tracer._recorder.hub
    if hub is not None:
        stores["inspector ring"] = len(hub._ring)
        for i, subscription in enumerate(hub._subscribers):
            stores[f"client {i} queue"] = subscription.pending()
        stores["records dropped for slow clients"] = hub._dropped
    return stores


def _huge(i: int) -> Scope:
    """A unique request carrying more than half a megabyte of headers."""
    scope = http_scope("preflight" if i % 3 == 0 else "blocked", path=f"/items/{i}")
    origin = f"http://{i}.".encode() + b"a" * 500_000 + b".example"
    extra = [(b"x-big", b"b" * 100_000), *((f"x-{n}".encode(), f"{i}-{n}".encode()) for n in range(200))]
    scope["headers"] = [(n, v) for n, v in scope["headers"] if n != b"origin"] + [(b"origin", origin), *extra]
    return scope


async def _flood(exchanges: int, samples: int, stall: bool, huge: bool = False) -> MemoryResult:
    configure_production_logging()
    app = build("inspector")
    client = InspectorClient(app, stall=stall)
    await client.start()
    scopes = [] if huge else _scopes(min(exchanges, 50000))
    result = MemoryResult(exchanges)
    step = max(1, exchanges // samples)
    gc.collect()
    result.samples.append((0, rss_mib()))
    started = time.perf_counter()
    sleep = asyncio.sleep
    try:
        for i in range(exchanges):
            await call(app, _huge(i) if huge else scopes[i % len(scopes)])
            if i % 20 == 0:
                await sleep(0)
            if (i + 1) % step == 0:
                gc.collect()
                result.samples.append((i + 1, rss_mib()))
        result.seconds = time.perf_counter() - started
        result.stores = _stores(find_tracer(app))
    finally:
        await client.stop()
    return result


def flood(exchanges: int = 1_000_000, samples: int = 8) -> MemoryResult:
    return asyncio.run(_flood(exchanges, samples, stall=False))


def slow_consumer(exchanges: int = 200_000, samples: int = 4) -> MemoryResult:
    return asyncio.run(_flood(exchanges, samples, stall=True))


def huge_headers(exchanges: int = 4_000, samples: int = 4) -> MemoryResult:
    return asyncio.run(_flood(exchanges, samples, stall=True, huge=True))
