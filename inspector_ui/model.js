// The page's data model: legs grouped into exchanges, exchanges collapsed into rows, summary numbers.

import { pathOf } from "./dom.js";

const MAX_EXCHANGES = 5000; // the server keeps ~1,000; the page may keep more across a long session
const CHROMIUM_DEFAULT_MAX_AGE = 5; // seconds Chromium caches a preflight without Access-Control-Max-Age
const CHROMIUM_MAX_AGE_CAP = 7200; // Chromium clamps Access-Control-Max-Age to two hours

export class Store {
  constructor() {
    this.exchanges = new Map(); // exchange key -> exchange
    this.seen = new Set(); // "<epoch>:<seq>" of every record applied, so replays are idempotent
    this.arrival = 0;
    this.version = 0;
  }

  clear() {
    this.exchanges.clear();
    this.seen.clear();
    this.version++;
  }

  // Apply one record from the server; returns true when it changed anything.
  apply(record, epoch) {
    if (!record || typeof record !== "object") return false;
    const seen = `${epoch}:${record.seq}`;
    if (record.seq !== undefined && this.seen.has(seen)) return false;
    this.seen.add(seen);
    const id = record.exchange_id != null ? `${epoch}/${record.exchange_id}` : `${epoch}#${record.seq}`;
    let exchange = this.exchanges.get(id);
    if (!exchange) {
      exchange = { key: id, preflight: null, actual: null, actuals: [], notes: [], order: 0, version: 0 };
      this.exchanges.set(id, exchange);
    }
    exchange.order = ++this.arrival;
    exchange.version++;
    if (record.type === "note") {
      exchange.notes.push(record);
    } else if (record.type === "leg" || record.type === undefined) {
      if (record.preflight) {
        exchange.preflight = record;
      } else {
        // Several actual legs share an exchange after a redirect: the last one decides what the page saw.
        exchange.actuals.push(record);
        exchange.actual = record;
      }
    } else {
      exchange.notes.push(record);
    }
    summarize(exchange);
    this.version++;
    if (this.exchanges.size > MAX_EXCHANGES) {
      const oldest = [...this.exchanges.values()].sort((a, b) => a.order - b.order).slice(0, this.exchanges.size - MAX_EXCHANGES);
      for (const old of oldest) this.exchanges.delete(old.key);
    }
    return true;
  }

  legs() {
    const out = [];
    for (const exchange of this.exchanges.values()) {
      if (exchange.preflight) out.push(exchange.preflight);
      out.push(...exchange.actuals);
    }
    return out.sort((a, b) => (Number(a.ts) || 0) - (Number(b.ts) || 0));
  }

  // Rows: exchanges passing the filters, identical repeats collapsed, newest first.
  rows(filters) {
    const text = filters.text.trim().toLowerCase();
    const groups = new Map();
    const ordered = [...this.exchanges.values()].filter((e) => e.primary).sort((a, b) => b.order - a.order);
    for (const exchange of ordered) {
      const s = exchange.summary;
      if (filters.blockedOnly && s.verdict !== "blocked") continue;
      if (filters.origin && s.origin !== filters.origin) continue;
      if (text && !s.haystack.includes(text)) continue;
      let group = groups.get(s.groupKey);
      if (!group) {
        group = { key: s.groupKey, latest: exchange, exchanges: [], count: 0 };
        groups.set(s.groupKey, group);
      }
      group.exchanges.push(exchange);
      group.count += s.count;
    }
    return [...groups.values()];
  }

  origins() {
    const origins = new Set();
    for (const exchange of this.exchanges.values()) if (exchange.summary?.origin) origins.add(exchange.summary.origin);
    return [...origins].sort();
  }

  totals(nowSeconds) {
    let exchanges = 0;
    let blocked = 0;
    let warnings = 0;
    let preflightsLastMinute = 0;
    for (const exchange of this.exchanges.values()) {
      const s = exchange.summary;
      if (!s) continue;
      exchanges += s.count;
      if (s.verdict === "blocked") blocked += s.count;
      else if (s.verdict === "warning") warnings += s.count;
      const pre = exchange.preflight;
      if (pre && nowSeconds - (Number(pre.ts) || 0) <= 60) preflightsLastMinute += Number(pre.count) || 1;
    }
    return { exchanges, blocked, warnings, preflightsLastMinute };
  }

  // Preflights the browser re-sent because its cache had expired, and what a longer max_age would save.
  maxAgeAdvice() {
    const series = new Map();
    for (const exchange of this.exchanges.values()) {
      const pre = exchange.preflight;
      if (!pre || pre.verdict === "blocked") continue;
      const key = [pre.origin, pre.url, pre.requested_method, (pre.requested_headers || []).join(",")].join("\u0001");
      if (!series.has(key)) series.set(key, []);
      series.get(key).push(pre);
    }
    let resent = 0;
    let saved = 0;
    const ages = new Map();
    for (const legs of series.values()) {
      legs.sort((a, b) => (Number(a.ts) || 0) - (Number(b.ts) || 0));
      const age = maxAgeOf(legs[legs.length - 1]);
      if (age >= CHROMIUM_MAX_AGE_CAP) continue;
      let previous = null;
      for (const leg of legs) {
        const ts = Number(leg.ts) || 0;
        const extra = Math.max(0, (Number(leg.count) || 1) - 1); // repeats the middleware already folded together
        resent += extra;
        saved += extra;
        if (previous !== null) {
          resent += 1;
          if (ts - previous <= CHROMIUM_MAX_AGE_CAP) saved += 1;
        }
        previous = ts;
      }
      if (legs.length > 1 || hasFoldedRepeats(legs)) ages.set(age, (ages.get(age) || 0) + 1);
    }
    if (saved < 2) return null;
    return { resent, saved, ages: [...ages.keys()].sort((a, b) => a - b), cap: CHROMIUM_MAX_AGE_CAP };
  }
}

function hasFoldedRepeats(legs) {
  return legs.some((leg) => (Number(leg.count) || 1) > 1);
}

export function maxAgeOf(preflight) {
  for (const [name, value] of preflight.response_headers || []) {
    if (String(name).toLowerCase() === "access-control-max-age") {
      const seconds = Number.parseInt(String(value), 10);
      return Number.isFinite(seconds) ? seconds : CHROMIUM_DEFAULT_MAX_AGE;
    }
  }
  return CHROMIUM_DEFAULT_MAX_AGE;
}

// The server cannot see `credentials: 'include'`. An allowed leg that the browser would block if the
// page sent credentials stays "allowed" (most pages don't), but its reason column says so.
function blockedIfCredentialed(leg) {
  return Boolean(leg && leg.if_credentialed && leg.if_credentialed.verdict === "blocked");
}

function hasWarning(leg) {
  return Array.isArray(leg.warnings) && leg.warnings.length > 0;
}

export function legVerdict(leg) {
  if (!leg) return null;
  if (leg.verdict === "blocked") return "blocked";
  if (hasWarning(leg)) return "warning";
  return leg.verdict === "allowed" ? "allowed" : String(leg.verdict || "allowed");
}

function summarize(exchange) {
  const { preflight, actual } = exchange;
  const primary = actual || preflight;
  exchange.primary = primary;
  if (!primary) return;
  const orphan = exchange.notes.find((note) => note.code === "preflight_without_actual");
  const legs = [preflight, actual].filter(Boolean);
  const blockedLeg = legs.find((leg) => leg.verdict === "blocked");
  let verdict = "allowed";
  if (blockedLeg) verdict = "blocked";
  else if (legs.some(hasWarning)) verdict = "warning";
  const warningLeg = legs.find(hasWarning);
  let reason = "";
  if (blockedLeg) reason = String(blockedLeg.reason || "blocked");
  else if (warningLeg) reason = String(warningLeg.warnings[0].code || "warning");
  else if (legs.some(blockedIfCredentialed)) {
    reason = `if credentialed: ${legs.find(blockedIfCredentialed).if_credentialed.reason}`;
  }
  else if (orphan && !actual) reason = "PreflightWithoutRequest";
  const method = String((actual ? actual.method : preflight.requested_method || preflight.method) || "").toUpperCase();
  const origin = String(primary.origin ?? "");
  const path = pathOf(primary);
  const status = legs.map((leg) => (leg.status == null ? "—" : String(leg.status))).join(" → ");
  const count = Number(primary.count) || 1;
  exchange.summary = {
    verdict,
    reason,
    method,
    origin,
    path,
    status,
    count,
    ts: Number(primary.ts) || 0,
    hasPreflight: Boolean(preflight),
    orphan: Boolean(orphan && !actual),
    websocket: Boolean(primary.websocket),
    exception: Boolean(legs.some((leg) => leg.exception)),
    groupKey: [origin, method, path, verdict, reason, Boolean(preflight), Boolean(orphan && !actual)].join("\u0001"),
    haystack: [origin, method, path, status, verdict, reason, primary.url, primary.layer, blockedLeg?.browser_message]
      .map((part) => String(part ?? "").toLowerCase())
      .join(" "),
  };
}
