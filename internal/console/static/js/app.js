// TrackOps ops console: a small single-page app over the platform's own
// API. The URL hash is the source of truth for where the operator is —
// page, selection, filters — so every view has a link, and reload and
// back/forward keep the place.
import { api, hooks, setToken, token, ApiError } from "./api.js";
import { h, clear, errorBox, toast } from "./ui.js";
import * as overview from "./pages/overview.js";
import * as topics from "./pages/topics.js";
import * as groups from "./pages/groups.js";
import * as cdc from "./pages/cdc.js";
import * as outbox from "./pages/outbox.js";
import * as dlq from "./pages/dlq.js";
import * as orders from "./pages/orders.js";
import * as stock from "./pages/stock.js";
import * as audit from "./pages/audit.js";
import * as cache from "./pages/cache.js";

const RANK = { viewer: 1, operator: 2, admin: 3 };

// Pages in navigation order with the least role that may read them (the
// API's own rule; the API refuses anyway).
const PAGES = [
  { id: "overview", title: "Overview", role: "viewer", mod: overview },
  { id: "orders", title: "Orders", role: "viewer", mod: orders },
  { id: "stock", title: "Stock", role: "viewer", mod: stock },
  { id: "topics", title: "Topics", role: "operator", mod: topics },
  { id: "groups", title: "Consumer groups", role: "operator", mod: groups },
  { id: "cdc", title: "CDC", role: "operator", mod: cdc },
  { id: "outbox", title: "Outbox", role: "viewer", mod: outbox },
  { id: "dlq", title: "Dead letters", role: "viewer", mod: dlq },
  { id: "cache", title: "Cache", role: "operator", mod: cache },
  { id: "audit", title: "Audit", role: "admin", mod: audit },
];

const state = { user: null, current: null, renderSeq: 0 };

// can reports whether the signed-in principal holds at least role.
export function can(role) {
  return !!state.user && (RANK[state.user.role] || 0) >= (RANK[role] || 0);
}

// parseHash reads "#/topics/ORDER_CREATED/messages?from=newest".
export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?", 2);
  const segments = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { segments, params: new URLSearchParams(query || "") };
}

// href builds a hash link; params with empty values are left out.
export function href(segments, params) {
  const path = "#/" + segments.map(s => encodeURIComponent(String(s))).join("/");
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "" && v !== false) q.set(k, String(v));
  }
  const qs = q.toString();
  return qs ? path + "?" + qs : path;
}

export function navigate(segments, params, replace = false) {
  const target = href(segments, params);
  if (target === location.hash) { render(); return; }
  if (replace) { history.replaceState(null, "", target); render(); } else location.hash = target;
}

function showSignedIn() {
  const who = document.getElementById("who");
  clear(who);
  if (!state.user) {
    document.getElementById("session").hidden = true;
    return;
  }
  document.getElementById("session").hidden = false;
  who.append(h("span", { class: "who-name" }, state.user.name || state.user.id),
    h("span", { class: ["role", state.user.role] }, state.user.role));
  who.title = `${state.user.kind}: ${state.user.name} (${state.user.role})`;
}

function renderNav(activeId) {
  const nav = clear(document.getElementById("nav"));
  if (!state.user) return;
  for (const p of PAGES) {
    if (!can(p.role)) continue;
    nav.append(h("a", { href: "#/" + p.id, class: p.id === activeId ? "active" : null, dataset: { page: p.id },
      "aria-current": p.id === activeId ? "page" : null }, p.title));
  }
}

function renderSignIn(root, err) {
  document.body.classList.add("signed-out");
  clear(root).append(h("div", { class: "signin" },
    h("h1", null, "TrackOps console"),
    h("p", { class: "muted" }, "Sign in with a user, or paste an API key."),
    errorBox(err),
    h("form", { id: "signin-form", onsubmit: signIn },
      h("label", { class: "field" }, h("span", null, "Username"), h("input", { id: "username", name: "username", autocomplete: "username" })),
      h("label", { class: "field" }, h("span", null, "Password"), h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password" })),
      h("div", { class: "or" }, "or"),
      h("label", { class: "field" }, h("span", null, "API key"), h("input", { id: "apikey", name: "apikey", autocomplete: "off" })),
      h("button", { type: "submit", class: "primary", id: "signin-submit" }, "Sign in"))));
  document.getElementById("username").focus();
}

async function signIn(e) {
  e.preventDefault();
  const f = new FormData(e.target);
  const key = String(f.get("apikey") || "").trim();
  try {
    if (key) {
      setToken(key);
    } else {
      const r = await api("/api/v1/auth/login", { method: "POST", body: { username: f.get("username"), password: f.get("password") } });
      setToken(r.token);
    }
    await loadUser();
    if (!state.user) throw new ApiError(401, "the API key is not valid");
    render();
  } catch (err) {
    setToken("");
    renderSignIn(document.getElementById("main"), err);
  }
}

async function signOut() {
  try { await api("/api/v1/auth/logout", { method: "POST" }); } catch { /* the session may be gone already */ }
  setToken("");
  state.user = null;
  showSignedIn();
  render();
}

async function loadUser() {
  state.user = null;
  if (!token()) return;
  try {
    state.user = await api("/api/v1/auth/me");
  } catch (e) {
    if (e.status === 401) setToken("");
    else throw e;
  }
  showSignedIn();
}

export async function render() {
  const seq = ++state.renderSeq;
  const root = document.getElementById("main");
  if (state.current && state.current.leave) state.current.leave();
  state.current = null;
  if (!state.user) {
    renderNav(null);
    renderSignIn(root);
    return;
  }
  document.body.classList.remove("signed-out");
  const route = parseHash();
  let page = PAGES.find(p => p.id === route.segments[0]);
  if (!page) {
    navigate(["overview"], null, true);
    return;
  }
  renderNav(page.id);
  document.title = page.title + " · TrackOps";
  clear(root);
  if (!can(page.role)) {
    root.append(h("div", { class: "alert" }, `${page.title} needs the ${page.role} role; you are signed in as ${state.user.role}.`));
    return;
  }
  const ctx = {
    root, route, user: state.user, can, navigate, href,
    // stale tells a page its render was superseded (the operator moved on).
    stale: () => seq !== state.renderSeq,
  };
  state.current = page.mod;
  try {
    await page.mod.render(ctx);
  } catch (err) {
    if (seq !== state.renderSeq || err.name === "AbortError") return;
    root.append(errorBox(err));
  } finally {
    // Counts finished renders, so tests (and tools) know the page is drawn.
    if (seq === state.renderSeq) document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
  }
}

hooks.unauthorized = () => {
  setToken("");
  state.user = null;
  showSignedIn();
  toast("Your session ended; sign in again.", "warn");
  render();
};

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("signout").addEventListener("click", signOut);
  window.addEventListener("hashchange", () => render());
  try {
    await loadUser();
  } catch (err) {
    document.getElementById("main").append(errorBox(err));
    return;
  }
  if (!location.hash) history.replaceState(null, "", "#/overview");
  render();
});
