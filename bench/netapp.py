"""The network benchmark's server app: ``BENCH_VARIANT=bare|corstrace uvicorn bench.netapp:app``."""

from __future__ import annotations

import os

from bench.apps import build, configure_production_logging

configure_production_logging()
app = build(os.environ.get("BENCH_VARIANT", "bare"))
