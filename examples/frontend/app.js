// The demo page: each card's button fires one classic cross-origin request and shows the outcome.
"use strict";

// config.js (served by examples/frontend.py) says where the API is; ?api=... in the URL wins.
const config = window.CORSTRACE_DEMO || {};
const params = new URLSearchParams(window.location.search);
const API_URL = (params.get("api") || config.apiUrl || "http://127.0.0.1:8000").replace(/\/+$/, "");
const INSPECTOR_URL = params.get("inspector") || config.inspectorUrl || `${API_URL}/_corstrace/`;

const jsonBody = (value) => ({
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify(value),
});

// One entry per card (data-request): the path and the fetch() options that make it "classic".
const REQUESTS = {
  "simple-get": { path: "/items", init: {} },
  "json-post": { path: "/items", init: { method: "POST", ...jsonBody({ name: "monitor", price: 199 }) } },
  put: { path: "/items/1", init: { method: "PUT", ...jsonBody({ name: "keyboard", price: 45 }) } },
  authorization: { path: "/me", init: { headers: { Authorization: "Bearer demo-token" } } },
  credentials: { path: "/session", init: { credentials: "include" } },
  crash: { path: "/crash", init: {} },
  redirect: { path: "/items/", init: {} },
};

function show(output, outcome, text) {
  output.dataset.outcome = outcome;
  output.textContent = text;
}

async function send(card) {
  const { path, init } = REQUESTS[card.dataset.request];
  const output = card.querySelector("output");
  const method = init.method || "GET";
  show(output, "pending", `${method} ${API_URL}${path} …`);
  let response;
  try {
    response = await fetch(API_URL + path, init);
  } catch (error) {
    // All the page ever learns about a CORS failure: the reason is only in the console.
    show(
      output,
      "blocked",
      `${error.name}: ${error.message} — the browser blocked it. ` +
        "Open the devtools console, or the inspector, to see why.",
    );
    return;
  }
  const body = await response.text();
  const redirected = response.redirected ? ` (redirected to ${new URL(response.url).pathname})` : "";
  const preview = body.length > 160 ? `${body.slice(0, 160)}…` : body;
  show(output, response.ok ? "ok" : "http-error", `${response.status} ${response.statusText}${redirected} ${preview}`);
}

document.getElementById("page-origin").textContent = window.location.origin;
document.getElementById("api-url").textContent = API_URL;
document.getElementById("inspector-link").href = INSPECTOR_URL;

const cards = Array.from(document.querySelectorAll("[data-request]"));
for (const card of cards) {
  card.querySelector("button").addEventListener("click", () => send(card));
}
document.getElementById("run-all").addEventListener("click", () => {
  for (const card of cards) send(card);
});
