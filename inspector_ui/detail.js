// The detail pane of one exchange: what the browser said, why, the fix, warnings, the crash, every hop in
// order with its headers, and reproducers. Everything from traffic becomes text nodes (see dom.js).

import { breakable, copyButton, formatTime, h, pathOf, prose } from "./dom.js";
import { isStatusRedirect, legVerdict } from "./model.js";
import { curlActual, curlPreflight, fetchSnippet, fixCode, isRedacted } from "./snippets.js";
import { framesOf, packageOf } from "./traceback.js";

export function badge(verdict) {
  return h("span", { class: `badge badge-${verdict}` }, verdict);
}

function section(title, ...children) {
  return h("section", { class: "d-section" }, h("h3", null, title), ...children);
}

function codeBlock(text, label = "Copy", extraClass = "", copied = text) {
  return h("div", { class: `code ${extraClass}` }, copyButton(() => copied, label), h("pre", null, h("code", null, text)));
}

function meta(label, value, id) {
  return h("span", { class: "meta" }, h("span", { class: "meta-label" }, label), h("span", { class: "meta-value mono", id }, value));
}

function headerValue(pairs, wanted) {
  for (const pair of Array.isArray(pairs) ? pairs : []) {
    if (Array.isArray(pair) && String(pair[0]).toLowerCase() === wanted) return String(pair[1]);
  }
  return null;
}

// "Hop 2 · GET /items" for a redirected exchange, "Preflight" / "Request" otherwise.
function legTitles(exchange) {
  const titles = new Map();
  const redirected = exchange.actuals.length > 1;
  let hop = 0;
  let preflights = 0;
  for (const leg of exchange.hops) {
    if (leg.preflight) {
      preflights++;
      titles.set(leg, exchange.preflights.length > 1 ? `Preflight ${preflights}` : "Preflight");
    } else {
      hop++;
      titles.set(leg, redirected ? `Hop ${hop}` : "Request");
    }
  }
  return titles;
}

function legLine(leg) {
  const method = leg.preflight ? "OPTIONS" : String(leg.method ?? "");
  return `${method} ${pathOf(leg)}`;
}

export function detailContent(exchange, repeats, { onSelectExchange } = {}) {
  const s = exchange.summary;
  const decider = exchange.decider;
  const titles = legTitles(exchange);
  const out = [];
  const start = exchange.first || exchange.preflights[0];
  const process = exchange.hops.map((leg) => leg.process).find((p) => p && typeof p === "object");
  const initiator = exchange.hops.map((leg) => leg.initiator).find(Boolean);

  out.push(
    h(
      "header",
      { class: "d-head" },
      h("div", { class: "d-title" }, badge(s.verdict), h("span", { class: "mono d-method" }, s.method), h("span", { class: "mono d-url", title: start.url }, start.url || s.path)),
      h(
        "div",
        { class: "d-meta" },
        meta("Origin", s.origin || "—"),
        meta("Status", s.status),
        meta("Credentials", String(decider.credentials || "unknown")),
        decider.layer ? meta("Answered by", String(decider.layer)) : null,
        initiator ? meta("Initiator", String(initiator)) : null,
        process ? meta("Process", `${String(process.name ?? "?")} (pid ${String(process.pid ?? "?")})`) : null,
        repeats > 1 ? meta("Repeats", `${repeats}`, "d-repeats") : null,
        exchange.hops.some((leg) => leg.healed) ? meta("Healed", "yes") : null,
      ),
    ),
  );

  out.push(...consoleSection(decider));
  if (decider.explanation) out.push(section("Why", h("p", { class: "explanation" }, prose(decider.explanation))));
  if (decider.fix) out.push(fixSection(decider));
  const credentials = credentialsSection(exchange);
  if (credentials) out.push(credentials);

  const warnings = exchange.warnings.filter((w) => w.level === "warning");
  const notes = exchange.warnings.filter((w) => w.level === "note");
  const several = exchange.hops.length > 1;
  const item = (w) => h("li", null, h("code", null, w.code), several ? h("span", { class: "muted" }, ` (${titles.get(w.leg)})`) : null, " ", prose(w.message));
  if (warnings.length) out.push(section("Warnings", h("ul", { class: "warnings" }, warnings.map(item))));
  const noteRecords = exchange.notes.filter((note) => note.message);
  if (notes.length || noteRecords.length) {
    out.push(section("Notes", h("ul", { class: "notes" }, notes.map(item), noteRecords.map((note) => h("li", null, prose(note.message))))));
  }

  for (const leg of exchange.hops) {
    if (leg.exception && typeof leg.exception === "object") out.push(crashSection(leg.exception));
  }

  const truncated = [...new Set(exchange.hops.flatMap((leg) => (Array.isArray(leg.truncated) ? leg.truncated.map(String) : [])))];
  if (truncated.length) out.push(h("p", { class: "muted small" }, `Cut to bound memory (marked …[truncated N bytes]): ${truncated.join(", ")}.`));

  if (several) out.push(hopsSection(exchange, titles));
  for (const leg of exchange.hops) out.push(legSection(titles.get(leg), leg, exchange, onSelectExchange));
  out.push(reproduceSection(exchange));
  out.push(h("details", { class: "raw" }, h("summary", null, "Raw records"), h("pre", null, JSON.stringify([...exchange.hops, ...exchange.notes], null, 2))));
  return out;
}

function consoleSection(decider) {
  const out = [];
  if (decider.browser_message) {
    const blocks = [];
    if (decider.browser_message_xhr) {
      blocks.push(h("h4", null, "fetch()"), codeBlock(String(decider.browser_message), "Copy", "console-message"));
      blocks.push(h("h4", null, "XMLHttpRequest / axios"), codeBlock(String(decider.browser_message_xhr), "Copy", "console-message"));
    } else {
      blocks.push(codeBlock(String(decider.browser_message), "Copy", "console-message"));
    }
    out.push(section("Browser console (Chromium)", ...blocks));
  }
  const firefox = Array.isArray(decider.firefox_console) && decider.firefox_console.length ? decider.firefox_console.map(String) : decider.firefox_message ? [String(decider.firefox_message)] : [];
  if (firefox.length) {
    out.push(h("details", { class: "d-firefox", open: !decider.browser_message }, h("summary", null, firefox.length > 1 ? `Firefox says (${firefox.length} lines)` : "Firefox says"), h("pre", { class: "plain" }, firefox.join("\n"))));
  }
  return out;
}

function fixSection(leg) {
  const text = String(leg.fix);
  const code = fixCode(leg);
  const verified = leg.fix_verified === true ? h("p", { class: "verified small" }, "Verified: replayed through the real CORS layer, the whole exchange passes with this fix.") : null;
  if (code === text) return section("Fix", verified, codeBlock(text, "Copy fix", "fix"));
  return section("Fix", h("p", { class: "fix-prose" }, prose(text)), verified, codeBlock(code, "Copy fix", "fix"));
}

// `if_credentialed` only where credentials can matter; elsewhere folded, so allowed rows carry no noise.
function credentialsSection(exchange) {
  const leg = exchange.hops.find((candidate) => candidate.if_credentialed && typeof candidate.if_credentialed === "object");
  if (!leg) return null;
  const ifCred = leg.if_credentialed;
  const body = [
    h("p", null, "The server cannot tell whether the page used ", h("code", null, 'credentials: "include"'), ". If it does, the browser's verdict is ", badge(String(ifCred.verdict || "blocked")), "."),
    ifCred.browser_message ? codeBlock(String(ifCred.browser_message), "Copy", "console-message") : null,
    ifCred.fix ? codeBlock(fixCode(ifCred), "Copy fix", "fix") : null,
  ];
  if (exchange.credentialsMatter) return section("If the request carries credentials", ...body);
  return h("details", { class: "d-section d-credentials" }, h("summary", null, "If the page sent credentials (nothing here suggests it does)"), ...body);
}

function crashSection(exception) {
  const frames = framesOf(exception);
  const app = frames.filter((frame) => !frame.library);
  const library = frames.filter((frame) => frame.library);
  const frameItem = (frame, raising) =>
    h(
      "li",
      { class: raising ? "frame raising" : "frame" },
      h("div", { class: "frame-where mono" }, `${frame.file}${frame.line != null ? `:${frame.line}` : ""}`, h("span", { class: "muted" }, ` in ${frame.function}`), raising ? h("span", { class: "frame-tag" }, " raised here") : null),
      frame.code ? h("code", { class: "frame-code" }, frame.code) : null,
    );
  const lastApp = app[app.length - 1];
  const parts = [h("p", { class: "exception-line" }, h("code", null, `${exception.type || "Exception"}: ${exception.message ?? ""}`), exception.where ? h("span", { class: "muted" }, ` at ${exception.where}`) : null)];
  if (app.length) parts.push(h("h4", null, "Your code"), h("ol", { class: "frames" }, app.map((frame) => frameItem(frame, frame === lastApp && frame === frames[frames.length - 1]))));
  if (library.length) {
    const packages = [...new Set(library.map((frame) => packageOf(frame.file)))].join(", ");
    parts.push(h("details", { class: "frames-library" }, h("summary", null, `${library.length} library frame${library.length === 1 ? "" : "s"} (${packages})`), h("ol", { class: "frames" }, library.map((frame) => frameItem(frame, false)))));
  }
  if (exception.traceback) parts.push(h("details", { class: "traceback" }, h("summary", null, "Full traceback"), h("pre", null, String(exception.traceback))));
  return section("Exception", ...parts);
}

function hopsSection(exchange, titles) {
  const items = exchange.hops.map((leg) => {
    const location = isStatusRedirect(leg) ? headerValue(leg.response_headers, "location") : null;
    return h(
      "li",
      null,
      h("span", { class: "hop-title" }, titles.get(leg)),
      " ",
      h("span", { class: "mono" }, legLine(leg)),
      " → ",
      h("span", { class: "mono hop-status" }, leg.status == null ? "no response" : String(leg.status)),
      " ",
      badge(legVerdict(exchange, leg)),
      location ? h("span", { class: "muted mono" }, ` Location: ${location}`) : null,
    );
  });
  return section("Hops", h("ol", { class: "hops" }, items));
}

function legSection(title, leg, exchange, onSelectExchange) {
  const decisive = new Set((Array.isArray(leg.decisive_headers) ? leg.decisive_headers : []).map((name) => String(name).toLowerCase()));
  const timing = [];
  if (leg.duration_ms != null) timing.push(`${Number(leg.duration_ms).toFixed(1)} ms`);
  timing.push(formatTime(leg.ts));
  const head = h(
    "div",
    { class: "leg-head" },
    h("h3", null, title),
    badge(legVerdict(exchange, leg)),
    h("span", { class: "mono leg-line" }, `${legLine(leg)} → ${leg.status ?? "no response"}`),
    h("span", { class: "muted" }, timing.join(" · ")),
  );
  const lines = [];
  if (leg.reason) lines.push(h("p", { class: "leg-reason" }, h("code", null, breakable(String(leg.reason)))));
  if (leg.redirected_from) lines.push(h("p", { class: "muted small mono" }, `Redirected from ${leg.redirected_from}`));
  if (leg.preflight && typeof leg.preflight_cache_seconds === "number") {
    const seconds = leg.preflight_cache_seconds;
    lines.push(h("p", { class: "muted small" }, seconds > 0 ? `Chromium caches this preflight for ${seconds} s.` : "Chromium does not cache this preflight."));
  }
  const cached = leg.preflight_cached;
  if (cached && typeof cached === "object") {
    const link = h("button", { type: "button", class: "link", onclick: () => onSelectExchange && onSelectExchange(String(cached.exchange_id)) }, "the cached preflight");
    lines.push(h("p", { class: "muted small" }, "No preflight before this request: the browser reused ", link, ` (cached for ${Number(cached.seconds) || 0} s).`));
  }
  return h(
    "section",
    { class: "d-section leg" },
    head,
    lines,
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

function reproduceSection(exchange) {
  const repro = [];
  for (const preflight of exchange.preflights) {
    const label = exchange.preflights.length > 1 ? `curl — preflight to ${pathOf(preflight)}` : "curl — preflight";
    repro.push(h("h4", null, label), codeBlock(curlPreflight(preflight), "Copy curl"));
  }
  if (exchange.first) {
    const redirected = exchange.actuals.length > 1;
    repro.push(h("h4", null, redirected ? "curl — request, following its redirects" : "curl — request"), codeBlock(curlActual(exchange.first, exchange.actuals), "Copy curl"));
  }
  repro.push(h("h4", null, "fetch()"), codeBlock(fetchSnippet(exchange.first, exchange.preflights[0]), "Copy fetch"));
  return section("Reproduce", ...repro);
}
