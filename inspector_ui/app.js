// corstrace inspector: a live list of cross-origin exchanges streamed over the inspector's WebSocket.
// Protocol (server → page): hello, reset, lint, events, synced, dropped, stats — see corstrace/_inspector/server.py.

import { detailContent, badge } from "./detail.js";
import { breakable, download, formatTime, h, originLabel, prose } from "./dom.js";
import { VirtualList } from "./list.js";
import { Store } from "./model.js";
import { buildHar } from "./snippets.js";

const $ = (id) => document.getElementById(id);
const CLEARED_KEY = "corstrace.cleared";

const store = new Store();
const state = {
  epoch: null,
  lastSeq: null,
  version: "",
  pid: null,
  collector: false, // a `corstrace inspector` collector: records come from several processes
  processes: null,
  upstreamDropped: 0,
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
      state.collector = Boolean(message.collector);
      state.processes = typeof message.processes === "number" ? message.processes : null;
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
      if (typeof message.upstream_dropped === "number" && message.upstream_dropped > state.upstreamDropped) {
        state.upstreamDropped = message.upstream_dropped;
        state.droppedDismissed = false;
      }
      if (state.collector && typeof message.processes === "number" && message.processes !== state.processes) {
        state.processes = message.processes;
        if (socket) setConn(state.paused ? "paused" : "live", state.paused ? "paused" : liveText());
      }
      break;
    default:
      break; // newer servers may send more; ignore what this page does not know
  }
  renderDropped();
}

function liveText() {
  const parts = ["live"];
  if (state.collector) {
    parts.push("collector");
    if (state.processes !== null) parts.push(`${state.processes} process${state.processes === 1 ? "" : "es"}`);
  } else if (state.pid !== null) parts.push(`pid ${state.pid}`);
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
  enqueue(fresh, state.epoch);
}

// Records are applied in slices of a few milliseconds, yielding between them: a burst of thousands (a
// flood, a replayed buffer) never becomes one long task that freezes scrolling, typing or the keyboard.
const APPLY_BUDGET_MS = 8;
const incoming = []; // batches: { records, epoch, next }
const applyChannel = new MessageChannel();
let applying = false;

function enqueue(records, epoch) {
  if (!records.length) return;
  incoming.push({ records, epoch, next: 0 });
  if (!applying) {
    applying = true;
    applyChannel.port2.postMessage(null);
  }
}

function applyIncoming() {
  const deadline = performance.now() + APPLY_BUDGET_MS;
  let changed = false;
  while (incoming.length && performance.now() < deadline) {
    const batch = incoming[0];
    const end = Math.min(batch.records.length, batch.next + 16);
    for (; batch.next < end; batch.next++) changed = store.apply(batch.records[batch.next], batch.epoch) || changed;
    if (batch.next >= batch.records.length) incoming.shift();
  }
  if (changed) scheduleRender();
  if (incoming.length) applyChannel.port2.postMessage(null);
  else applying = false;
}
applyChannel.port1.onmessage = applyIncoming;

function isCleared(record) {
  const cleared = state.cleared;
  return Boolean(cleared && cleared.epoch === state.epoch && typeof record.seq === "number" && record.seq <= cleared.seq);
}

// ---------------------------------------------------------------------------------------------
// Rendering. The selection is an exchange (state.selected holds its key): its row is the group holding it,
// so it stays selected while more legs arrive and change the exchange's shape.

let list = null;

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
  const origins = store.origins();
  if (origins === state.originList) return;
  state.originList = origins;
  const select = $("origin-filter");
  const keep = select.value;
  select.replaceChildren(h("option", { value: "" }, "All origins"), ...origins.map((origin) => h("option", { value: origin }, origin)));
  select.value = origins.includes(keep) ? keep : "";
}

function filtered() {
  return Boolean(state.filters.text.trim() || state.filters.origin || state.filters.blockedOnly);
}

function renderList() {
  const groups = store.rows(state.filters);
  state.groups = groups;
  if (state.selected !== null && !store.exchanges.has(state.selected)) state.selected = null;
  state.selectedGroup = state.selected === null ? null : groups.find((group) => group.members.has(state.selected)) || null;
  list.setItems(groups, (group) => group === state.selectedGroup);
  $("empty").hidden = store.exchanges.size > 0;
  const total = store.exchanges.size;
  const rows = (n) => `${n} row${n === 1 ? "" : "s"}`;
  $("shown-count").textContent = total ? (filtered() ? `${groups.length} of ${rows(store.groups.size)}` : rows(groups.length)) : "";
}

function rowSig(group, selected) {
  const latest = group.latest;
  return `${latest.key}|${latest.version}|${group.count}|${selected}|${store.processCount() > 1}`;
}

function buildRow(group, index, selected) {
  const exchange = group.latest;
  const s = exchange.summary;
  const chips = [];
  if (s.hasPreflight) chips.push(h("span", { class: "chip chip-preflight", title: "Preceded by a preflight (OPTIONS)" }, "preflight"));
  if (s.redirects) chips.push(h("span", { class: "chip chip-redirect", title: "The browser followed redirects: every hop is in the detail pane" }, s.redirects === 1 ? "1 redirect" : `${s.redirects} redirects`));
  if (s.orphan) chips.push(h("span", { class: "chip chip-orphan", title: "The browser sent the preflight but never the request" }, "no request followed"));
  if (s.websocket) chips.push(h("span", { class: "chip" }, "websocket"));
  if (s.exception) chips.push(h("span", { class: "chip chip-exception" }, "exception"));
  // Only once records came from more than one process (a collector): which one served this exchange.
  if (s.process && store.processCount() > 1) chips.push(h("span", { class: "chip chip-process", title: `Served by ${s.process.label}` }, `pid ${s.process.pid}`));
  if (group.count > 1) chips.push(h("span", { class: "count", title: `${group.count} exchanges of this shape` }, `×${group.count}`));
  return h(
    "div",
    {
      class: `row verdict-${s.verdict}${selected ? " selected" : ""}`,
      role: "option",
      "aria-selected": selected ? "true" : "false",
      onclick: () => select(exchange.key),
    },
    h("span", { class: "c-time mono" }, formatTime(s.ts)),
    h("span", { class: "c-origin mono" }, s.origin ? originLabel(s.origin) : "—"),
    h("span", { class: `c-method mono method-${s.method.toLowerCase()}` }, s.method),
    h("span", { class: "c-path mono", title: exchange.primary.url || s.path }, h("span", { class: "path-text" }, s.path), chips),
    h("span", { class: "c-status mono", title: s.status }, s.statuses.join("→")),
    h("span", { class: "c-verdict" }, badge(s.verdict)),
    h("span", { class: "c-reason", title: s.reason }, breakable(s.reason)),
  );
}

function select(key, reveal = false) {
  state.selected = key;
  state.detailSig = null;
  renderList();
  if (reveal && state.selectedGroup) list.reveal(state.groups.indexOf(state.selectedGroup));
  renderDetail();
}

function renderDetail() {
  const pane = $("detail");
  const exchange = state.selected === null ? null : store.exchanges.get(state.selected);
  const repeats = state.selectedGroup ? state.selectedGroup.count : 1;
  if (!exchange || !exchange.summary) {
    if (state.detailSig === null && pane.dataset.empty === "yes") return;
    state.detailSig = null;
    pane.dataset.empty = "yes";
    pane.replaceChildren(h("div", { class: "placeholder" }, "Select an exchange to see the browser's message, the explanation and the fix. ", h("span", { class: "muted" }, "j / k to move.")));
    return;
  }
  // Rebuilt only when the exchange itself changed: more repeats of its shape just update the count, so a
  // developer reading (or selecting text in) the pane during a flood is not interrupted.
  const sig = `${exchange.key}|${exchange.version}|${repeats > 1}`;
  if (sig === state.detailSig) {
    const counter = document.getElementById("d-repeats");
    if (counter) counter.textContent = String(repeats);
    return;
  }
  state.detailSig = sig;
  pane.dataset.empty = "no";
  pane.replaceChildren(...detailContent(exchange, repeats, { onSelectExchange: (id) => select(`${state.epoch}/${id}`, true) }));
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
      `Browsers re-sent the same preflight ${advice.resent} times because their cache expired (cached for ${ages}). `,
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
  if ((!state.dropped && !state.missed && !state.upstreamDropped) || state.droppedDismissed) {
    banner.hidden = true;
    return;
  }
  const parts = [];
  if (state.dropped) parts.push(`${state.dropped} event${state.dropped === 1 ? " was" : "s were"} dropped because this tab fell behind the server.`);
  if (state.upstreamDropped) parts.push(`${state.upstreamDropped} event${state.upstreamDropped === 1 ? " was" : "s were"} dropped by worker processes before they reached the collector (their queue was full).`);
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
    enqueue(pending, state.epoch);
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
  incoming.length = 0;
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
  let index = state.selectedGroup ? state.groups.indexOf(state.selectedGroup) : -1;
  if (index < 0) index = delta > 0 ? -1 : state.groups.length;
  index = Math.max(0, Math.min(state.groups.length - 1, index + delta));
  select(state.groups[index].latest.key, true);
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
  list = new VirtualList($("rows"), { build: buildRow, keyOf: (group) => group.key, sigOf: rowSig });
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
