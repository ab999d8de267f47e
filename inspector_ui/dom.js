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
