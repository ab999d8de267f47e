"""The inspector page's data model (inspector_ui/model.js), run under node: exchanges, hops, rows, warnings, memory."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_inspector import make_record

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "inspector_ui" / "model.js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install -y nodejs)")

API = "http://127.0.0.1:8000"

# Applies the records (stdin) to a fresh Store, then runs `probe`, a function of (store, model) -> JSON.
_RUNNER = """
import { readFileSync } from "node:fs";
const model = await import(process.argv[1]);
const { records, probe } = JSON.parse(readFileSync(0, "utf8"));
const store = new model.Store();
for (const record of records) store.apply(record, "e1");
const rowsOf = (filters) => store.rows(filters || { text: "", origin: "", blockedOnly: false }).map((group) => ({
  ...group.latest.summary,
  count: group.count,
  members: group.members.size,
  hops: group.latest.hops.map((leg) => `${leg.preflight ? "OPTIONS" : leg.method} ${leg.path} ${leg.status}`),
  warnings: group.latest.warnings.map((w) => [w.code, w.level]),
}));
const result = new Function("store", "model", "rowsOf", `return (${probe});`)(store, model, rowsOf);
process.stdout.write(JSON.stringify(result));
"""


def run_model(records: list[dict[str, Any]], probe: str = "rowsOf()") -> Any:
    assert NODE is not None
    for seq, record in enumerate(records, 1):
        record.setdefault("seq", seq)
    completed = subprocess.run(
        [NODE, "--input-type=module", "-e", _RUNNER, MODEL.as_uri()],
        input=json.dumps({"records": records, "probe": probe}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def redirect_hops(exchange_id: str = "r1") -> list[dict[str, Any]]:
    """GET /items/ -> 307 -> GET /items -> 200, as the middleware records them."""
    first = make_record(
        exchange_id=exchange_id,
        url=f"{API}/items/",
        path="/items/",
        status=307,
        response_headers=[["location", f"{API}/items"], ["access-control-allow-origin", "http://localhost:5173"]],
        warnings=[
            {
                "code": "header_not_exposed",
                "message": "The page cannot read `location`: not listed in `Access-Control-Expose-Headers`. "
                "Send `Access-Control-Expose-Headers: location`.",
            }
        ],
    )
    second = make_record(exchange_id=exchange_id, url=f"{API}/items", path="/items", redirected_from=f"{API}/items/")
    return [first, second]


def test_redirect_hops_are_one_exchange_in_order() -> None:
    """Both legs of a followed redirect are one row; its hops are in the browser's order, each with its status."""
    (row,) = run_model(redirect_hops())
    assert row["hops"] == ["GET /items/ 307", "GET /items 200"]
    assert row["status"] == "307 → 200"
    assert row["path"] == "/items/ → /items"


def test_redirect_hops_are_ordered_by_their_links_not_by_arrival() -> None:
    """A hop whose record overtook the previous hop's still comes after it (redirected_from links them)."""
    first, second = redirect_hops()
    (row,) = run_model([second, first])
    assert row["hops"] == ["GET /items/ 307", "GET /items 200"]


def test_a_followed_redirect_gets_no_cannot_read_location_warning() -> None:
    """A page never sees a followed redirect's headers: `header_not_exposed` on that hop is not shown."""
    (row,) = run_model(redirect_hops())
    assert row["warnings"] == []
    assert row["verdict"] == "allowed"


def test_repeats_collapse_only_when_the_exchange_has_the_same_shape() -> None:
    """Two plain GET /items collapse into one ×2 row; a redirected GET /items/ -> /items stays its own row."""
    plain = [make_record(exchange_id=f"p{i}", url=f"{API}/items", path="/items") for i in range(2)]
    rows = run_model([*redirect_hops("r1"), *plain, *redirect_hops("r2")])
    assert [(row["path"], row["count"]) for row in rows] == [("/items/ → /items", 2), ("/items", 2)]


def test_a_preflight_sits_before_the_request_it_cleared() -> None:
    preflight = make_record(exchange_id="x", preflight=True, method="OPTIONS", requested_method="PUT", status=200)
    actual = make_record(exchange_id="x", method="PUT", status=204)
    (row,) = run_model([actual, preflight])
    assert row["hops"] == ["OPTIONS /api/items 200", "PUT /api/items 204"]
    assert row["method"] == "PUT"


def test_a_405_whose_allow_is_not_exposed_is_not_a_warning_row() -> None:
    """The page cannot read `allow` on a 405: true, shown as a note in the detail pane, but the row stays allowed."""
    record = make_record(
        status=405,
        warnings=[
            {
                "code": "header_not_exposed",
                "message": "The page cannot read `allow`: not listed in `Access-Control-Expose-Headers`. "
                "Send `Access-Control-Expose-Headers: allow`.",
            }
        ],
    )
    (row,) = run_model([record])
    assert row["verdict"] == "allowed"
    assert row["warnings"] == [["header_not_exposed", "note"]]
    assert run_model([record], "store.totals(0).warnings") == 0


def test_a_custom_header_the_page_cannot_read_is_still_a_warning() -> None:
    record = make_record(
        warnings=[{"code": "header_not_exposed", "message": "The page cannot read `x-total-count`: not listed in …"}]
    )
    (row,) = run_model([record])
    assert row["verdict"] == "warning"
    assert row["reason"] == "header_not_exposed"


CREDENTIALED = {
    "verdict": "blocked",
    "reason": "InvalidAllowCredentials",
    "browser_message": "…",
    "fix": "allow_credentials=True",
}


def test_the_credentials_caveat_is_not_shown_where_credentials_cannot_matter() -> None:
    """No Cookie sent, no Set-Cookie, no Allow-Credentials: the row does not say `if credentialed: …`."""
    record = make_record(if_credentialed=CREDENTIALED, request_headers=[["origin", "http://localhost:5173"]])
    (row,) = run_model([record])
    assert row["reason"] == ""


@pytest.mark.parametrize(
    "overrides",
    [
        {"request_headers": [["origin", "http://localhost:5173"], ["cookie", "[redacted]"]]},
        {"request_headers": [["sec-fetch-storage-access", "none"]]},
        {"request_headers": [], "response_headers": [["set-cookie", "[redacted]"]]},
        {"request_headers": [], "response_headers": [["access-control-allow-credentials", "true"]]},
    ],
    ids=["page-sent-cookies", "sec-fetch-storage-access", "app-sets-cookies", "config-allows-credentials"],
)
def test_the_credentials_caveat_is_shown_where_credentials_can_matter(overrides: dict[str, Any]) -> None:
    record = make_record(if_credentialed=CREDENTIALED, **overrides)
    (row,) = run_model([record])
    assert row["reason"] == "if credentialed: InvalidAllowCredentials"


def test_wildcard_with_credentials_warnings_wait_for_credentials() -> None:
    warning = {"code": "wildcard_origin_with_credentials", "message": "…"}
    (quiet,) = run_model([make_record(warnings=[warning], request_headers=[])])
    assert (quiet["verdict"], quiet["warnings"]) == ("allowed", [["wildcard_origin_with_credentials", "note"]])
    (loud,) = run_model([make_record(warnings=[warning], request_headers=[["cookie", "[redacted]"]])])
    assert loud["verdict"] == "warning"


def many(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [make_record(exchange_id=f"m{i}", path=f"/m/{i}", url=f"{API}/m/{i}") for i in range(start, start + count)]


def test_eviction_drops_the_oldest_exchanges_and_their_seen_entries() -> None:
    """Past MAX_EXCHANGES the first-arrived exchanges go, with their `seen` cursors: both stay bounded."""
    probe = """({
        max: model.MAX_EXCHANGES,
        held: store.exchanges.size,
        seen: store.seen.size,
        first: store.exchanges.keys().next().value,
        rows: store.rows({ text: "", origin: "", blockedOnly: false }).length,
        totals: store.totals(0).exchanges,
    })"""
    result = run_model(many(20_050), probe)
    assert result["max"] == 20_000
    assert result == {**result, "held": 20_000, "seen": 20_000, "first": "e1/m50", "rows": 20_000, "totals": 20_000}


def test_eviction_by_size_bounds_the_characters_held() -> None:
    """Huge records are evicted by their estimated size long before the count bound."""
    big = [make_record(exchange_id=f"b{i}", path=f"/b/{i}", explanation="x" * 1_000_000) for i in range(80)]
    result = run_model(big, "({ held: store.exchanges.size, chars: store.chars, max: model.MAX_CHARS })")
    assert result["chars"] <= result["max"]
    assert 0 < result["held"] < 80


def test_a_replayed_record_is_applied_once() -> None:
    record = make_record(exchange_id="once")
    assert run_model([record, dict(record)], "store.totals(0).exchanges") == 1


def test_repeat_count_counts_every_leg_a_record_stands_for() -> None:
    (row,) = run_model([make_record(repeat_count=7)])
    assert row["count"] == 7


def test_max_age_advice_uses_the_engines_preflight_cache_seconds() -> None:
    """The page no longer parses Access-Control-Max-Age (`10abc` was read as 10 s): it shows the engine's figure."""
    preflights = [
        make_record(
            exchange_id=f"pf{i}",
            preflight=True,
            method="OPTIONS",
            requested_method="PUT",
            ts=1000.0 + 60 * i,
            response_headers=[["access-control-max-age", "10abc"]],
            preflight_cache_seconds=5,
        )
        for i in range(4)
    ]
    advice = run_model(preflights, "store.maxAgeAdvice()")
    assert advice == {"resent": 3, "saved": 3, "ages": [5], "cap": 7200}
