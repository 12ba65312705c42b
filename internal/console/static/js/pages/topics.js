// Topics: the list with partitions, sizes and configuration; one topic's
// partitions and watermarks, configuration, and a message browser with
// filters, a bounded scan with progress and cancel, and produce.
import { api } from "../api.js";
import {
  h, add, clear, table, badge, fmtNum, fmtBytes, fmtDuration, errorBox, field, select, dialog, confirmAction, toast, pretty,
  toLocalInput, fromLocalInput, fmtTime, short,
} from "../ui.js";

let scanAbort = null;

export function leave() { if (scanAbort) scanAbort.abort(); scanAbort = null; }

export async function render(ctx) {
  const [, name, tab] = ctx.route.segments;
  if (!name) return renderList(ctx);
  return renderTopic(ctx, name, tab || "messages");
}

async function renderList(ctx) {
  const { root, route, can, navigate, href } = ctx;
  const data = await api("/api/v1/ops/topics");
  if (ctx.stale()) return;
  const q = route.params.get("q") || "";
  const internal = route.params.get("internal") === "1";
  const rows = data.topics.filter(t => (internal || !t.internal) && t.name.toLowerCase().includes(q.toLowerCase()));
  const filter = h("form", { class: "bar", id: "topic-filter", onsubmit: e => {
    e.preventDefault();
    const f = new FormData(e.target);
    navigate(["topics"], { q: f.get("q"), internal: f.get("internal") ? "1" : "" });
  } },
    h("input", { name: "q", value: q, placeholder: "filter by name", "aria-label": "filter topics by name" }),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "internal", checked: internal }), " internal topics"),
    h("button", { type: "submit" }, "Filter"));
  add(root, 
    h("div", { class: "page-head" }, h("h1", null, "Topics"),
      can("admin") ? h("button", { type: "button", class: "primary", id: "create-topic", onclick: () => createTopic(ctx) }, "Create topic") : null),
    filter,
    table(rows, [
      { title: "Name", render: t => h("a", { href: href(["topics", t.name]), class: "topic-link" }, t.name) },
      { title: "Partitions", num: true, render: t => fmtNum(t.partitions.length) },
      { title: "Replication", num: true, render: t => fmtNum(t.replication_factor) },
      { title: "Messages", num: true, render: t => fmtNum(t.messages) },
      { title: "Size", num: true, render: t => fmtBytes(t.size_bytes) },
      { title: "Retention", render: t => retention(t.config) },
      { title: "Cleanup", render: t => (t.config && t.config["cleanup.policy"]) || "delete" },
    ], { empty: "No topics match." }));
}

function retention(cfg) {
  const ms = cfg && cfg["retention.ms"];
  if (!ms) return "broker default";
  if (ms === "-1") return "forever";
  return fmtDuration(Number(ms) / 1000);
}

async function createTopic(ctx) {
  const form = h("form", { class: "form", id: "create-topic-form" },
    field("Name", h("input", { name: "name", required: true, placeholder: "e.g. billing.events" })),
    field("Partitions", h("input", { name: "partitions", type: "number", min: 1, max: 1000, value: 3 })),
    field("Replication factor", h("input", { name: "replication_factor", type: "number", min: -1, max: 16, value: -1 }), "-1: the broker's default"),
    field("Configuration", h("textarea", { name: "config", rows: 3, placeholder: "retention.ms=604800000\ncleanup.policy=delete" }), "one key=value per line"));
  const v = await dialog("Create topic", form, [{ label: "Cancel", value: "cancel" }, { label: "Create", value: "ok", class: "primary" }]);
  if (v !== "ok") return;
  const f = new FormData(form);
  try {
    const t = await api("/api/v1/ops/topics", { method: "POST", body: {
      name: String(f.get("name")).trim(), partitions: Number(f.get("partitions")), replication_factor: Number(f.get("replication_factor")),
      config: parseLines(f.get("config")) } });
    toast(`Topic ${t.name} created`);
    ctx.navigate(["topics", t.name, "partitions"]);
  } catch (err) {
    ctx.root.prepend(errorBox(err));
  }
}

function parseLines(text) {
  const out = {};
  for (const line of String(text || "").split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

async function renderTopic(ctx, name, tab) {
  const { root, href, can } = ctx;
  const t = await api("/api/v1/ops/topics/" + encodeURIComponent(name));
  if (ctx.stale()) return;
  const tabs = [["messages", "Messages"], ["partitions", "Partitions"], ["config", "Configuration"]];
  add(root, 
    h("div", { class: "crumbs" }, h("a", { href: href(["topics"]) }, "Topics"), " / ", name),
    h("div", { class: "page-head" }, h("h1", null, name),
      h("span", { class: "muted" }, `${t.partitions.length} partitions · ${fmtNum(t.messages)} messages · ${fmtBytes(t.size_bytes)}`),
      can("admin") ? h("button", { type: "button", id: "produce", onclick: () => produce(ctx, t) }, "Produce message") : null),
    h("nav", { class: "tabs" }, tabs.map(([id, label]) =>
      h("a", { href: href(["topics", name, id]), class: id === tab ? "active" : null, dataset: { tab: id } }, label))));
  if (tab === "partitions") {
    add(root, table(t.partitions, [
      { title: "Partition", num: true, key: "partition" },
      { title: "Leader", num: true, key: "leader" },
      { title: "Replicas", render: p => (p.replicas || []).join(", ") },
      { title: "In sync", render: p => (p.isr || []).join(", ") },
      { title: "Start offset", num: true, render: p => fmtNum(p.start_offset) },
      { title: "End offset", num: true, render: p => fmtNum(p.end_offset) },
      { title: "Messages", num: true, render: p => fmtNum(p.messages) },
      { title: "Size", num: true, render: p => fmtBytes(p.size_bytes) },
    ]));
  } else if (tab === "config") {
    const rows = Object.entries(t.config || {}).sort().map(([k, v]) => ({ k, v }));
    add(root, table(rows, [{ title: "Setting", render: r => h("code", null, r.k) }, { title: "Value", key: "v" }], { empty: "No configuration reported." }));
  } else {
    renderBrowser(ctx, t);
  }
}

const BROWSE_KEYS = ["partitions", "from", "offset", "timestamp", "key", "header", "json_path", "json_value", "text", "limit", "run"];

function renderBrowser(ctx, t) {
  const { root, route, navigate } = ctx;
  const p = route.params;
  const chosen = new Set((p.get("partitions") || "").split(",").filter(Boolean));
  const from = p.get("from") || "newest";
  const form = h("form", { class: "browser", id: "browse-form", onsubmit: e => {
    e.preventDefault();
    const f = new FormData(e.target);
    const parts = f.getAll("partition");
    const params = {
      partitions: parts.length === t.partitions.length ? "" : parts.join(","),
      from: f.get("from"), offset: f.get("from") === "offset" ? f.get("offset") : "",
      timestamp: f.get("from") === "timestamp" ? fromLocalInput(f.get("timestamp")) : "",
      key: f.get("key"), header: f.get("header"), json_path: f.get("json_path"), json_value: f.get("json_value"),
      text: f.get("text"), limit: f.get("limit"), run: "1",
    };
    navigate(["topics", t.name, "messages"], params);
  } },
    h("fieldset", { class: "parts" }, h("legend", null, "Partitions"),
      t.partitions.map(pp => h("label", { class: "check" },
        h("input", { type: "checkbox", name: "partition", value: pp.partition, checked: chosen.size === 0 || chosen.has(String(pp.partition)) }),
        ` ${pp.partition}`))),
    h("div", { class: "grid" },
      field("Start from", select("from", [["newest", "Newest first"], ["oldest", "Oldest"], ["offset", "Offset"], ["timestamp", "Timestamp"]], from)),
      field("Offset", h("input", { name: "offset", type: "number", min: 0, value: p.get("offset") || "" }), "with Start from: offset"),
      field("Timestamp", h("input", { name: "timestamp", type: "datetime-local", step: 1, value: toLocalInput(p.get("timestamp")) }), "with Start from: timestamp"),
      field("Key contains", h("input", { name: "key", value: p.get("key") || "" })),
      field("Header", h("input", { name: "header", value: p.get("header") || "", placeholder: "name or name=value" })),
      field("JSON field", h("input", { name: "json_path", value: p.get("json_path") || "", placeholder: "data.customer_id" })),
      field("equals", h("input", { name: "json_value", value: p.get("json_value") || "" })),
      field("Text contains", h("input", { name: "text", value: p.get("text") || "" })),
      field("Limit", h("input", { name: "limit", type: "number", min: 1, max: 500, value: p.get("limit") || 50 }))),
    h("div", { class: "bar" },
      h("button", { type: "submit", class: "primary", id: "browse-run" }, "Search"),
      h("button", { type: "button", id: "browse-cancel", disabled: true, onclick: () => scanAbort && scanAbort.abort() }, "Cancel")));
  const progress = h("div", { class: "progress", id: "browse-progress", hidden: true },
    h("div", { class: "progress-bar" }, h("div", { class: "progress-fill" })), h("span", { class: "progress-text" }));
  const results = h("div", { class: "messages", id: "browse-results" });
  add(root, form, progress, results);
  const hasQuery = BROWSE_KEYS.some(k => p.has(k));
  if (hasQuery) runScan(ctx, t, p, form, progress, results);
  else results.append(h("p", { class: "empty" }, "Pick partitions, a start and filters, then Search. The newest messages come first."));
}

async function runScan(ctx, t, p, form, progress, results, cursor = "", found = []) {
  const limit = Math.max(1, Math.min(500, Number(p.get("limit") || 50)));
  const base = new URLSearchParams();
  for (const k of BROWSE_KEYS) if (p.get(k) && k !== "run" && k !== "limit") base.set(k, p.get(k));
  if (!base.get("from")) base.set("from", "newest");
  const ctrl = new AbortController();
  scanAbort = ctrl;
  const cancel = form.querySelector("#browse-cancel");
  const run = form.querySelector("#browse-run");
  cancel.disabled = false;
  run.disabled = true;
  progress.hidden = false;
  const fill = progress.querySelector(".progress-fill");
  const text = progress.querySelector(".progress-text");
  let last = null;
  let outcome = "";
  try {
    for (;;) {
      const q = new URLSearchParams(base);
      q.set("limit", String(limit - found.length));
      if (cursor) q.set("cursor", cursor);
      last = await api(`/api/v1/ops/topics/${encodeURIComponent(t.name)}/messages?${q}`, { signal: ctrl.signal });
      found.push(...last.messages);
      const pr = last.progress;
      const pct = pr.total ? Math.round((pr.scanned / pr.total) * 100) : 100;
      fill.style.width = pct + "%"; // CSSOM, allowed by the content security policy
      text.textContent = `Scanned ${fmtNum(pr.scanned)} of ${fmtNum(pr.total)} records (${pct} %) · ${fmtNum(found.length)} found`;
      showMessages(results, found);
      if (last.done) { outcome = "done"; break; }
      if (found.length >= limit) { outcome = "limit"; break; }
      cursor = last.cursor;
    }
  } catch (err) {
    if (err.name === "AbortError") outcome = "cancelled";
    else { results.prepend(errorBox(err)); outcome = "error"; }
  } finally {
    if (scanAbort === ctrl) scanAbort = null;
    cancel.disabled = true;
    run.disabled = false;
  }
  const note = { done: "Scan complete.", limit: `Stopped at the limit of ${limit}.`, cancelled: "Cancelled.", error: "" }[outcome];
  text.textContent += note ? " — " + note : "";
  progress.dataset.state = outcome;
  if (outcome === "limit" && last && last.cursor) {
    results.append(h("button", { type: "button", id: "browse-more", onclick: e => {
      e.target.remove();
      runScan(ctx, t, new URLSearchParams({ ...Object.fromEntries(p), limit: String(found.length + limit) }), form, progress, results, last.cursor, found);
    } }, "Load more"));
  }
}

function showMessages(results, msgs) {
  clear(results);
  if (msgs.length === 0) { results.append(h("p", { class: "empty" }, "No matching messages yet.")); return; }
  results.append(...msgs.map((m, i) => messageView(m, i === 0)));
}

function messageView(m, open) {
  const key = m.key === null ? h("span", { class: "muted" }, "null") : m.key;
  return h("details", { class: "message", open, dataset: { partition: m.partition, offset: m.offset } },
    h("summary", null,
      h("span", { class: "pos" }, `P${m.partition} · #${fmtNum(m.offset)}`),
      h("time", { datetime: m.timestamp }, fmtTime(m.timestamp)),
      h("span", { class: "msg-key" }, "key ", h("code", null, key)),
      h("span", { class: "muted" }, `${fmtBytes(m.size_bytes)}`),
      m.headers.length ? h("span", { class: "chips" }, m.headers.slice(0, 4).map(hd => h("span", { class: "chip" }, `${hd.key}=${short(hd.value, 24)}`))) : null),
    h("div", { class: "message-body" },
      m.headers.length ? h("table", { class: "headers" }, h("tbody", null, m.headers.map(hd =>
        h("tr", null, h("th", null, hd.key), h("td", null, h("code", null, hd.value), hd.encoding ? h("span", { class: "muted" }, ` (${hd.encoding})`) : null))))) : null,
      m.value_encoding ? h("p", { class: "muted" }, `value shown as ${m.value_encoding}`) : null,
      pretty(m.value, m.json),
      m.truncated ? h("p", { class: "muted" }, "value truncated") : null));
}

async function produce(ctx, t) {
  const form = h("form", { class: "form", id: "produce-form" },
    field("Key", h("input", { name: "key", placeholder: "e.g. an order id" })),
    field("Value", h("textarea", { name: "value", rows: 8, placeholder: '{"hello": "world"}' })),
    field("Headers", h("textarea", { name: "headers", rows: 3, placeholder: "event_type=ORDER_CREATED" }), "one name=value per line"),
    field("Partition", select("partition", [["", "by key"], ...t.partitions.map(p => [p.partition, String(p.partition)])], "")));
  const v = await dialog(`Produce to ${t.name}`, form, [{ label: "Cancel", value: "cancel" }, { label: "Produce…", value: "ok", class: "primary" }]);
  if (v !== "ok") return;
  const f = new FormData(form);
  const body = { key: f.get("key") || null, value: f.get("value") || null, headers: parseLines(f.get("headers")) };
  if (f.get("partition") !== "") body.partition = Number(f.get("partition"));
  if (!(await confirmAction("Produce this message?", `One record goes to ${t.name} and every consumer of the topic will read it.`, "Produce", true))) return;
  try {
    const out = await api(`/api/v1/ops/topics/${encodeURIComponent(t.name)}/messages`, { method: "POST", body });
    toast(`Produced to ${out.topic} partition ${out.partition} at offset ${out.offset}`);
  } catch (err) {
    ctx.root.prepend(errorBox(err));
  }
}
