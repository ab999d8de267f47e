// Tiny DOM helpers. Strings become text nodes: traffic-derived data is never parsed as HTML.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else if (key === "text") el.textContent = String(value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Clipboard API unavailable or denied (no secure context, no focus): fall back to a hidden textarea.
    const area = h("textarea", { class: "offscreen", readonly: true });
    area.value = text;
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

export function copyButton(getText, label = "Copy") {
  const button = h("button", { type: "button", class: "copy", title: label }, label);
  button.addEventListener("click", async (event) => {
    event.stopPropagation();
    const ok = await copyText(typeof getText === "function" ? getText() : getText);
    button.textContent = ok ? "Copied" : "Copy failed";
    button.classList.toggle("copied", ok);
    setTimeout(() => {
      button.textContent = label;
      button.classList.remove("copied");
    }, 1200);
  });
  return button;
}

export function formatTime(ts) {
  const date = new Date((Number(ts) || 0) * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

export function pathOf(record) {
  if (record.path) return String(record.path);
  try {
    const url = new URL(record.url);
    return url.pathname + url.search;
  } catch {
    return String(record.url || "");
  }
}

export function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: filename, class: "offscreen" });
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// Prose from the engine marks code with `backticks`: show those spans as <code>, still as text nodes only.
export function prose(text) {
  const parts = String(text ?? "").split("`");
  return parts.map((part, index) => (index % 2 === 1 ? h("code", null, part) : document.createTextNode(part)));
}

// An origin shown so its end (the port, which is what tells local origins apart) is always visible: the head
// gets the ellipsis when the column is narrow, the tail never shrinks. The whole origin stays one text.
export function originLabel(origin) {
  const text = String(origin ?? "");
  const port = /:\d+$/.exec(text);
  const keep = Math.min(text.length, (port ? port[0].length : 0) + 6);
  const cut = text.length - keep;
  return h("span", { class: "elide-middle", title: text }, h("span", { class: "elide-head" }, text.slice(0, cut)), h("span", { class: "elide-tail" }, text.slice(cut)));
}

// CamelCase identifiers (Chromium's CorsError names) may break between their words when a column is narrow.
export function breakable(text) {
  const parts = String(text ?? "").split(/(?<=[a-z0-9])(?=[A-Z])|(?<=[_:,/])/);
  const out = [];
  parts.forEach((part, index) => {
    if (index) out.push(h("wbr"));
    out.push(document.createTextNode(part));
  });
  return out;
}
