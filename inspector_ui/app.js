// corstrace inspector: a live list of cross-origin exchanges streamed over the inspector's WebSocket.
// Protocol (server → page): hello, reset, lint, events, synced, dropped, stats — see corstrace/_inspector/server.py.

import { copyButton, download, formatTime, h, prose } from "./dom.js";
import { legVerdict, maxAgeOf, Store } from "./model.js";
import { buildHar, curlActual, curlPreflight, fetchSnippet, isRedacted } from "./snippets.js";

const $ = (id) => document.getElementById(id);
const CLEARED_KEY = "corstrace.cleared";
const MAX_ROWS = 1000;

const store = new Store();
const state = {
  epoch: null,
  lastSeq: null,
  version: "",
  pid: null,
  bufferSize: null,
  heartbeat: 10,
  paused: false,
  pending: [],
  selected: null, // group key
  lint: [],
  dropped: 0,
  missed: 0,
  droppedDismissed: false,
  lintDismissed: false,
  filters: { text: "", origin: "", blockedOnly: false },
  cleared: readCleared(),
  renderQueued: false,
  groups: [],
  rowEls: new Map(),
  detailSig: null,
};

function readCleared() {
  try {
    return JSON.parse(sessionStorage.getItem(CLEARED_KEY) || "null");
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Connection: connect, resume with ?since=<epoch>:<seq>, reconnect with backoff, watchdog.

let socket = null;
let retryDelay = 500;
let watchdog = null;
let failures = 0;

function setConn(stateName, text) {
  $("conn").dataset.state = stateName;
  $("conn-text").textContent = text;
}

function connect() {
  const url = new URL("ws", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.search = "";
  if (state.epoch !== null && state.lastSeq !== null) url.searchParams.set("since", `${state.epoch}:${state.lastSeq}`);
  const protocols = authProtocols();
  if (!protocols) return setConn("down", "no token — open the inspector URL from the app's startup log (it ends with #token=…)");
  setConn("connecting", failures ? "reconnecting…" : "connecting…");
  const ws = new WebSocket(url, protocols);
  socket = ws;
  ws.addEventListener("open", () => {
    failures = 0;
    retryDelay = 500;
  });
  ws.addEventListener("message", (event) => {
    armWatchdog();
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    handle(message);
  });
  ws.addEventListener("close", () => {
    if (socket !== ws) return;
    socket = null;
    clearTimeout(watchdog);
    failures++;
    const seconds = Math.round(retryDelay / 100) / 10;
    setConn("down", failures > 5 ? `disconnected — retrying in ${seconds}s (reload with the URL from the startup log if this persists)` : `disconnected — retrying in ${seconds}s`);
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 5000);
  });
}

// The token comes in the URL fragment (no server ever sees it), stays in this tab's sessionStorage (no other origin,
// another port included, can read it) and is presented only in the WebSocket handshake, as a subprotocol.
let authToken = null;
function authProtocols() {
  const fromUrl = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (fromUrl) history.replaceState(null, "", window.location.pathname + window.location.search);
  try {
    if (fromUrl) sessionStorage.setItem("corstrace.token", fromUrl);
    authToken = fromUrl || authToken || sessionStorage.getItem("corstrace.token");
  } catch {
    authToken = fromUrl || authToken;
  }
  if (!authToken) return null;
  const hex = Array.from(new TextEncoder().encode(authToken), (b) => b.toString(16).padStart(2, "0")).join("");
  return ["corstrace.v1", `corstrace.auth.${hex}`];
}
window.addEventListener("hashchange", () => window.location.reload()); // a new URL pasted into this tab

function armWatchdog() {
  clearTimeout(watchdog);
  // Three missed heartbeats: the server (or the network path) is gone even if TCP has not noticed yet.
  watchdog = setTimeout(() => socket && socket.close(), state.heartbeat * 3000 + 2000);
}

function handle(message) {
  switch (message.type) {
    case "hello":
      if (state.epoch !== null && state.epoch !== message.epoch) state.lastSeq = null;
      state.epoch = message.epoch;
      state.version = message.version || "";
      state.pid = message.pid ?? null;
      state.bufferSize = message.buffer_size ?? null;
      state.heartbeat = Number(message.heartbeat) || 10;
      setConn(state.paused ? "paused" : "live", liveText());
      armWatchdog();
      break;
    case "reset":
      if (message.reason === "gap" && message.missed) {
        state.missed += Number(message.missed) || 0;
        state.droppedDismissed = false;
      }
      state.lastSeq = null;
      break;
    case "lint":
      state.lint = Array.isArray(message.findings) ? message.findings : [];
      renderLint();
      break;
    case "events":
      receive(Array.isArray(message.events) ? message.events : []);
      break;
    case "synced":
      break;
    case "dropped":
      state.dropped += Number(message.count) || 0;
      state.droppedDismissed = false;
      renderDropped();
      break;
    case "stats":
      if (typeof message.client_dropped === "number" && message.client_dropped > state.dropped) {
        state.dropped = message.client_dropped;
        renderDropped();
      }
      break;
    default:
      break; // newer servers may send more; ignore what this page does not know
  }
  renderDropped();
}

function liveText() {
  const parts = ["live"];
  if (state.pid !== null) parts.push(`pid ${state.pid}`);
  return parts.join(" · ");
}

function receive(records) {
  for (const record of records) {
    if (typeof record.seq === "number") state.lastSeq = record.seq;
  }
  const fresh = records.filter((record) => !isCleared(record));
  if (state.paused) {
    state.pending.push(...fresh);
    renderPaused();
    return;
  }
  let changed = false;
  for (const record of fresh) changed = store.apply(record, state.epoch) || changed;
  if (changed) scheduleRender();
}

function isCleared(record) {
  const cleared = state.cleared;
  return Boolean(cleared && cleared.epoch === state.epoch && typeof record.seq === "number" && record.seq <= cleared.seq);
}

// ---------------------------------------------------------------------------------------------
// Rendering.

function scheduleRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => {
    state.renderQueued = false;
    render();
  });
}

function render() {
  renderOriginOptions();
  renderList();
  renderDetail();
  renderSummary();
}

function renderOriginOptions() {
  const select = $("origin-filter");
  const origins = store.origins();
  const current = [...select.options].slice(1).map((option) => option.value);
  if (current.join("\n") === origins.join("\n")) return;
  const keep = select.value;
  select.replaceChildren(h("option", { value: "" }, "All origins"), ...origins.map((origin) => h("option", { value: origin }, origin)));
  select.value = origins.includes(keep) ? keep : "";
}

function renderList() {
  const groups = store.rows(state.filters);
  state.groups = groups.slice(0, MAX_ROWS);
  if (state.selected !== null && !groups.some((group) => group.key === state.selected)) state.selected = null;
  const els = [];
  const keep = new Map();
  for (const group of state.groups) {
    const sig = `${group.latest.key}|${group.latest.version}|${group.count}|${group.key === state.selected}`;
    let entry = state.rowEls.get(group.key);
    if (!entry || entry.sig !== sig) entry = { el: buildRow(group), sig };
    keep.set(group.key, entry);
    els.push(entry.el);
  }
  state.rowEls = keep;
  $("rows").replaceChildren(...els);
  $("empty").hidden = store.exchanges.size > 0;
  const total = store.exchanges.size;
  const filtered = state.filters.text || state.filters.origin || state.filters.blockedOnly;
  $("shown-count").textContent = total ? (filtered ? `${groups.length} of ${store.rows(emptyFilters()).length} rows` : `${groups.length} rows`) : "";
  if (groups.length > MAX_ROWS) $("shown-count").textContent += ` (showing newest ${MAX_ROWS})`;
}

function emptyFilters() {
  return { text: "", origin: "", blockedOnly: false };
}

function buildRow(group) {
  const s = group.latest.summary;
  const selected = group.key === state.selected;
  const chips = [];
  if (s.hasPreflight) chips.push(h("span", { class: "chip chip-preflight", title: "Preceded by a preflight (OPTIONS)" }, "preflight"));
  if (s.orphan) chips.push(h("span", { class: "chip chip-orphan", title: "The browser sent the preflight but never the request" }, "no request followed"));
  if (s.websocket) chips.push(h("span", { class: "chip" }, "websocket"));
  if (s.exception) chips.push(h("span", { class: "chip chip-exception" }, "exception"));
  if (group.count > 1) chips.push(h("span", { class: "count", title: `${group.count} identical exchanges` }, `×${group.count}`));
  return h(
    "div",
    {
      class: `row verdict-${s.verdict}${selected ? " selected" : ""}`,
      role: "option",
      "aria-selected": selected ? "true" : "false",
      dataset: { key: group.key },
      onclick: () => select(group.key),
    },
    h("span", { class: "c-time mono" }, formatTime(s.ts)),
    h("span", { class: "c-origin mono", title: s.origin }, s.origin || "—"),
    h("span", { class: `c-method mono method-${s.method.toLowerCase()}` }, s.method),
    h("span", { class: "c-path mono", title: group.latest.primary.url || s.path }, h("span", { class: "path-text" }, s.path), chips),
    h("span", { class: "c-status mono" }, s.status),
    h("span", { class: "c-verdict" }, badge(s.verdict)),
    h("span", { class: "c-reason", title: s.reason }, s.reason),
  );
}

function badge(verdict) {
  return h("span", { class: `badge badge-${verdict}` }, verdict);
}

function selectedGroup() {
  return state.groups.find((group) => group.key === state.selected) || null;
}

function select(key, scroll = false) {
  state.selected = key;
  state.detailSig = null;
  for (const [groupKey, entry] of state.rowEls) {
    const on = groupKey === key;
    entry.el.classList.toggle("selected", on);
    entry.el.setAttribute("aria-selected", on ? "true" : "false");
    entry.sig = entry.sig.replace(/\|(true|false)$/, `|${on}`);
    if (on && scroll) entry.el.scrollIntoView({ block: "nearest" });
  }
  renderDetail();
}

function renderDetail() {
  const pane = $("detail");
  const group = selectedGroup();
  const sig = group ? `${group.latest.key}|${group.latest.version}|${group.count}` : null;
  if (sig === state.detailSig) return;
  state.detailSig = sig;
  if (!group) {
    pane.replaceChildren(h("div", { class: "placeholder" }, "Select an exchange to see the browser's message, the explanation and the fix. ", h("span", { class: "muted" }, "j / k to move.")));
    return;
  }
  pane.replaceChildren(...detailContent(group));
}

function section(title, ...children) {
  return h("section", { class: "d-section" }, h("h3", null, title), ...children);
}

function codeBlock(text, label = "Copy", extraClass = "") {
  return h("div", { class: `code ${extraClass}` }, copyButton(() => text, label), h("pre", null, h("code", null, text)));
}

function detailContent(group) {
  const exchange = group.latest;
  const s = exchange.summary;
  const { preflight, actual } = exchange;
  const decider = [actual, preflight].find((leg) => leg && leg.verdict === "blocked") || actual || preflight;
  const out = [];

  out.push(
    h(
      "header",
      { class: "d-head" },
      h("div", { class: "d-title" }, badge(s.verdict), h("span", { class: "mono d-method" }, s.method), h("span", { class: "mono d-url", title: exchange.primary.url }, exchange.primary.url || s.path)),
      h(
        "div",
        { class: "d-meta" },
        meta("Origin", s.origin || "—"),
        meta("Status", s.status),
        meta("Credentials", String(decider.credentials || "unknown")),
        decider.layer ? meta("Answered by", String(decider.layer)) : null,
        group.count > 1 ? meta("Repeats", `${group.count}`) : null,
        decider.healed ? meta("Healed", "yes") : null,
      ),
    ),
  );

  if (decider.browser_message) {
    out.push(section("Browser console", codeBlock(String(decider.browser_message), "Copy", "console-message")));
    if (decider.firefox_message) {
      out.push(h("details", { class: "d-firefox" }, h("summary", null, "Firefox says"), h("pre", { class: "plain" }, String(decider.firefox_message))));
    }
  }
  if (decider.explanation) out.push(section("Why", h("p", { class: "explanation" }, prose(decider.explanation))));
  if (decider.fix) out.push(section("Fix", codeBlock(String(decider.fix), "Copy fix", "fix")));

  const ifCred = decider.if_credentialed;
  if (ifCred && typeof ifCred === "object") {
    out.push(
      section(
        "If the request carries credentials",
        h("p", null, "The server cannot tell whether the page used ", h("code", null, 'credentials: "include"'), ". If it does, the browser's verdict is ", badge(String(ifCred.verdict || "blocked")), "."),
        ifCred.browser_message ? codeBlock(String(ifCred.browser_message), "Copy", "console-message") : null,
        ifCred.fix ? codeBlock(String(ifCred.fix), "Copy fix", "fix") : null,
      ),
    );
  }

  const warnings = [preflight, actual].filter(Boolean).flatMap((leg) => (Array.isArray(leg.warnings) ? leg.warnings : []));
  if (warnings.length) {
    out.push(section("Warnings", h("ul", { class: "warnings" }, warnings.map((w) => h("li", null, h("code", null, String(w.code || "warning")), " ", prose(w.message))))));
  }

  const notes = exchange.notes.filter((note) => note.message);
  if (notes.length) out.push(section("Notes", h("ul", { class: "notes" }, notes.map((note) => h("li", null, prose(note.message))))));

  for (const leg of [preflight, ...exchange.actuals]) {
    if (leg && leg.exception && typeof leg.exception === "object") {
      const exc = leg.exception;
      out.push(
        section(
          "Exception",
          h("p", { class: "exception-line" }, h("code", null, `${exc.type || "Exception"}: ${exc.message ?? ""}`), exc.where ? h("span", { class: "muted" }, ` at ${exc.where}`) : null),
          exc.traceback ? h("details", { class: "traceback", open: true }, h("summary", null, "Traceback"), h("pre", null, String(exc.traceback))) : null,
        ),
      );
    }
  }

  const legs = [preflight ? ["Preflight", preflight] : null, ...exchange.actuals.map((leg, i) => [exchange.actuals.length > 1 ? `Request ${i + 1}` : "Request", leg])].filter(Boolean);
  for (const [title, leg] of legs) out.push(legSection(title, leg));

  const repro = [];
  if (preflight) repro.push(h("h4", null, "curl — preflight"), codeBlock(curlPreflight(preflight), "Copy curl"));
  if (actual) repro.push(h("h4", null, "curl — request"), codeBlock(curlActual(actual), "Copy curl"));
  repro.push(h("h4", null, "fetch()"), codeBlock(fetchSnippet(actual, preflight), "Copy fetch"));
  out.push(section("Reproduce", ...repro));

  out.push(h("details", { class: "raw" }, h("summary", null, "Raw records"), h("pre", null, JSON.stringify([preflight, ...exchange.actuals, ...exchange.notes].filter(Boolean), null, 2))));
  return out;
}

function meta(label, value) {
  return h("span", { class: "meta" }, h("span", { class: "meta-label" }, label), h("span", { class: "meta-value mono" }, value));
}

function legSection(title, leg) {
  const decisive = new Set((Array.isArray(leg.decisive_headers) ? leg.decisive_headers : []).map((name) => String(name).toLowerCase()));
  const verdict = legVerdict(leg);
  const timing = [];
  if (leg.duration_ms != null) timing.push(`${Number(leg.duration_ms).toFixed(1)} ms`);
  timing.push(new Date((Number(leg.ts) || 0) * 1000).toLocaleString());
  const summary = h(
    "div",
    { class: "leg-head" },
    h("h3", null, title),
    badge(verdict),
    h("span", { class: "mono" }, `${leg.preflight ? "OPTIONS" : String(leg.method || "")} → ${leg.status ?? "no response"}`),
    h("span", { class: "muted" }, timing.join(" · ")),
  );
  const maxAge = leg.preflight ? h("p", { class: "muted small" }, `Chromium caches this preflight for ${Math.min(maxAgeOf(leg), 7200)} s.`) : null;
  return h(
    "section",
    { class: "d-section leg" },
    summary,
    leg.reason ? h("p", { class: "leg-reason" }, h("code", null, String(leg.reason))) : null,
    maxAge,
    h("div", { class: "headers-grid" }, headerTable("Request headers", leg.request_headers, decisive), headerTable("Response headers", leg.response_headers, decisive)),
  );
}

function headerTable(title, pairs, decisive) {
  const rows = (Array.isArray(pairs) ? pairs : []).filter((pair) => Array.isArray(pair) && pair.length >= 2);
  const body = rows.length
    ? rows.map(([name, value]) => {
        const lower = String(name).toLowerCase();
        const on = decisive.has(lower);
        return h(
          "tr",
          { class: on ? "decisive" : null, title: on ? "This header decided the verdict" : null },
          h("th", { class: "mono" }, String(name)),
          h("td", { class: `mono${isRedacted(lower, value) ? " redacted" : ""}` }, String(value)),
        );
      })
    : [h("tr", null, h("td", { class: "muted", colspan: "2" }, "none"))];
  const missing = [...decisive].filter((name) => title.startsWith("Response") && !rows.some(([n]) => String(n).toLowerCase() === name) && name.startsWith("access-control-"));
  const absent = missing.map((name) => h("tr", { class: "decisive missing", title: "Absent — and that decided the verdict" }, h("th", { class: "mono" }, name), h("td", { class: "muted" }, "(missing)")));
  return h("div", { class: "headers" }, h("h4", null, title), h("table", null, h("tbody", null, body, absent)));
}

function renderSummary() {
  const totals = store.totals(Date.now() / 1000);
  $("s-exchanges").textContent = String(totals.exchanges);
  $("s-blocked").textContent = String(totals.blocked);
  $("s-warnings").textContent = String(totals.warnings);
  $("s-ppm").textContent = String(totals.preflightsLastMinute);
  const advice = store.maxAgeAdvice();
  const banner = $("maxage-banner");
  if (!advice) {
    banner.hidden = true;
    return;
  }
  const ages = advice.ages.map((age) => `${age} s`).join(", ");
  banner.hidden = false;
  banner.replaceChildren(
    h(
      "div",
      { class: "banner-body" },
      h("strong", null, "Repeated preflights. "),
      `Browsers re-sent the same preflight ${advice.resent} times because their cache expired (Access-Control-Max-Age: ${ages}). `,
      "Setting ",
      h("code", null, `CORSMiddleware(..., max_age=${advice.cap})`),
      ` would have saved about ${advice.saved} round trips (Chromium caps the cache at ${advice.cap} s).`,
    ),
  );
}

function renderLint() {
  const banner = $("lint-banner");
  if (!state.lint.length || state.lintDismissed) {
    banner.hidden = true;
    return;
  }
  banner.hidden = false;
  const items = state.lint.map((finding) => {
    const f = finding && typeof finding === "object" ? finding : { message: String(finding) };
    const level = String(f.level || f.severity || "warning");
    return h("li", { class: `lint-${level}` }, f.code ? h("code", null, String(f.code)) : null, " ", prose(f.message), f.fix ? h("span", { class: "lint-fix" }, " Fix: ", h("code", null, String(f.fix))) : null);
  });
  banner.replaceChildren(
    h("div", { class: "banner-body" }, h("strong", null, `Configuration check: ${state.lint.length} finding${state.lint.length === 1 ? "" : "s"}`), h("ul", null, items)),
    h("button", { type: "button", class: "dismiss", title: "Dismiss", "aria-label": "Dismiss", onclick: () => ((state.lintDismissed = true), renderLint()) }, "×"),
  );
}

function renderDropped() {
  const banner = $("dropped-banner");
  if ((!state.dropped && !state.missed) || state.droppedDismissed) {
    banner.hidden = true;
    return;
  }
  const parts = [];
  if (state.dropped) parts.push(`${state.dropped} event${state.dropped === 1 ? " was" : "s were"} dropped because this tab fell behind the server.`);
  if (state.missed) parts.push(`${state.missed} event${state.missed === 1 ? " was" : "s were"} lost while disconnected (no longer in the server's buffer${state.bufferSize ? ` of ${state.bufferSize}` : ""}).`);
  banner.hidden = false;
  banner.replaceChildren(
    h("div", { class: "banner-body", id: "dropped-text" }, h("strong", null, "Events dropped. "), parts.join(" ")),
    h("button", { type: "button", class: "dismiss", title: "Dismiss", "aria-label": "Dismiss", onclick: () => ((state.droppedDismissed = true), renderDropped()) }, "×"),
  );
}

function renderPaused() {
  const note = $("paused-note");
  note.hidden = !state.paused;
  note.textContent = state.pending.length ? `Paused — ${state.pending.length} new` : "Paused";
}

// ---------------------------------------------------------------------------------------------
// Actions.

function togglePause() {
  state.paused = !state.paused;
  $("btn-pause").textContent = state.paused ? "Resume" : "Pause";
  $("btn-pause").setAttribute("aria-pressed", String(state.paused));
  if (socket) setConn(state.paused ? "paused" : "live", state.paused ? "paused" : liveText());
  if (!state.paused && state.pending.length) {
    const pending = state.pending;
    state.pending = [];
    for (const record of pending) store.apply(record, state.epoch);
    scheduleRender();
  }
  renderPaused();
}

function clearAll() {
  if (state.epoch !== null && state.lastSeq !== null) {
    // Remembered per tab, so a reload does not bring back what the user already dismissed.
    state.cleared = { epoch: state.epoch, seq: state.lastSeq };
    sessionStorage.setItem(CLEARED_KEY, JSON.stringify(state.cleared));
  }
  store.clear();
  state.pending = [];
  state.selected = null;
  state.dropped = 0;
  state.missed = 0;
  renderDropped();
  renderPaused();
  scheduleRender();
}

function exportHar() {
  const har = buildHar(store.legs(), state.version);
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  download(`corstrace-${stamp}.har`, JSON.stringify(har, null, 2), "application/json");
}

function move(delta) {
  if (!state.groups.length) return;
  let index = state.groups.findIndex((group) => group.key === state.selected);
  if (index < 0) index = delta > 0 ? -1 : state.groups.length;
  index = Math.max(0, Math.min(state.groups.length - 1, index + delta));
  select(state.groups[index].key, true);
}

function onKey(event) {
  const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement || event.target instanceof HTMLTextAreaElement;
  if (event.key === "Escape") {
    if ($("help").open) return;
    if (typing) event.target.blur();
    else if (state.selected !== null) select(null);
    return;
  }
  if (typing) {
    if (event.key === "ArrowDown" && event.target.id === "search") {
      event.preventDefault();
      event.target.blur();
      move(1);
    }
    return;
  }
  if (event.metaKey || event.ctrlKey || event.altKey) return;
  const actions = {
    j: () => move(1),
    ArrowDown: () => move(1),
    k: () => move(-1),
    ArrowUp: () => move(-1),
    g: () => move(-Infinity),
    Home: () => move(-Infinity),
    G: () => move(Infinity),
    End: () => move(Infinity),
    "/": () => $("search").focus(),
    p: togglePause,
    c: clearAll,
    e: exportHar,
    b: () => {
      $("blocked-only").checked = !$("blocked-only").checked;
      onFilter();
    },
    "?": () => $("help").showModal(),
  };
  const action = actions[event.key];
  if (action) {
    event.preventDefault();
    action();
  }
}

function onFilter() {
  state.filters = { text: $("search").value, origin: $("origin-filter").value, blockedOnly: $("blocked-only").checked };
  scheduleRender();
}

function init() {
  $("btn-pause").addEventListener("click", togglePause);
  $("btn-clear").addEventListener("click", clearAll);
  $("btn-har").addEventListener("click", exportHar);
  $("btn-help").addEventListener("click", () => $("help").showModal());
  $("help-close").addEventListener("click", () => $("help").close());
  $("search").addEventListener("input", onFilter);
  $("origin-filter").addEventListener("change", onFilter);
  $("blocked-only").addEventListener("change", onFilter);
  document.addEventListener("keydown", onKey);
  // Preflights per minute is a sliding window: refresh it even when nothing arrives.
  setInterval(renderSummary, 5000);
  render();
  connect();
}

init();
