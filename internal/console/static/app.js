// TrackOps ops console: plain JavaScript over the /api/v1 endpoints.
"use strict";

const state = { token: sessionStorage.getItem("trackops.token") || "", tab: "overview" };
const $ = (sel, root = document) => root.querySelector(sel);

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function showError(msg) {
  const el = $("#error");
  el.textContent = msg || "";
  el.hidden = !msg;
}

async function api(path, opts = {}) {
  const headers = Object.assign({ "Accept": "application/json" }, opts.headers || {});
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  if (opts.body && typeof opts.body !== "string") {
    headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.body);
  }
  const resp = await fetch(path, Object.assign({}, opts, { headers }));
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!resp.ok && !(path.startsWith("/health") && resp.status === 503)) {
    const detail = data && data.detail ? data.detail : resp.statusText;
    const fields = data && data.errors ? " — " + data.errors.map(e => e.field + ": " + e.message).join("; ") : "";
    throw new Error(resp.status + " " + detail + fields);
  }
  return data;
}

function table(rows, columns) {
  if (!rows || rows.length === 0) return '<p class="muted">Nothing here.</p>';
  const head = columns.map(c => `<th>${esc(c.title || c.key)}</th>`).join("");
  const body = rows.map(r => "<tr>" + columns.map(c => {
    const v = c.render ? c.render(r) : esc(r[c.key]);
    return `<td class="${c.num ? "num" : ""}">${v}</td>`;
  }).join("") + "</tr>").join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

const badge = s => `<span class="status ${esc(s)}">${esc(s)}</span>`;

// sweeperSummary is one line about the pending-order sweeper (health
// component "sweeper") for the overview.
function sweeperSummary(h) {
  const s = (h.components || {}).sweeper;
  if (!s || !s.details) return "";
  const d = s.details, t = d.totals || {};
  return `<p id="sweeper-summary">Pending-order sweeper: ${d.active ? "active in this process" : "standby"}` +
    ` · timeout ${esc(d.timeout)} · confirmed ${esc(t.confirmed || 0)} · cancelled (TIMEOUT) ${esc(t.cancelled || 0)}` +
    ` · last pass ${esc(d.lastPass || "not yet")}${d.lastError ? " · last error " + esc(d.lastError) : ""}</p>`;
}

const views = {
  async overview() {
    const h = await api("/health");
    // /health gives anonymous callers the status alone; details are for
    // signed-in users, and are not shown before sign-in.
    const comps = !state.token ? '<p class="muted">Sign in to see each component and its details.</p>' :
      Object.entries(h.components || {}).map(([name, c]) =>
        `<div class="card"><h3>${esc(name)} ${badge(c.status)}</h3><pre>${esc(JSON.stringify(c.details || {}, null, 2))}</pre></div>`).join("");
    $("#overview").innerHTML = `<h2>Platform ${badge(h.status)}</h2>${sweeperSummary(h)}<div class="cards">${comps}</div>`;
  },
  async orders(params) {
    const q = new URLSearchParams(params || {});
    q.set("limit", "50");
    const data = await api("/api/v1/orders?" + q.toString());
    $("#orders-table").innerHTML = table(data.orders, [
      { key: "id", render: r => `<a data-order="${esc(r.id)}">${esc(r.id)}</a>` },
      { key: "customer_id", title: "customer" },
      { key: "status", render: r => badge(r.status) },
      { key: "total_amount", title: "total", num: true, render: r => esc(r.total_amount + " " + r.currency) },
      { key: "version", num: true },
      { key: "updated_at", title: "updated" },
    ]);
  },
  async orderDetail(id) {
    const [o, h] = await Promise.all([api("/api/v1/orders/" + id), api("/api/v1/orders/" + id + "/history")]);
    $("#order-detail").innerHTML = `<h3>Order ${esc(o.id)} ${badge(o.status)}</h3>` +
      table(o.items, [{ key: "sku" }, { key: "quantity", num: true }, { key: "unit_price", num: true }, { key: "line_total", num: true }]) +
      table(h.history, [{ key: "from_status", title: "from" }, { key: "to_status", title: "to", render: r => badge(r.to_status) },
        { key: "reason" }, { key: "actor" }, { key: "changed_at", title: "at" }]);
  },
  async inventory() {
    const data = await api("/api/v1/inventory?limit=100");
    $("#inventory-table").innerHTML = table(data.items || data.inventory || [], [
      { key: "sku" }, { key: "name" }, { key: "on_hand", num: true }, { key: "reserved", num: true },
      { key: "available", num: true }, { key: "version", num: true }, { key: "updated_at", title: "updated" },
    ]);
  },
  async outbox() {
    const data = await api("/api/v1/ops/outbox");
    $("#outbox").innerHTML = `<h2>Outbox</h2><pre>${esc(JSON.stringify(data, null, 2))}</pre>`;
  },
  async dlq(params) {
    const q = new URLSearchParams(params || {});
    const data = await api("/api/v1/ops/dlq?" + q.toString());
    const rows = data.messages || data.items || [];
    $("#dlq-table").innerHTML = (data.groups ? "<h3>By fingerprint</h3>" + table(data.groups, [
      { key: "fingerprint" }, { key: "count", num: true }, { key: "topic" }]) : "") + "<h3>Messages</h3>" + table(rows, [
      { key: "id" }, { key: "topic" }, { key: "exception_class", title: "error" }, { key: "exception_message", title: "message" },
      { key: "replay_count", title: "replays", num: true }, { key: "status" },
      { key: "replay", title: "", render: r => `<button type="button" data-replay="${esc(r.id)}">Replay</button>` },
    ]);
  },
  async cdc() {
    const data = await api("/api/v1/ops/cdc");
    $("#cdc").innerHTML = `<h2>Change data capture</h2><pre>${esc(JSON.stringify(data, null, 2))}</pre>`;
  },
  async kafka() {
    const [t, g] = await Promise.all([api("/api/v1/ops/topics"), api("/api/v1/ops/consumer-groups")]);
    $("#kafka").innerHTML = "<h2>Topics</h2>" + table(t.topics, [
      { key: "name" }, { key: "messages", num: true }, { key: "partitions", render: r => esc((r.partitions || []).length), num: true },
    ]) + "<h2>Consumer groups</h2>" + table(g.consumer_groups, [
      { key: "group" }, { key: "state" }, { key: "members", num: true }, { key: "total_lag", title: "lag", num: true },
      { key: "lag", title: "per partition", render: r => esc((r.lag || []).filter(l => l.lag > 0).map(l => `${l.topic}[${l.partition}]=${l.lag}`).join(", ")) },
    ]);
  },
  async cache() {
    const data = await api("/api/v1/ops/cache");
    $("#cache").innerHTML = `<h2>Cache</h2><pre>${esc(JSON.stringify(data, null, 2))}</pre>`;
  },
  async audit() {
    const data = await api("/api/v1/ops/audit?limit=100");
    const rows = data.entries || data.items || [];
    $("#audit").innerHTML = "<h2>Audit log</h2>" + table(rows, [
      { key: "at" }, { key: "actor" }, { key: "action" }, { key: "target" }, { key: "status", num: true },
    ]);
  },
};

async function show(tab, params) {
  state.tab = tab;
  document.querySelectorAll("#tabs button").forEach(b => b.classList.toggle("active", b.dataset.tab === tab));
  document.querySelectorAll("main > section").forEach(s => { s.hidden = s.id !== tab; });
  showError("");
  try {
    await views[tab](params);
  } catch (e) {
    showError(e.message);
  }
}

function setToken(token, who) {
  state.token = token;
  if (token) sessionStorage.setItem("trackops.token", token); else sessionStorage.removeItem("trackops.token");
  $("#who").textContent = who || (token ? "signed in" : "");
  $("#logout").hidden = !token;
}

document.addEventListener("DOMContentLoaded", () => {
  setToken(state.token);
  $("#tabs").addEventListener("click", e => { if (e.target.dataset.tab) show(e.target.dataset.tab); });
  $("#login").addEventListener("submit", async e => {
    e.preventDefault();
    try {
      const key = $("#apikey").value.trim();
      if (key) { setToken(key, "API key"); } else {
        const r = await api("/api/v1/auth/login", { method: "POST", body: { username: $("#username").value, password: $("#password").value } });
        setToken(r.token, $("#username").value);
      }
      $("#password").value = ""; $("#apikey").value = "";
      show(state.tab);
    } catch (err) { showError(err.message); }
  });
  $("#logout").addEventListener("click", async () => {
    try { await api("/api/v1/auth/logout", { method: "POST" }); } catch { /* the token may be gone already */ }
    setToken("");
  });
  $("#order-filter").addEventListener("submit", e => {
    e.preventDefault();
    const f = new FormData(e.target);
    const p = {};
    if (f.get("customer_id")) p.customer_id = f.get("customer_id");
    if (f.get("status")) p.status = f.get("status");
    show("orders", p);
  });
  $("#order-lookup").addEventListener("click", () => {
    const id = $("#order-filter [name=lookup]").value.trim();
    if (id) views.orderDetail(id).catch(err => showError(err.message));
  });
  $("#orders-table").addEventListener("click", e => {
    const id = e.target.dataset.order;
    if (id) views.orderDetail(id).catch(err => showError(err.message));
  });
  $("#stock-form").addEventListener("submit", async e => {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      await api("/api/v1/inventory/" + encodeURIComponent(f.get("sku")), { method: "PUT", body: { name: f.get("name") || f.get("sku"), on_hand: Number(f.get("on_hand")) } });
      show("inventory");
    } catch (err) { showError(err.message); }
  });
  $("#dlq-filter").addEventListener("submit", e => {
    e.preventDefault();
    const topic = new FormData(e.target).get("topic");
    show("dlq", topic ? { topic } : {});
  });
  $("#dlq-replay-topic").addEventListener("click", async () => {
    const f = new FormData($("#dlq-filter"));
    if (!f.get("topic")) { showError("name the dead-letter topic to replay"); return; }
    try {
      const r = await api("/api/v1/ops/dlq/replay", { method: "POST", body: { topic: f.get("topic"), all: true, dry_run: f.get("dry_run") === "on" } });
      showError(""); alert(JSON.stringify(r, null, 2)); show("dlq", { topic: f.get("topic") });
    } catch (err) { showError(err.message); }
  });
  $("#dlq-table").addEventListener("click", async e => {
    const id = e.target.dataset.replay;
    if (!id) return;
    try {
      const dry = new FormData($("#dlq-filter")).get("dry_run") === "on";
      const r = await api("/api/v1/ops/dlq/replay", { method: "POST", body: { id: id, dry_run: dry } });
      alert(JSON.stringify(r, null, 2)); show("dlq");
    } catch (err) { showError(err.message); }
  });
  show("overview");
  setInterval(() => { if (state.tab === "overview") show("overview"); }, 5000);
});
