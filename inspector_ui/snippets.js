// Reproduce and export: curl commands, a fetch() snippet and a sanitised HAR file, built from recorded legs.
//
// Every value here came from traffic and is hostile: a stranger chooses the method (h11 accepts `GET'`), the
// Host, the path and every header. What a developer copies must do exactly what it says when pasted:
// - shell: every interpolated part is one POSIX single-quoted word ('\'' for a quote), so nothing in it is
//   expanded; curl runs with --globoff so `{a,b}` / `[1-9]` in a URL are not curl globs; the URL is
//   re-serialised by the URL parser (no controls, no spaces) and must be http(s), so it never reads as an option;
//   a method that is not an RFC 9110 token refuses the snippet; a header whose name is not a token, or whose
//   value holds NUL, CR or LF (which no client sends and a shell word cannot carry), is left out and said so;
//   comments escape every control character, so a newline in traffic never ends a comment.
// - JavaScript: strings are JSON literals with every non-ASCII character, `<`, `>` and `&` escaped as \uXXXX
//   (no line terminator, no `</script>`, no template literal anywhere), and comments are built the same way.
// Nothing here is ever interpreted as HTML either: the page shows these strings as text nodes.

const SENSITIVE = new Set(["cookie", "set-cookie", "authorization", "proxy-authorization"]);
// Headers the browser sets itself (or forbids scripts to set): never part of a reproduction.
const BROWSER_OWNED = new Set([
  "accept-charset", "accept-encoding", "accept-language", "access-control-request-headers",
  "access-control-request-method", "connection", "content-length", "cookie", "cookie2", "date", "dnt", "expect",
  "host", "keep-alive", "origin", "referer", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "via",
  "priority", "pragma", "cache-control",
]);
// Methods fetch() refuses to send (it throws before any request).
const FORBIDDEN_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);
// RFC 9110 section 5.6.2: token = 1*tchar.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// What no header can carry (and a shell word cannot hold NUL at all).
const UNSENDABLE = /[\u0000\r\n]/;
// Placeholder for a value corstrace did not record: ASCII, so fetch() accepts it, and with `(`, which is a
// CORS-unsafe request-header byte, so even a safelisted name (Accept, Content-Language, Range, client hints)
// still lands in Access-Control-Request-Headers and the browser sends the same preflight.
export const PLACEHOLDER = "(placeholder)";
// What the engine writes in place of a secret (corstrace/_redact.py REDACTED).
const REDACTED_MARK = /\[redacted\]/i;

export function isRedacted(name, value) {
  return SENSITIVE.has(String(name).toLowerCase()) || /redacted|\*\*\*/i.test(String(value));
}

export function isToken(text) {
  return typeof text === "string" && TOKEN.test(text);
}

// One POSIX shell word that expands to exactly `text`. The caller guarantees there is no NUL in it.
export function shellQuote(text) {
  return "'" + String(text).replace(/'/g, "'\\''") + "'";
}

// Text safe to put after `#` (shell) or `//` (JS) on one line: every control character, line or paragraph
// separator and non-ASCII character is shown escaped, so nothing from traffic can end the comment.
export function commentText(text) {
  return String(text).replace(/[\u0000-\u001f\u007f-\uffff]/g, (ch) => {
    const code = ch.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

// A JavaScript string literal: JSON's escaping plus \uXXXX for everything outside printable ASCII and for
// `<`, `>` and `&`, so the literal is pure ASCII, holds no line terminator and cannot close a <script>.
export function jsString(text) {
  return JSON.stringify(String(text)).replace(/[\u007f-\uffff<>&]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

// Header values arrive decoded as Latin-1 (one character per byte). When those bytes were UTF-8, the text a
// shell passes to curl must be that UTF-8 text for curl to send the same bytes again.
const utf8 = typeof TextDecoder === "function" ? new TextDecoder("utf-8", { fatal: true }) : null;
function asTypedText(value) {
  if (!utf8 || !/[\u0080-\u00ff]/.test(value) || /[^\u0000-\u00ff]/.test(value)) return value;
  const bytes = Uint8Array.from(value, (ch) => ch.charCodeAt(0));
  try {
    return utf8.decode(bytes);
  } catch {
    return value;
  }
}

// The URL to reproduce, re-serialised by the WHATWG URL parser (controls, spaces, quotes in the path are
// percent-encoded), or null when it is not an http(s) URL.
export function safeUrl(url) {
  let parsed;
  try {
    parsed = new URL(String(url ?? ""));
  } catch {
    return null;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
  parsed.hash = ""; // a browser never sends the fragment
  return parsed.href;
}

function headerPairs(leg) {
  return Array.isArray(leg?.request_headers) ? leg.request_headers.filter((pair) => Array.isArray(pair) && pair.length >= 2) : [];
}

function placeholderFor(name, value) {
  const lower = name.toLowerCase();
  if (value !== undefined) {
    const scheme = /^([A-Za-z][A-Za-z0-9-]{0,19}) /.exec(String(value));
    if ((lower === "authorization" || lower === "proxy-authorization") && scheme) return `${scheme[1]} REDACTED`;
    return "REDACTED";
  }
  if (lower === "content-type") return "application/json"; // not a safelisted type: preflighted like the original
  return PLACEHOLDER;
}

// The headers a page script set on this leg, ready for a reproducer: [name, value, note] triples plus what
// was left out and why.
function scriptHeaders(leg) {
  const out = [];
  const left = [];
  let redacted = false;
  let cookies = false;
  for (const [rawName, rawValue] of headerPairs(leg)) {
    const name = String(rawName);
    const value = String(rawValue);
    const lower = name.toLowerCase();
    if (lower === "cookie") cookies = true;
    if (BROWSER_OWNED.has(lower) || lower.startsWith("sec-") || lower.startsWith("proxy-")) continue;
    if (lower === "accept" && value === "*/*") continue; // fetch()'s own default, not something the page set
    if (!isToken(name)) {
      left.push(`header ${commentText(name)}: its name is not an HTTP token`);
      continue;
    }
    if (isRedacted(lower, value) && REDACTED_MARK.test(value)) {
      redacted = true;
      out.push([name, placeholderFor(name, value)]);
      continue;
    }
    if (UNSENDABLE.test(value)) {
      left.push(`header ${name}: its value holds NUL, CR or LF, which no HTTP client sends`);
      continue;
    }
    out.push([name, value]);
  }
  return { headers: out, left, redacted, cookies };
}

function refusal(what, why) {
  return `# Cannot build ${what}: ${commentText(why)}.`;
}

// Why a leg cannot be reproduced at all, or null.
function unreproducible(method, url, origin) {
  if (!isToken(method)) return `the recorded method ${commentText(JSON.stringify(method))} is not an HTTP token`;
  if (url === null) return "the recorded URL is not an http(s) URL";
  if (UNSENDABLE.test(origin)) return "the recorded Origin holds NUL, CR or LF";
  return null;
}

function joinCurl(words, notes) {
  // One word per line for the options, `\` continuing the command: the shell joins them back.
  const lines = [];
  let line = "curl";
  for (const word of words) {
    if (word.startsWith("-H ") || word.startsWith("--url ")) {
      lines.push(line);
      line = "  " + word;
    } else {
      line += " " + word;
    }
  }
  lines.push(line);
  const text = lines.join(" \\\n");
  return notes.length ? notes.map((note) => `# ${note}`).join("\n") + "\n" + text : text;
}

// The preflight as curl sends it: OPTIONS with Origin and the Access-Control-Request-* headers.
export function curlPreflight(leg) {
  const requestedMethod = leg?.requested_method == null ? "GET" : String(leg.requested_method);
  const url = safeUrl(leg?.url);
  const origin = String(leg?.origin ?? "");
  const why = unreproducible(requestedMethod, url, origin);
  if (why) return refusal("a curl command for this preflight", why);
  const notes = [];
  const requested = [];
  for (const name of Array.isArray(leg.requested_headers) ? leg.requested_headers : []) {
    if (isToken(String(name))) requested.push(String(name));
    else notes.push(`left out: requested header ${commentText(name)}: its name is not an HTTP token`);
  }
  const words = ["-i", "-X", "OPTIONS", "-g", shellQuote(url), `-H ${shellQuote("Origin: " + origin)}`];
  words.push(`-H ${shellQuote("Access-Control-Request-Method: " + requestedMethod)}`);
  if (requested.length) words.push(`-H ${shellQuote("Access-Control-Request-Headers: " + requested.join(","))}`);
  return joinCurl(words, notes);
}

// The actual request as the page sent it. `hops` (the exchange's actual legs in order, this one first) makes a
// redirected exchange start at the original URL and follow the redirects like the browser (-L).
export function curlActual(leg, hops = []) {
  const method = String(leg?.method ?? "GET");
  const url = safeUrl(leg?.url);
  const origin = String(leg?.origin ?? "");
  const why = unreproducible(method, url, origin);
  if (why) return refusal("a curl command for this request", why);
  const { headers, left, redacted, cookies } = scriptHeaders(leg);
  const notes = [];
  const redirects = hops.length > 1;
  if (redirects) {
    const chain = hops.map((hop) => `${hop.method ?? method} ${hop.url ?? ""} -> ${hop.status ?? "no response"}`).join(", then ");
    notes.push(commentText(`The browser followed ${hops.length - 1} redirect(s): ${chain}. curl -L follows them too.`));
  }
  if (redacted) notes.push("REDACTED stands for a secret corstrace does not record: put the real value back.");
  if (cookies) notes.push("The page sent cookies (not recorded): add them with -b 'name=value'.");
  for (const item of left) notes.push(`left out: ${commentText(item)}`);
  if (!["GET", "HEAD", "OPTIONS"].includes(method.toUpperCase())) notes.push("The request body is not recorded: add --data-binary @body if it matters.");
  const words = [method === "HEAD" ? "-I" : "-i"];
  if (method !== "GET" && method !== "HEAD") words.push("-X", shellQuote(method));
  words.push("-g");
  if (redirects) words.push("-L");
  words.push(shellQuote(url), `-H ${shellQuote("Origin: " + origin)}`);
  for (const [name, value] of headers) words.push(`-H ${shellQuote(name + ": " + asTypedText(value))}`);
  return joinCurl(words, notes);
}

// A fetch() call that repeats the exchange from the page's origin: pasted into the DevTools console of a page
// on that origin, the browser sends the same preflight (if any) and the same request.
export function fetchSnippet(actual, preflight) {
  const leg = actual || preflight || {};
  const method = String((actual ? actual.method : preflight?.requested_method) ?? "GET");
  const url = safeUrl(leg.url);
  const origin = String(leg.origin ?? "");
  const why = unreproducible(method, url, origin);
  if (why) return `// Cannot build a fetch() call: ${commentText(why)}.`;
  if (FORBIDDEN_METHODS.has(method.toUpperCase())) return `// Cannot build a fetch() call: fetch() refuses the method ${commentText(method)}.`;
  let headers = [];
  let left = [];
  let redacted = false;
  let cookies = false;
  if (actual) {
    ({ headers, left, redacted, cookies } = scriptHeaders(actual));
    // fetch() takes ByteStrings: a character beyond Latin-1 (a truncation marker) would throw before sending.
    headers = headers.map(([name, value]) => [name, value.replace(/[^\u0000-\u00ff]/g, "?")]);
  } else {
    for (const name of Array.isArray(preflight?.requested_headers) ? preflight.requested_headers : []) {
      if (isToken(String(name))) headers.push([String(name), placeholderFor(String(name))]);
      else left.push(`requested header ${commentText(name)}: its name is not an HTTP token`);
    }
  }
  const credentials = { include: "include", omit: "omit", "same-origin": "same-origin" }[leg.credentials] || (cookies ? "include" : "same-origin");
  const lines = [`// Run in the DevTools console of a page on ${commentText(origin || "the frontend's origin")}`];
  if (!actual && headers.length) lines.push(`// The header values were not recorded: ${PLACEHOLDER} makes the browser send the same preflight.`);
  if (redacted) lines.push("// REDACTED stands for a secret corstrace does not record: put the real value back.");
  for (const item of left) lines.push(`// left out: ${commentText(item)}`);
  lines.push(`const response = await fetch(${jsString(url)}, {`);
  lines.push(`  method: ${jsString(method)},`);
  lines.push(`  mode: "cors",`);
  let credentialsNote = "";
  if (leg.credentials === "unknown" || !leg.credentials) {
    credentialsNote = cookies ? " // the page sent cookies" : ' // the server cannot tell; try "include" if the page uses cookies';
  }
  lines.push(`  credentials: ${jsString(credentials)},${credentialsNote}`);
  if (headers.length) {
    lines.push("  headers: {");
    for (const [name, value] of headers) lines.push(`    ${jsString(name)}: ${jsString(value)},`);
    lines.push("  },");
  }
  if (!["GET", "HEAD"].includes(method.toUpperCase())) lines.push("  // body: ...  (request bodies are not recorded)");
  lines.push("});");
  lines.push("console.log(response.status, Object.fromEntries(response.headers));");
  return lines.join("\n");
}

// What "Copy fix" copies: the code of the fix, not its prose. `fix_code` when the engine gives it; else the
// add_middleware(...) call in the text, else the `backticked` code spans, else the text itself.
export function fixCode(leg) {
  if (leg && typeof leg.fix_code === "string" && leg.fix_code.trim()) return leg.fix_code;
  const fix = String(leg?.fix ?? "");
  const call = addMiddlewareCall(fix);
  if (call) return call;
  const spans = [...fix.matchAll(/`([^`]+)`/g)].map((match) => match[1]);
  if (spans.length) return spans.join("\n");
  return fix;
}

function addMiddlewareCall(text) {
  const start = text.search(/\b(?:app\.add_middleware|CORSMiddleware)\(/);
  if (start < 0) return null;
  let depth = 0;
  let quote = null;
  for (let i = text.indexOf("(", start); i < text.length; i++) {
    const ch = text[i];
    if (quote) {
      if (ch === "\\") i++;
      else if (ch === quote) quote = null;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
    } else if (ch === "(") {
      depth++;
    } else if (ch === ")" && --depth === 0) {
      const call = text.slice(start, i + 1);
      return call.includes("...") ? null : call; // `CORSMiddleware(app, ...)` in prose is not runnable code
    }
  }
  return null;
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

function locationOf(leg) {
  for (const [name, value] of Array.isArray(leg.response_headers) ? leg.response_headers : []) {
    if (String(name).toLowerCase() === "location") return String(value);
  }
  return "";
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
      redirectURL: locationOf(leg),
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
      redirected_from: leg.redirected_from ?? null,
      count: Number(leg.repeat_count ?? leg.count) || 1,
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
