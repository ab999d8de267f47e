// Reproduce and export: curl commands, a fetch() snippet and a sanitised HAR file, built from recorded legs.
// Everything here is plain string building; nothing is ever interpreted as HTML.

const SENSITIVE = new Set(["cookie", "set-cookie", "authorization", "proxy-authorization"]);
// Headers the browser sets itself (or forbids scripts to set): never part of a reproduction.
const BROWSER_OWNED = new Set([
  "accept-charset", "accept-encoding", "accept-language", "access-control-request-headers",
  "access-control-request-method", "connection", "content-length", "cookie", "cookie2", "date", "dnt", "expect",
  "host", "keep-alive", "origin", "referer", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "via",
  "priority", "pragma", "cache-control",
]);

export function isRedacted(name, value) {
  return SENSITIVE.has(name.toLowerCase()) || /redacted|\*\*\*/i.test(String(value));
}

export function shellQuote(text) {
  return "'" + String(text).replace(/'/g, "'\\''") + "'";
}

function headerPairs(leg) {
  return Array.isArray(leg?.request_headers) ? leg.request_headers.filter((pair) => Array.isArray(pair) && pair.length >= 2) : [];
}

function scriptHeaders(leg) {
  const out = [];
  let redacted = false;
  for (const [name, value] of headerPairs(leg)) {
    const lower = String(name).toLowerCase();
    if (BROWSER_OWNED.has(lower) || lower.startsWith("sec-") || lower.startsWith("proxy-")) {
      if (SENSITIVE.has(lower)) redacted = true;
      continue;
    }
    if (isRedacted(lower, value)) {
      redacted = true;
      continue;
    }
    out.push([String(name), String(value)]);
  }
  return { headers: out, redacted };
}

export function curlPreflight(leg) {
  const method = leg.requested_method || "GET";
  const lines = [`curl -i -X OPTIONS ${shellQuote(leg.url || "")}`, `  -H ${shellQuote("Origin: " + (leg.origin || ""))}`];
  lines.push(`  -H ${shellQuote("Access-Control-Request-Method: " + method)}`);
  const requested = Array.isArray(leg.requested_headers) ? leg.requested_headers : [];
  if (requested.length) lines.push(`  -H ${shellQuote("Access-Control-Request-Headers: " + requested.join(","))}`);
  return lines.join(" \\\n");
}

export function curlActual(leg) {
  const { headers, redacted } = scriptHeaders(leg);
  const method = (leg.method || "GET").toUpperCase();
  const lines = [`curl -i -X ${method} ${shellQuote(leg.url || "")}`, `  -H ${shellQuote("Origin: " + (leg.origin || ""))}`];
  for (const [name, value] of headers) lines.push(`  -H ${shellQuote(name + ": " + value)}`);
  let text = lines.join(" \\\n");
  const notes = [];
  if (redacted) notes.push("# Cookie / Authorization values were redacted: add them back with -H or -b.");
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) notes.push("# The request body is not recorded: add --data-binary @body if it matters.");
  if (notes.length) text = notes.join("\n") + "\n" + text;
  return text;
}

export function fetchSnippet(actual, preflight) {
  const leg = actual || preflight || {};
  const method = (actual ? actual.method : preflight?.requested_method) || "GET";
  let headers;
  let redacted = false;
  if (actual) {
    ({ headers, redacted } = scriptHeaders(actual));
  } else {
    const requested = Array.isArray(preflight?.requested_headers) ? preflight.requested_headers : [];
    headers = requested.map((name) => [name, "…"]);
  }
  const credentials = { include: "include", omit: "omit" }[leg.credentials] || "same-origin";
  const lines = [`// Run in the DevTools console of a page on ${leg.origin || "the frontend's origin"}`];
  if (redacted) lines.push("// Cookie / Authorization values were redacted; credentials: \"include\" sends the page's cookies.");
  lines.push(`const response = await fetch(${JSON.stringify(leg.url || "")}, {`);
  lines.push(`  method: ${JSON.stringify(method.toUpperCase())},`);
  lines.push(`  mode: "cors",`);
  const credentialsNote = leg.credentials === "unknown" || !leg.credentials ? " // the app did not say; try \"include\" if it uses cookies" : "";
  lines.push(`  credentials: ${JSON.stringify(credentials)},${credentialsNote}`);
  if (headers.length) {
    lines.push("  headers: {");
    for (const [name, value] of headers) lines.push(`    ${JSON.stringify(name)}: ${JSON.stringify(value)},`);
    lines.push("  },");
  }
  if (!["GET", "HEAD"].includes(method.toUpperCase())) lines.push("  // body: …  (request bodies are not recorded)");
  lines.push("});");
  lines.push("console.log(response.status, Object.fromEntries(response.headers));");
  return lines.join("\n");
}

function harHeaders(pairs) {
  return (Array.isArray(pairs) ? pairs : [])
    .filter((pair) => Array.isArray(pair) && pair.length >= 2)
    .map(([name, value]) => ({ name: String(name), value: isRedacted(String(name), value) ? "" : String(value) }));
}

function queryString(url) {
  try {
    return [...new URL(url).searchParams].map(([name, value]) => ({ name, value }));
  } catch {
    return [];
  }
}

function harEntry(leg) {
  const started = new Date((Number(leg.ts) || 0) * 1000).toISOString();
  const duration = Math.max(0, Number(leg.duration_ms) || 0);
  return {
    startedDateTime: started,
    time: duration,
    request: {
      method: leg.preflight ? "OPTIONS" : String(leg.method || "GET"),
      url: String(leg.url || ""),
      httpVersion: "HTTP/1.1",
      cookies: [],
      headers: harHeaders(leg.request_headers),
      queryString: queryString(leg.url),
      headersSize: -1,
      bodySize: -1,
    },
    response: {
      status: Number(leg.status) || 0,
      statusText: "",
      httpVersion: "HTTP/1.1",
      cookies: [],
      headers: harHeaders(leg.response_headers),
      content: { size: -1, mimeType: "" },
      redirectURL: "",
      headersSize: -1,
      bodySize: -1,
    },
    cache: {},
    timings: { send: 0, wait: duration, receive: 0 },
    _corstrace: {
      exchange_id: leg.exchange_id ?? null,
      preflight: Boolean(leg.preflight),
      verdict: leg.verdict ?? null,
      reason: leg.reason ?? null,
      browser_message: leg.browser_message ?? null,
      count: Number(leg.count) || 1,
    },
  };
}

export function buildHar(legs, version) {
  return {
    log: {
      version: "1.2",
      creator: { name: "corstrace", version: version || "" },
      pages: [],
      entries: legs.map(harEntry),
    },
  };
}
