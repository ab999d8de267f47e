// The page's data model: legs grouped into exchanges (a preflight, its request and every redirect hop share an
// exchange_id), exchanges collapsed into rows when they have the same shape, and the summary numbers.
//
// Everything is kept incrementally, so applying a record costs the same whether the page holds ten exchanges
// or twenty thousand: exchanges live in a Map in arrival order and the oldest is evicted first (with its
// entries in `seen`), rows are a Map of groups in activity order, and the totals, origins, preflight rate and
// max-age advice are counters updated as records arrive.

import { pathOf } from "./dom.js";

// The server keeps ~1,000 records; a long session in one tab may keep more. Bounded by count and by an
// estimate of the characters held, whichever bites first.
export const MAX_EXCHANGES = 20000;
export const MAX_CHARS = 48 * 1024 * 1024;
// A browser follows at most 20 redirects, each possibly preflighted: more legs than this is not one exchange.
const MAX_LEGS = 64;
const MAX_SERIES = 4096;
const CHROMIUM_MAX_AGE_CAP = 7200; // Chromium clamps Access-Control-Max-Age to two hours
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

// Warnings that need credentials to bite: they only matter where the page sends (or the app expects) them.
const CREDENTIAL_WARNINGS = new Set([
  "wildcard_origin_with_credentials",
  "wildcard_methods_with_credentials",
  "wildcard_headers_with_credentials",
  "expose_wildcard_with_credentials",
]);
// Worth knowing, never breaking anything: shown in the detail pane, but the row stays green.
const QUIET_WARNINGS = new Set(["max_age_capped"]);
// Response headers pages practically never read from script: "the page cannot read `allow`" on a 405 is noise.
const RARELY_READ = new Set(["allow", "www-authenticate", "x-powered-by", "via", "age", "server-timing"]);

export class Group {
  constructor(key) {
    this.key = key;
    this.members = new Map(); // exchange key -> exchange, least recently updated first
    this.count = 0;
    this._latest = null;
  }

  // The member updated last; recomputed only when that one left the group.
  get latest() {
    if (!this._latest) {
      let last = null;
      for (const exchange of this.members.values()) last = exchange;
      this._latest = last;
    }
    return this._latest;
  }
}

export class Store {
  constructor() {
    this.version = 0;
    this.clear();
  }

  clear() {
    this.exchanges = new Map(); // exchange key -> exchange
    // Arrival order, for eviction: a plain queue, because finding a Map's first entry after many deletions
    // walks over every deleted slot (V8 keeps them until it rehashes).
    this.arrivals = [];
    this.head = 0;
    this.seen = new Set(); // "<epoch>:<seq>" of every record held, so replays are idempotent
    this.groups = new Map(); // group key -> Group, least recently active first
    this.chars = 0;
    this.arrival = 0;
    this.anonymous = 0;
    this.counts = { exchanges: 0, blocked: 0, warnings: 0 };
    this.originCounts = new Map();
    this.originList = [];
    this.originsDirty = false;
    this.preflightSeconds = new Map(); // whole second -> preflights received in it
    this.series = new Map(); // preflight series -> re-send statistics (max-age advice)
    this.processes = new Set(); // "<pid> <name>" of the processes records came from (a collector has several)
    this.version++;
  }

  // Apply one record from the server; returns true when it changed anything.
  apply(record, epoch) {
    if (!record || typeof record !== "object") return false;
    const seen = record.seq !== undefined ? `${epoch}:${record.seq}` : null;
    if (seen !== null) {
      if (this.seen.has(seen)) return false;
      this.seen.add(seen);
    }
    const id = record.exchange_id != null ? `${epoch}/${record.exchange_id}` : `${epoch}#${record.seq ?? `anonymous-${++this.anonymous}`}`;
    let exchange = this.exchanges.get(id);
    if (!exchange) {
      exchange = { key: id, legs: [], notes: [], seen: [], chars: 0, order: 0, version: 0, summary: null, group: null };
      this.exchanges.set(id, exchange);
      this.arrivals.push(exchange);
    }
    if (seen !== null) exchange.seen.push(seen);
    const isLeg = record.type === "leg" || record.type === undefined;
    if (isLeg && exchange.legs.length >= MAX_LEGS) return false;
    const chars = sizeOf(record, 0);
    exchange.chars += chars;
    this.chars += chars;
    exchange.order = ++this.arrival;
    exchange.version++;
    if (isLeg) {
      exchange.legs.push(record);
      this.countProcess(record.process);
      if (record.preflight) this.countPreflight(record);
    } else {
      exchange.notes.push(record);
    }
    this.unindex(exchange);
    summarize(exchange);
    this.index(exchange);
    this.version++;
    this.evict();
    return true;
  }

  evict() {
    while (this.exchanges.size > MAX_EXCHANGES || (this.chars > MAX_CHARS && this.exchanges.size > 1)) {
      const oldest = this.arrivals[this.head];
      this.arrivals[this.head++] = undefined;
      if (this.head > 1024 && this.head * 2 > this.arrivals.length) {
        this.arrivals = this.arrivals.slice(this.head);
        this.head = 0;
      }
      this.exchanges.delete(oldest.key);
      this.unindex(oldest);
      this.chars -= oldest.chars;
      for (const seen of oldest.seen) this.seen.delete(seen);
    }
  }

  index(exchange) {
    const s = exchange.summary;
    if (!s) return;
    let group = this.groups.get(s.groupKey);
    if (group) this.groups.delete(s.groupKey); // re-inserted below: most recently active last
    else group = new Group(s.groupKey);
    this.groups.set(s.groupKey, group);
    group.members.set(exchange.key, exchange);
    group.count += s.count;
    group._latest = exchange;
    exchange.group = group;
    this.counts.exchanges += s.count;
    if (s.verdict === "blocked") this.counts.blocked += s.count;
    else if (s.verdict === "warning") this.counts.warnings += s.count;
    const seen = this.originCounts.get(s.origin) || 0;
    this.originCounts.set(s.origin, seen + 1);
    if (!seen) this.originsDirty = true;
  }

  unindex(exchange) {
    const group = exchange.group;
    const s = exchange.summary;
    if (!group || !s) return;
    exchange.group = null;
    group.members.delete(exchange.key);
    group.count -= s.count;
    if (group._latest === exchange) group._latest = null;
    if (!group.members.size) this.groups.delete(group.key);
    this.counts.exchanges -= s.count;
    if (s.verdict === "blocked") this.counts.blocked -= s.count;
    else if (s.verdict === "warning") this.counts.warnings -= s.count;
    const left = (this.originCounts.get(s.origin) || 1) - 1;
    if (left) this.originCounts.set(s.origin, left);
    else {
      this.originCounts.delete(s.origin);
      this.originsDirty = true;
    }
  }

  countProcess(process) {
    if (!process || typeof process !== "object" || this.processes.size > 1) return; // "more than one" is all the page asks
    this.processes.add(`${String(process.pid)} ${String(process.name)}`);
  }

  processCount() {
    return this.processes.size;
  }

  countPreflight(leg) {
    const second = Math.floor(Number(leg.ts) || 0);
    this.preflightSeconds.set(second, (this.preflightSeconds.get(second) || 0) + repeatCount(leg));
    if (this.preflightSeconds.size > 120) {
      for (const old of this.preflightSeconds.keys()) if (old < second - 120) this.preflightSeconds.delete(old);
    }
    this.trackSeries(leg);
  }

  // Preflights the browser re-sent because its cache had expired: one series per origin, URL, method and
  // headers, fed by the engine's `preflight_cache_seconds` (what Chromium caches), never re-parsed here.
  trackSeries(leg) {
    const age = leg.preflight_cache_seconds;
    if (leg.verdict === "blocked" || typeof age !== "number" || !Number.isFinite(age)) return;
    const key = [leg.origin, leg.url, leg.requested_method, (Array.isArray(leg.requested_headers) ? leg.requested_headers : []).join(",")].join("\u0001");
    let series = this.series.get(key);
    if (series) this.series.delete(key);
    else series = { previous: null, resent: 0, saved: 0, legs: 0, folded: false, age };
    this.series.set(key, series);
    const ts = Number(leg.ts) || 0;
    const extra = repeatCount(leg) - 1; // repeats the server already folded together
    series.resent += extra;
    series.saved += extra;
    if (extra > 0) series.folded = true;
    if (series.previous !== null) {
      series.resent += 1;
      if (Math.abs(ts - series.previous) <= CHROMIUM_MAX_AGE_CAP) series.saved += 1;
    }
    series.previous = ts;
    series.legs += 1;
    series.age = age;
    if (this.series.size > MAX_SERIES) this.series.delete(this.series.keys().next().value);
  }

  legs() {
    const out = [];
    for (const exchange of this.exchanges.values()) out.push(...exchange.legs);
    return out.sort((a, b) => (Number(a.ts) || 0) - (Number(b.ts) || 0));
  }

  // Rows: exchanges passing the filters, exchanges of the same shape collapsed, most recently active first.
  rows(filters) {
    const text = filters.text.trim().toLowerCase();
    if (!text && !filters.origin && !filters.blockedOnly) return [...this.groups.values()].reverse();
    const groups = new Map();
    const matching = [];
    for (const exchange of this.exchanges.values()) {
      const s = exchange.summary;
      if (!s) continue;
      if (filters.blockedOnly && s.verdict !== "blocked") continue;
      if (filters.origin && s.origin !== filters.origin) continue;
      if (text && !s.haystack.includes(text)) continue;
      matching.push(exchange);
    }
    matching.sort((a, b) => a.order - b.order);
    for (const exchange of matching) {
      const key = exchange.summary.groupKey;
      let group = groups.get(key);
      if (group) groups.delete(key);
      else group = new Group(key);
      groups.set(key, group);
      group.members.set(exchange.key, exchange);
      group.count += exchange.summary.count;
      group._latest = exchange;
    }
    return [...groups.values()].reverse();
  }

  origins() {
    if (this.originsDirty) {
      this.originList = [...this.originCounts.keys()].filter(Boolean).sort();
      this.originsDirty = false;
    }
    return this.originList;
  }

  totals(nowSeconds) {
    let preflightsLastMinute = 0;
    for (const [second, count] of this.preflightSeconds) if (nowSeconds - second <= 60) preflightsLastMinute += count;
    return { ...this.counts, preflightsLastMinute };
  }

  // What a longer max_age would save, or null when it would not be worth saying.
  maxAgeAdvice() {
    let resent = 0;
    let saved = 0;
    const ages = new Set();
    for (const series of this.series.values()) {
      if (series.age >= CHROMIUM_MAX_AGE_CAP) continue;
      resent += series.resent;
      saved += series.saved;
      if (series.legs > 1 || series.folded) ages.add(series.age);
    }
    if (saved < 2) return null;
    return { resent, saved, ages: [...ages].sort((a, b) => a - b), cap: CHROMIUM_MAX_AGE_CAP };
  }
}

export function repeatCount(leg) {
  return Math.max(1, Number(leg?.repeat_count ?? leg?.count) || 1);
}

// A rough size of a record in characters: what the store's memory bound counts.
function sizeOf(value, depth) {
  if (typeof value === "string") return value.length + 2;
  if (value === null || typeof value !== "object") return 8;
  if (depth > 3) return 16;
  let size = 16;
  if (Array.isArray(value)) {
    for (const item of value) size += sizeOf(item, depth + 1);
  } else {
    for (const key of Object.keys(value)) size += key.length + sizeOf(value[key], depth + 1);
  }
  return size;
}

function headerValue(pairs, wanted) {
  for (const pair of Array.isArray(pairs) ? pairs : []) {
    if (Array.isArray(pair) && String(pair[0]).toLowerCase() === wanted) return String(pair[1]);
  }
  return null;
}

function resolve(url, base) {
  try {
    return new URL(String(url), base === undefined ? undefined : String(base)).href;
  } catch {
    return String(url);
  }
}

export function isStatusRedirect(leg) {
  return REDIRECT_STATUSES.has(Number(leg?.status));
}

// A redirect the browser followed: its headers never reach the page.
function isFollowedRedirect(leg) {
  return !leg.preflight && isStatusRedirect(leg) && headerValue(leg.response_headers, "location") !== null;
}

// The legs of an exchange in the order the browser sent them. Arrival order is the order the server finished
// them; `redirected_from` links each hop to the previous one, and a preflight goes just before the request it
// cleared (or after the hop that redirected to its URL, when no request followed it).
export function orderLegs(legs) {
  if (legs.length < 2) return legs.slice(); // most exchanges: nothing to order
  const actuals = legs.filter((leg) => !leg.preflight);
  const preflights = legs.filter((leg) => leg.preflight);
  const urls = new Set(actuals.map((leg) => resolve(leg.url)));
  const next = new Map();
  for (const leg of actuals) {
    if (leg.redirected_from == null) continue;
    const from = resolve(leg.redirected_from);
    if (!next.has(from)) next.set(from, []);
    next.get(from).push(leg);
  }
  const chain = [];
  const used = new Set();
  const follow = (start) => {
    let leg = start;
    while (leg && !used.has(leg)) {
      used.add(leg);
      chain.push(leg);
      const candidates = (next.get(resolve(leg.url)) || []).filter((hop) => !used.has(hop));
      leg = candidates[0];
    }
  };
  for (const leg of actuals) {
    const from = leg.redirected_from == null ? null : resolve(leg.redirected_from);
    if (from === null || !urls.has(from)) follow(leg);
  }
  for (const leg of actuals) if (!used.has(leg)) follow(leg);

  const out = [];
  const placed = new Set();
  for (const leg of chain) {
    const url = resolve(leg.url);
    for (const preflight of preflights) {
      if (!placed.has(preflight) && resolve(preflight.url) === url) {
        placed.add(preflight);
        out.push(preflight);
        break;
      }
    }
    out.push(leg);
  }
  let front = 0; // preflights that match no hop go first, in arrival order
  for (const preflight of preflights) {
    if (placed.has(preflight)) continue;
    const url = resolve(preflight.url);
    const after = out.findIndex((leg) => {
      const location = isStatusRedirect(leg) ? headerValue(leg.response_headers, "location") : null;
      return location !== null && resolve(location, leg.url) === url;
    });
    if (after >= 0) out.splice(after + 1, 0, preflight);
    else out.splice(front++, 0, preflight);
    placed.add(preflight);
  }
  return out;
}

// Where `credentials: 'include'` can matter: the page sent credentials (a Cookie, or Chromium's
// Sec-Fetch-Storage-Access, sent only for credentialed cross-site requests), the app sets cookies, or it
// answers Access-Control-Allow-Credentials: true.
export function credentialsMatter(legs) {
  return legs.some(
    (leg) =>
      leg.credentials === "include" ||
      headerValue(leg.request_headers, "cookie") !== null ||
      headerValue(leg.request_headers, "sec-fetch-storage-access") !== null ||
      headerValue(leg.response_headers, "set-cookie") !== null ||
      String(headerValue(leg.response_headers, "access-control-allow-credentials") ?? "").trim().toLowerCase() === "true",
  );
}

function hiddenHeaders(warning) {
  if (Array.isArray(warning.headers)) return warning.headers.map((name) => String(name).toLowerCase());
  const match = /^The page cannot read (.*?): not listed/.exec(String(warning.message ?? ""));
  if (!match) return null;
  return [...match[1].matchAll(/`([^`]+)`/g)].map((m) => m[1].toLowerCase());
}

// "warning" (colours the row and counts), "note" (detail pane only) or "drop" (not true for this leg).
export function warningLevel(warning, leg, credentialed) {
  const code = String(warning?.code ?? "");
  if (code === "header_not_exposed") {
    if (isFollowedRedirect(leg)) return "drop";
    const hidden = hiddenHeaders(warning);
    if (hidden && hidden.length && hidden.every((name) => RARELY_READ.has(name))) return "note";
    return "warning";
  }
  if (CREDENTIAL_WARNINGS.has(code)) return credentialed ? "warning" : "note";
  if (QUIET_WARNINGS.has(code)) return "note";
  return "warning";
}

// The verdict badge of one leg within its exchange.
export function legVerdict(exchange, leg) {
  if (!leg) return null;
  if (leg.verdict === "blocked") return "blocked";
  if (exchange.warnings.some((w) => w.leg === leg && w.level === "warning")) return "warning";
  return leg.verdict === "allowed" || leg.verdict == null ? "allowed" : String(leg.verdict);
}

function shapeOf(leg) {
  return [leg.preflight ? "P" : "R", leg.preflight ? leg.requested_method : leg.method, pathOf(leg), leg.status, leg.verdict, leg.reason].join("\u0002");
}

function summarize(exchange) {
  const hops = orderLegs(exchange.legs);
  const actuals = hops.filter((leg) => !leg.preflight);
  const preflights = hops.filter((leg) => leg.preflight);
  const primary = actuals[actuals.length - 1] || preflights[preflights.length - 1] || null;
  exchange.hops = hops;
  exchange.actuals = actuals;
  exchange.preflights = preflights;
  exchange.primary = primary;
  exchange.first = actuals[0] || null;
  if (!primary) {
    exchange.summary = null;
    exchange.warnings = [];
    return;
  }
  const credentialed = credentialsMatter(hops);
  exchange.credentialsMatter = credentialed;
  const warnings = [];
  for (const leg of hops) {
    for (const warning of Array.isArray(leg.warnings) ? leg.warnings : []) {
      if (!warning || typeof warning !== "object") continue;
      const level = warningLevel(warning, leg, credentialed);
      if (level !== "drop") warnings.push({ code: String(warning.code || "warning"), message: warning.message, leg, level });
    }
  }
  exchange.warnings = warnings;
  const orphan = !actuals.length && exchange.notes.some((note) => note.code === "preflight_without_actual");
  const blockedLeg = hops.find((leg) => leg.verdict === "blocked");
  const biting = warnings.find((w) => w.level === "warning");
  const caveatLeg = credentialed ? hops.find((leg) => leg.if_credentialed && leg.if_credentialed.verdict === "blocked") : null;
  let verdict = "allowed";
  let reason = "";
  if (blockedLeg) {
    verdict = "blocked";
    reason = String(blockedLeg.reason || "blocked");
  } else if (biting) {
    verdict = "warning";
    reason = biting.code;
  } else if (caveatLeg) {
    reason = `if credentialed: ${caveatLeg.if_credentialed.reason}`;
  } else if (orphan) {
    reason = "PreflightWithoutRequest";
  }
  exchange.decider = blockedLeg || primary;
  const first = exchange.first || preflights[0];
  const method = String((exchange.first ? exchange.first.method : first.requested_method || first.method) ?? "");
  const origin = String(primary.origin ?? "");
  let path = pathOf(first);
  if (actuals.length > 1) {
    const last = actuals[actuals.length - 1];
    let sameOrigin = false;
    try {
      sameOrigin = new URL(last.url).origin === new URL(first.url).origin;
    } catch {
      sameOrigin = true;
    }
    path = `${path} → ${sameOrigin ? pathOf(last) : String(last.url ?? pathOf(last))}`;
  }
  const statuses = hops.map((leg) => (leg.status == null ? "—" : String(leg.status)));
  const count = repeatCount(primary);
  const from = hops.map((leg) => leg.process).find((p) => p && typeof p === "object");
  const process = from ? { pid: String(from.pid ?? "?"), label: `${String(from.name ?? "?")} (pid ${String(from.pid ?? "?")})` } : null;
  exchange.summary = {
    verdict,
    reason,
    method,
    origin,
    path,
    status: statuses.join(" → "),
    statuses,
    count,
    ts: Number((exchange.first || primary).ts) || 0,
    hasPreflight: preflights.length > 0,
    redirects: Math.max(0, actuals.length - 1),
    orphan,
    websocket: Boolean(primary.websocket),
    exception: hops.some((leg) => leg.exception),
    process,
    groupKey: [origin, hops.map(shapeOf).join("\u0003"), verdict, reason, orphan].join("\u0001"),
    haystackParts: [origin, method, path, statuses.join(" "), verdict, reason, primary.url, primary.layer, blockedLeg?.browser_message, process?.label],
    _haystack: null,
    // Built on the first text filter only: most exchanges are never searched.
    get haystack() {
      if (this._haystack === null) this._haystack = this.haystackParts.map((part) => String(part ?? "").toLowerCase()).join(" ");
      return this._haystack;
    },
  };
}
