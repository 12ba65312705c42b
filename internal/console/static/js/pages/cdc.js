// CDC connectors, as Debezium UI shows them: state and task state, slot,
// LSNs, retained WAL, lag, events/s and snapshot progress per connector;
// create and edit through a form checked by the Connect API's validate
// endpoint; pause, resume, restart, delete; ad-hoc snapshots.
import { api, connectPath } from "../api.js";
import { h, add, clear, table, badge, card, fmtNum, fmtBytes, fmtDuration, errorBox, field, select, dialog, confirmAction, toast } from "../ui.js";

const CLASS = "io.debezium.connector.postgresql.PostgresConnector";
let timer = null;

export function leave() { clearInterval(timer); timer = null; }

export async function render(ctx) {
  const [, name, sub] = ctx.route.segments;
  if (name === "new") return renderForm(ctx, null);
  if (name && sub === "edit") return renderForm(ctx, name);
  return renderList(ctx, name);
}

async function load() {
  const [rep, connectors] = await Promise.all([
    api("/api/v1/ops/cdc"),
    api(connectPath("/connectors?expand=status&expand=info")).catch(err => ({ _error: err })),
  ]);
  return { rep, connectors };
}

async function renderList(ctx, only) {
  const { root, can, href } = ctx;
  const head = h("div", { class: "page-head" }, h("h1", null, only ? only : "CDC connectors"),
    can("admin") && !only ? h("a", { class: "button primary", href: href(["cdc", "new"]), id: "new-connector" }, "New connector") : null);
  const body = h("div", { id: "cdc-body" });
  if (only) add(root, h("div", { class: "crumbs" }, h("a", { href: href(["cdc"]) }, "CDC connectors"), " / ", only));
  add(root, head, body);
  const draw = async () => {
    const { rep, connectors } = await load();
    if (ctx.stale()) return;
    clear(body);
    body.append(h("p", { class: "muted" }, `Event strategy: ${rep.strategy}.`));
    if (connectors._error) {
      body.append(h("div", { class: "alert warn" }, connectors._error.status === 404
        ? "This process does not run the cdc role, so it serves no Kafka Connect API; connectors are managed where it runs."
        : connectors._error.message));
    }
    const statuses = Object.fromEntries((rep.connectors || []).map(s => [s.name, s]));
    const names = Object.keys(connectors._error ? statuses : connectors).filter(n => !only || n === only).sort();
    if (names.length === 0) body.append(h("p", { class: "empty" }, only ? `No connector named ${only}.` : "No connectors."));
    body.append(h("div", { class: "connectors" }, names.map(n => connectorCard(ctx, n, statuses[n], connectors[n], draw))));
    if (!only) {
      body.append(h("h2", null, "Replication slots"), table(rep.slots || [], [
        { title: "Slot", render: s => h("code", null, s.slot) },
        { title: "Active", render: s => badge(s.active ? "active" : "inactive", s.active ? "ok" : "muted") },
        { title: "Connector", render: s => s.connector || h("span", { class: "muted" }, "—") },
        { title: "Confirmed flush LSN", render: s => h("code", null, s.confirmed_flush_lsn || "—") },
        { title: "Retained WAL", num: true, render: s => fmtBytes(s.retained_wal_bytes) },
        { title: "Lag", num: true, render: s => fmtBytes(s.lag_bytes) },
        { title: "Publications", render: s => (s.publications || []).join(", ") },
      ], { empty: "No logical replication slots in this database." }));
    }
  };
  await draw();
  timer = setInterval(() => { draw().catch(() => {}); }, 3000);
}

function connectorCard(ctx, name, st, info, redraw) {
  const { can, href } = ctx;
  const state = info?.status?.connector?.state || st?.state || "UNKNOWN";
  const task = info?.status?.tasks?.[0];
  const cfg = info?.info?.config || {};
  const s = st || {};
  const snapshot = s.snapshot_completed ? "completed" : s.phase === "snapshotting" ? `in progress — ${fmtNum(s.events_total)} rows so far` : "not taken";
  const act = (label, id, fn, cls) => h("button", { type: "button", class: cls, dataset: { act: id }, onclick: fn }, label);
  const call = async (method, path, msg) => {
    try { await api(connectPath(path), { method }); toast(msg); await redraw(); } catch (err) { toast(err.message, "bad"); }
  };
  const actions = can("admin") ? h("div", { class: "bar actions" },
    state === "PAUSED"
      ? act("Resume", "resume", () => call("PUT", `/connectors/${encodeURIComponent(name)}/resume`, `${name} resumed`))
      : act("Pause", "pause", () => call("PUT", `/connectors/${encodeURIComponent(name)}/pause`, `${name} paused`)),
    act("Restart", "restart", () => call("POST", `/connectors/${encodeURIComponent(name)}/restart`, `${name} restarted`)),
    h("a", { class: "button", href: href(["cdc", name, "edit"]), dataset: { act: "edit" } }, "Edit config"),
    act("Snapshot tables…", "snapshot", () => adhocSnapshot(name, cfg, redraw)),
    s.snapshot_progress?.type === "incremental" && ["running", "paused"].includes(s.snapshot_progress.state)
      ? act("Stop snapshot", "stop-snapshot", () => stopSnapshot(name, redraw)) : null,
    act("Delete", "delete", async () => {
      if (!(await confirmAction(`Delete ${name}?`, "The connector stops and its definition is removed. Its offsets stay, and its slot stays unless slot.drop.on.stop is set.", "Delete", true))) return;
      call("DELETE", `/connectors/${encodeURIComponent(name)}`, `${name} deleted`);
    }, "danger")) : null;
  return card(null,
    h("div", { class: "card-head" }, h("h3", null, h("a", { href: href(["cdc", name]) }, name)), h("span", { class: "connector-state", dataset: { state } }, badge(state))),
    h("dl", { class: "kv" },
      kv("Task 0", task ? badge(task.state) : "—"),
      kv("Active worker", info?.status?.connector?.worker_id || s.active_worker_id || "—"),
      kv("This process", s.state ? h("span", null, badge(s.state), " ", h("span", { class: "muted" }, s.worker_id || "")) : "—"),
      kv("Phase", s.phase || "—"),
      kv("Database", s.database || cfg["database.dbname"] || "—"),
      kv("Tables", cfg["table.include.list"] || "all"),
      kv("Slot", h("span", null, h("code", null, s.slot || cfg["slot.name"] || "—"), s.slot_exists ? (s.slot_active ? " (active)" : " (inactive)") : " (not created)")),
      kv("Publication", s.publication || cfg["publication.name"] || "—"),
      kv("Confirmed flush LSN", h("code", null, s.confirmed_flush_lsn || "—")),
      kv("Flushed LSN", h("code", null, s.flushed_lsn || "—")),
      kv("Current WAL", h("code", null, s.current_wal_lsn || "—")),
      kv("Retained WAL", fmtBytes(s.retained_wal_bytes)),
      kv("Lag", `${fmtBytes(s.lag_bytes)} · ${fmtDuration((s.lag_ms || 0) / 1000)}`),
      kv("Events / s", fmtNum(s.events_per_second, 1)),
      kv("Events", fmtNum(s.events_total)),
      kv("Last event", s.last_event_age_seconds >= 0 ? fmtDuration(s.last_event_age_seconds) + " ago" : "none yet"),
      kv("Snapshot", snapshot),
      s.snapshot_progress ? kv("Ad-hoc snapshot", adhocProgress(s.snapshot_progress)) : null,
      kv("Topics", (s.topics || []).join(", ") || "—")),
    s.trace || task?.trace ? h("details", { class: "trace" }, h("summary", null, "Failure"), h("pre", { class: "code" }, s.trace || task.trace)) : null,
    s.slot_error ? h("p", { class: "alert warn" }, s.slot_error) : null,
    actions);
}

function kv(k, v) { return [h("dt", null, k), h("dd", null, v)]; }

// adhocProgress shows an ad-hoc snapshot as status reports it: type and
// state, the table being read, tables and chunks done, rows read of the
// estimated total.
function adhocProgress(p) {
  const est = p.table_rows_estimate || 0;
  const pct = est > 0 ? Math.min(100, Math.round(100 * p.table_rows_read / est)) : null;
  const parts = [`${p.type} · ${p.state}`];
  if (p.current_table) parts.push(`${p.current_table} (table ${p.tables_done + 1} of ${p.tables_total})`);
  else parts.push(`${p.tables_done} of ${p.tables_total} tables`);
  if (p.type === "incremental") parts.push(`${fmtNum(p.chunks)} chunks of ${fmtNum(p.chunk_size)}`);
  if (p.current_table) parts.push(`${fmtNum(p.table_rows_read)} of ~${fmtNum(est)} rows`);
  parts.push(`${fmtNum(p.rows_read)} rows read in all`);
  if (p.rows_deduplicated) parts.push(`${fmtNum(p.rows_deduplicated)} superseded by the stream`);
  return h("span", { class: "snapshot-progress", dataset: { state: p.state, type: p.type } }, parts.join(" · "),
    pct !== null && p.state === "running" ? h("progress", { max: 100, value: pct, title: `${pct}%` }) : null);
}

async function stopSnapshot(name, redraw) {
  if (!(await confirmAction(`Stop the snapshot of ${name}?`, "The connector drops the chunk in flight and reads no more; what it emitted stays on the topics.", "Stop snapshot", true))) return;
  try {
    await api(`/api/v1/ops/cdc/connectors/${encodeURIComponent(name)}/snapshots`, { method: "DELETE" });
    toast(`Stop signal sent to ${name}`);
    await redraw();
  } catch (err) { toast(err.message, "bad"); }
}

async function adhocSnapshot(name, cfg, redraw) {
  const tables = String(cfg["table.include.list"] || "").split(",").map(s => s.trim()).filter(Boolean);
  const form = h("form", { class: "form" },
    h("p", null, "Read the chosen tables again; their rows are emitted as read (op r) events. Incremental: in chunks while streaming continues. Blocking: streaming waits until the tables are read."),
    field("Type", select("type", [["incremental", "Incremental"], ["blocking", "Blocking"]], "incremental")),
    tables.length ? h("fieldset", { class: "parts" }, h("legend", null, "Tables"),
      tables.map(t => h("label", { class: "check" }, h("input", { type: "checkbox", name: "table", value: t, checked: true }), " " + t))) : null,
    field("Other tables", h("input", { name: "more", placeholder: "public.orders, public.order_items" })));
  const v = await dialog(`Ad-hoc snapshot of ${name}`, form, [{ label: "Cancel", value: "cancel" }, { label: "Start snapshot", value: "ok", class: "primary" }]);
  if (v !== "ok") return;
  const f = new FormData(form);
  const chosen = [...f.getAll("table"), ...String(f.get("more") || "").split(",").map(s => s.trim()).filter(Boolean)];
  try {
    const res = await api(`/api/v1/ops/cdc/connectors/${encodeURIComponent(name)}/snapshots`, { method: "POST", body: { tables: chosen, type: f.get("type") } });
    toast(`Snapshot ${res.id} of ${res.tables.join(", ")} requested`);
    await redraw();
  } catch (err) {
    await dialog("Snapshot not started", errorBox(err), [{ label: "Close", value: "ok" }]);
  }
}

// Fields of the form; everything else goes to "More settings".
const FIELDS = [
  ["database.hostname", "Database host", "127.0.0.1"],
  ["database.port", "Port", "5432"],
  ["database.user", "User", "postgres"],
  ["database.password", "Password", ""],
  ["database.dbname", "Database", ""],
  ["topic.prefix", "Topic prefix", ""],
  ["table.include.list", "Tables", "public.orders"],
  ["slot.name", "Slot name", ""],
  ["publication.name", "Publication", ""],
];
const CHOICES = [
  ["snapshot.mode", "Snapshot mode", ["initial", "no_data", "when_needed"], "initial"],
  ["publication.autocreate.mode", "Publication auto-create", ["filtered", "all_tables", "disabled"], "filtered"],
  ["decimal.handling.mode", "Decimals", ["string", "precise", "double"], "string"],
  ["tombstones.on.delete", "Tombstones on delete", ["true", "false"], "true"],
];
const FIXED = new Set(["name", "connector.class", "plugin.name"]);

async function renderForm(ctx, name) {
  const { root, href, navigate, can } = ctx;
  if (!can("admin")) { add(root, h("div", { class: "alert" }, "Creating and editing connectors needs the admin role.")); return; }
  let cfg = {};
  if (name) cfg = await api(connectPath(`/connectors/${encodeURIComponent(name)}/config`));
  if (ctx.stale()) return;
  const known = new Set([...FIELDS.map(f => f[0]), ...CHOICES.map(c => c[0]), ...FIXED]);
  const extra = Object.entries(cfg).filter(([k]) => !known.has(k)).map(([k, v]) => `${k}=${v}`).join("\n");
  const status = h("div", { id: "connector-form-status" });
  const form = h("form", { class: "form card", id: "connector-form", onsubmit: e => { e.preventDefault(); save(); } },
    field("Name", h("input", { name: "name", value: name || "", required: true, disabled: !!name, placeholder: "inventory-connector" })),
    h("div", { class: "grid" },
      FIELDS.map(([k, label, def]) => field(label, h("input", { name: k, value: cfg[k] ?? (name ? "" : def), type: k.includes("password") ? "password" : "text", dataset: { key: k } }), h("code", null, k))),
      CHOICES.map(([k, label, opts, def]) => field(label, select(k, opts, cfg[k] ?? def, { dataset: { key: k } }), h("code", null, k)))),
    field("More settings", h("textarea", { name: "extra", rows: 6, value: extra, placeholder: "transforms=route\ntransforms.route.type=org.apache.kafka.connect.transforms.RegexRouter" }), "one key=value per line; any Debezium PostgreSQL connector setting"),
    h("div", { class: "bar" },
      h("button", { type: "button", id: "connector-validate", onclick: () => validate(true) }, "Validate"),
      h("button", { type: "submit", class: "primary", id: "connector-save" }, name ? "Save and restart" : "Create connector"),
      h("a", { class: "button", href: href(name ? ["cdc", name] : ["cdc"]) }, "Cancel")),
    status);
  add(root, h("div", { class: "crumbs" }, h("a", { href: href(["cdc"]) }, "CDC connectors"), " / ", name ? `${name} / edit` : "new"),
    h("h1", null, name ? `Edit ${name}` : "New connector"), form);

  function config() {
    const f = new FormData(form);
    const out = { "connector.class": CLASS, "plugin.name": "pgoutput" };
    for (const [k] of FIELDS) if (String(f.get(k) || "").trim() !== "") out[k] = String(f.get(k)).trim();
    for (const [k] of CHOICES) out[k] = f.get(k);
    for (const line of String(f.get("extra") || "").split("\n")) {
      const i = line.indexOf("=");
      if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    return out;
  }
  async function validate(report) {
    form.querySelectorAll(".field-error").forEach(e => e.remove());
    clear(status);
    const cfgNow = config();
    const res = await api(connectPath(`/connector-plugins/${CLASS}/config/validate`), { method: "PUT", body: { ...cfgNow, name: name || new FormData(form).get("name") } });
    const errors = (res.configs || []).flatMap(c => (c.value.errors || []).map(msg => ({ key: c.value.name, msg })));
    for (const e of errors) {
      const input = form.querySelector(`[data-key="${CSS.escape(e.key)}"]`);
      if (input) input.closest(".field").append(h("span", { class: "field-error" }, e.msg));
    }
    if (errors.length) {
      status.append(h("div", { class: "alert", id: "validation-errors" }, `The Connect API found ${errors.length} problem(s):`,
        h("ul", null, errors.map(e => h("li", null, e.msg)))));
    } else if (report) {
      status.append(h("div", { class: "alert ok", id: "validation-ok" }, "Configuration is valid."));
    }
    return errors.length === 0;
  }
  async function save() {
    try {
      if (!(await validate(false))) return;
      const nm = name || String(new FormData(form).get("name")).trim();
      if (name) await api(connectPath(`/connectors/${encodeURIComponent(nm)}/config`), { method: "PUT", body: config() });
      else await api(connectPath("/connectors"), { method: "POST", body: { name: nm, config: config() } });
      toast(name ? `${nm} reconfigured` : `${nm} created`);
      navigate(["cdc", nm]);
    } catch (err) {
      status.append(errorBox(err));
    }
  }
}
