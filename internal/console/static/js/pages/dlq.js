// Dead letters: grouped by error fingerprint (with the topics each group
// spans), the messages with their full view, and redrive — one, a selection,
// a fingerprint or a topic — always with a dry run first.
import { api } from "../api.js";
import { h, add, table, badge, stat, card, fmtNum, timeCell, fmtTime, short, pretty, dialog, toast, errorBox, select, field } from "../ui.js";

export async function render(ctx) {
  const id = ctx.route.segments[1];
  return id ? renderOne(ctx, id) : renderList(ctx);
}

async function renderList(ctx) {
  const { root, route, navigate, href, can } = ctx;
  const p = route.params;
  const q = new URLSearchParams({ limit: "100" });
  for (const k of ["topic", "status", "fingerprint", "since", "cursor"]) if (p.get(k)) q.set(k, p.get(k));
  const data = await api("/api/v1/ops/dlq?" + q);
  if (ctx.stale()) return;
  const c = data.counts;
  const selected = new Set();
  const selCount = h("span", { id: "dlq-selected" }, "0 selected");
  const toggle = (id, on) => { if (on) selected.add(id); else selected.delete(id); selCount.textContent = `${selected.size} selected`; };
  add(root, 
    h("div", { class: "page-head" }, h("h1", null, "Dead letters")),
    h("div", { class: "stats" },
      stat("New", fmtNum(c.new), "awaiting redrive or discard"), stat("Replayed", fmtNum(c.replayed)),
      stat("Discarded", fmtNum(c.discarded)), stat("Blocked by loop guard", fmtNum(c.replay_blocked))),
    h("form", { class: "bar", id: "dlq-filter", onsubmit: e => {
      e.preventDefault();
      const f = new FormData(e.target);
      navigate(["dlq"], { topic: f.get("topic"), status: f.get("status"), fingerprint: f.get("fingerprint"), since: f.get("since") });
    } },
      h("input", { name: "topic", value: p.get("topic") || "", placeholder: "topic, e.g. ORDER_CREATED", "aria-label": "topic" }),
      select("status", [["", "any status"], ["new", "new"], ["replayed", "replayed"], ["discarded", "discarded"]], p.get("status") || ""),
      h("input", { name: "fingerprint", value: p.get("fingerprint") || "", placeholder: "fingerprint", "aria-label": "fingerprint" }),
      h("input", { name: "since", value: p.get("since") || "", placeholder: "since: 1h, 24h or a time", "aria-label": "since" }),
      h("button", { type: "submit" }, "Filter")),
    h("h2", null, "By fingerprint"),
    table(data.groups, [
      { title: "Error", render: g => h("span", null, h("strong", null, g.exception_class), h("br"), h("span", { class: "muted" }, short(g.error_pattern, 90))) },
      { title: "Topics", render: g => (g.topics || []).map(t => h("span", { class: "chip" }, t)) },
      { title: "Count", num: true, render: g => fmtNum(g.count) },
      { title: "New", num: true, render: g => fmtNum(g.new) },
      { title: "Last seen", render: g => timeCell(g.last_seen) },
      { title: "", render: g => h("span", { class: "bar" },
        h("a", { href: href(["dlq"], { fingerprint: g.fingerprint }) }, "show"),
        can("admin") && g.new ? h("button", { type: "button", class: "small", dataset: { redriveGroup: g.fingerprint },
          onclick: () => redrive(ctx, { fingerprint: g.fingerprint, all: true }, `${fmtNum(g.new)} dead letters of this error`) }, "Redrive…") : null) },
    ], { empty: "No dead letters." }),
    h("h2", null, "Messages"),
    can("admin") ? h("div", { class: "bar", id: "dlq-bulk" }, selCount,
      h("button", { type: "button", id: "dlq-redrive-selected", onclick: () => redriveIds(ctx, [...selected]) }, "Redrive selected…"),
      p.get("topic") ? h("button", { type: "button", id: "dlq-redrive-topic", onclick: () => redrive(ctx, { topic: p.get("topic"), all: true }, `every new dead letter of ${p.get("topic")}`) }, `Redrive all of ${p.get("topic")}…`) : null) : null,
    table(data.messages, [
      can("admin") ? { title: "", render: m => m.status === "new" ? h("input", { type: "checkbox", "aria-label": `select ${m.id}`, dataset: { select: m.id }, onchange: e => toggle(m.id, e.target.checked) }) : "" } : null,
      { title: "Id", render: m => h("a", { href: href(["dlq", m.id]), class: "dlq-link" }, "#" + m.id) },
      { title: "Original", render: m => h("span", null, m.original_topic, m.original_partition !== null ? ` [${m.original_partition}] @${m.original_offset}` : "") },
      { title: "Key", render: m => m.key ? h("a", { href: href(["orders", m.key, "journey"]), title: "order journey" }, short(m.key, 13)) : "" },
      { title: "Group", key: "consumer_group" },
      { title: "Error", render: m => h("span", { class: "error-text" }, short(m.exception_message, 80)) },
      { title: "Replays", num: true, key: "replay_count" },
      { title: "Status", render: m => badge(m.status) },
      { title: "Received", render: m => timeCell(m.received_at) },
    ].filter(Boolean), { empty: "No dead letters match." }),
    data.next_cursor ? h("a", { class: "button", href: href(["dlq"], { ...Object.fromEntries(p), cursor: data.next_cursor }) }, "Next page") : null);
}

function resultTable(res) {
  return h("div", { class: "replay-result" },
    h("p", null, `${res.dry_run ? "Would redrive" : "Redrove"} ${fmtNum(res.replayed)} of ${fmtNum(res.matched)}; blocked ${fmtNum(res.blocked)}, skipped ${fmtNum(res.skipped)}.`),
    table(res.items || [], [
      { title: "Id", render: i => "#" + i.id }, { title: "To topic", key: "original_topic" },
      { title: "Outcome", render: i => badge(i.outcome, i.outcome === "would_replay" ? "info" : undefined) },
      { title: "Replay count", num: true, key: "replay_count" }, { title: "Reason", key: "reason" },
    ], { empty: "Nothing matched." }));
}

// redrive runs a dry run of the selection, shows it, and redrives on
// confirmation.
async function redrive(ctx, sel, what) {
  try {
    const dry = await api("/api/v1/ops/dlq/replay", { method: "POST", body: { ...sel, dry_run: true } });
    const v = await dialog("Redrive " + what, resultTable(dry), [
      { label: "Cancel", value: "cancel" }, { label: `Redrive ${fmtNum(dry.replayed)}`, value: "ok", class: "danger" }]);
    if (v !== "ok") return;
    const res = await api("/api/v1/ops/dlq/replay", { method: "POST", body: { ...sel, dry_run: false } });
    toast(`Redrove ${fmtNum(res.replayed)} dead letter(s)`);
    ctx.navigate(ctx.route.segments, Object.fromEntries(ctx.route.params), true);
  } catch (err) {
    ctx.root.prepend(errorBox(err));
  }
}

async function redriveIds(ctx, ids) {
  if (ids.length === 0) { toast("Select dead letters first", "warn"); return; }
  try {
    const dry = await replayEach(ids, true);
    const v = await dialog(`Redrive ${ids.length} selected`, resultTable(dry), [
      { label: "Cancel", value: "cancel" }, { label: `Redrive ${fmtNum(dry.replayed)}`, value: "ok", class: "danger" }]);
    if (v !== "ok") return;
    const res = await replayEach(ids, false);
    toast(`Redrove ${fmtNum(res.replayed)} dead letter(s)`);
    ctx.navigate(ctx.route.segments, Object.fromEntries(ctx.route.params), true);
  } catch (err) {
    ctx.root.prepend(errorBox(err));
  }
}

async function replayEach(ids, dryRun) {
  const sum = { dry_run: dryRun, matched: 0, replayed: 0, blocked: 0, skipped: 0, items: [] };
  for (const id of ids) {
    const r = await api("/api/v1/ops/dlq/replay", { method: "POST", body: { id: Number(id), dry_run: dryRun } });
    for (const k of ["matched", "replayed", "blocked", "skipped"]) sum[k] += r[k];
    sum.items.push(...r.items);
  }
  return sum;
}

async function renderOne(ctx, id) {
  const { root, href, can } = ctx;
  const m = await api("/api/v1/ops/dlq/" + encodeURIComponent(id));
  if (ctx.stale()) return;
  const kv = (k, v) => [h("dt", null, k), h("dd", null, v ?? "—")];
  add(root, 
    h("div", { class: "crumbs" }, h("a", { href: href(["dlq"]) }, "Dead letters"), " / #" + m.id),
    h("div", { class: "page-head" }, h("h1", null, `Dead letter #${m.id}`), badge(m.status),
      can("admin") && m.status === "new" ? h("span", { class: "bar" },
        h("button", { type: "button", id: "dlq-redrive-one", class: "primary", onclick: () => redrive(ctx, { id: m.id }, `dead letter #${m.id}`) }, "Redrive…"),
        h("button", { type: "button", id: "dlq-discard", onclick: () => discard(ctx, m) }, "Discard…")) : null),
    h("div", { class: "cols" },
      card("Where it came from", h("dl", { class: "kv" },
        kv("Original topic", m.original_topic), kv("Partition / offset", `${m.original_partition ?? "?"} / ${m.original_offset ?? "?"}`),
        kv("Original time", fmtTime(m.original_timestamp)), kv("Consumer group", m.consumer_group),
        kv("Key", m.key ? h("a", { href: href(["orders", m.key, "journey"]) }, m.key) : "null"),
        kv("Dead-letter record", `${m.topic} [${m.partition}] @${m.offset}`), kv("Received", fmtTime(m.received_at)))),
      card("Why", h("dl", { class: "kv" },
        kv("Exception", m.exception_class), kv("Message", m.exception_message), kv("Attempts", m.attempts),
        kv("Replays", m.replay_count), kv("Loop guard", m.replay_blocked ? "blocked further replays" : "clear"),
        kv("Fingerprint", h("a", { href: href(["dlq"], { fingerprint: m.fingerprint }) }, short(m.fingerprint, 16)))))),
    card("Value", m.value_encoding ? h("p", { class: "muted" }, `shown as ${m.value_encoding}`) : null, pretty(m.value)),
    card("Headers", table(Object.entries(m.headers || {}).map(([k, v]) => ({ k, v })), [
      { title: "Header", render: r => h("code", null, r.k) }, { title: "Value", render: r => h("code", null, r.v) }])),
    m.stacktrace ? card("Error chain", h("pre", { class: "code" }, m.stacktrace)) : null,
    card("Actions", table(m.actions || [], [
      { title: "When", render: a => fmtTime(a.at) }, { title: "Action", key: "action" }, { title: "Actor", key: "actor" },
      { title: "Detail", render: a => h("code", null, JSON.stringify(a.detail)) }], { empty: "No actions yet." })));
}

async function discard(ctx, m) {
  const reason = h("input", { name: "reason", placeholder: "why it can be dropped" });
  const v = await dialog(`Discard #${m.id}?`, h("div", null, h("p", null, "The record is kept but never redriven."), field("Reason", reason)), [
    { label: "Cancel", value: "cancel" }, { label: "Discard", value: "ok", class: "danger" }]);
  if (v !== "ok") return;
  try {
    await api(`/api/v1/ops/dlq/${m.id}/discard`, { method: "POST", body: { reason: reason.value } });
    toast(`#${m.id} discarded`);
    ctx.navigate(ctx.route.segments, null, true);
  } catch (err) {
    ctx.root.prepend(errorBox(err));
  }
}

