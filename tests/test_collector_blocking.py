"""No blocking call in the event loop on either side of the collector: blockbuster around a real uvicorn worker
publishing to a collector, and around ``corstrace inspector`` itself.

Both are subprocesses that activate blockbuster for every call made from corstrace's code before anything of
corstrace is imported (the worker's app is imported by uvicorn, inside its loop, with a fresh cache directory, so
the token file is created there). The test drives them through every path the sender has: a collector that is
not there yet (connect refused, backoff), the handshake, records, the collector's page and its files, a
collector restart, and the worker's shutdown flush. blockbuster raises ``BlockingError`` where corstrace blocks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.sync.client import connect

from tests.collector_support import Process, environment, free_port, start, wait_listening
from tests.test_inspector_blocking import FRONTEND

pytestmark = pytest.mark.slow

_BLOCKBUSTER = """
import sys, types, importlib.util
from blockbuster import blockbuster_ctx

corstrace = types.SimpleNamespace(__path__=importlib.util.find_spec("corstrace").submodule_search_locations)
with blockbuster_ctx([corstrace]):
"""
WORKER = (
    _BLOCKBUSTER
    + """
    import uvicorn
    uvicorn.run("tests.test_inspector_blocking:app", port=int(sys.argv[1]), log_level="info", lifespan="on")
"""
)
COLLECTOR = (
    _BLOCKBUSTER
    + """
    from corstrace.__main__ import main
    sys.exit(main(["inspector", "--port", sys.argv[1]]))
"""
)


def _collector(port: int, env: dict[str, str]) -> tuple[Process, str]:
    process = start(["-c", COLLECTOR, str(port)], env)
    url = process.wait_for(r"inspector  (http://\S+#token=\S+)")[0].group(1)
    wait_listening(port, process)
    return process, url


def _page_records(url: str, count: int) -> list[dict[str, object]]:
    """Read the collector's page stream until ``count`` leg records arrived."""
    base, _, token = url.partition("/_corstrace/#token=")
    protocols: object = ["corstrace.v1", "corstrace.auth." + token.encode().hex()]
    records: list[dict[str, object]] = []
    with connect(base.replace("http://", "ws://") + "/_corstrace/ws", origin=websockets.Origin(base),
                 subprotocols=protocols) as ws:  # type: ignore[arg-type]  # fmt: skip
        while len(records) < count:
            message = json.loads(ws.recv())
            if message["type"] == "events":
                records += [record for record in message["events"] if record.get("type") == "leg"]
    return records


def _clean(process: Process) -> str:
    process.stop()
    output = process.text
    assert "BlockingError" not in output, output
    assert "corstrace.internal_error" not in output, output
    assert not re.search(r"Traceback \(most recent call last\)", output), output
    return output


def test_publishing_and_collecting_never_block_the_event_loop(tmp_path: Path) -> None:
    pytest.importorskip("blockbuster")
    collector_port, api_port = free_port(), free_port()
    cache = tmp_path / "fresh-cache"
    worker = start(
        ["-c", WORKER, str(api_port)], environment(cache, CORSTRACE_COLLECTOR=f"http://127.0.0.1:{collector_port}")
    )
    collector: Process | None = None
    try:
        wait_listening(api_port, worker)
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}") as http:
            assert http.get("/items?n=1", headers={"Origin": FRONTEND}).status_code == 200
            worker.wait_for("cannot reach its collector")
            collector, url = _collector(collector_port, environment(cache))
            with httpx.Client(base_url=url.partition("#")[0]) as page:
                for path in ("", "app.js", "style.css"):
                    assert page.get(path).status_code == 200
            assert http.get("/items?n=2", headers={"Origin": FRONTEND}).status_code == 200
            assert [record["url"] for record in _page_records(url, 2)][-1].endswith("?n=2")  # type: ignore[union-attr]
            _clean(collector)
            assert http.get("/items?n=3", headers={"Origin": FRONTEND}).status_code == 200
            collector, url = _collector(collector_port, environment(cache))
            assert http.get("/items?n=4", headers={"Origin": FRONTEND}).status_code == 200
            records = _page_records(url, 2)
            assert sorted(str(record["url"])[-3:] for record in records) == ["n=3", "n=4"]
    finally:
        output = _clean(worker)
        if collector is not None:
            _clean(collector)
    assert output.count("publishing to the corstrace collector") == 2, output
