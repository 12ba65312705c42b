// Overview: live rates with trend charts, and the health components as
// readable cards.
import { api } from "../api.js";
import { h, add, clear, badge, card, fmtNum, fmtBytes, fmtDuration, sparkline, humanKey, errorBox } from "../ui.js";

let timer = null;

export function leave() { clearInterval(timer); timer = null; }

export async function render(ctx) {
  const { root } = ctx;
  const rates = h("div", { class: "rates", id: "rates" });
  const health = h("div", { class: "cards", id: "health" });
  const head = h("div", { class: "page-head" }, h("h1", null, "Overview"), h("span", { class: "muted", id: "overview-status" }));
  add(root, head, h("h2", null, "Live rates"), rates, h("h2", null, "Health"), health);
  const refresh = async () => {
    const [ov, hl] = await Promise.allSettled([api("/api/v1/ops/overview"), api("/health", { allow: [503] })]);
    if (ctx.stale()) return;
    clear(rates).append(...(ov.status === "fulfilled" ? rateCards(ov.value) : [errorBox(ov.reason)]));
    clear(health).append(...(hl.status === "fulfilled" ? healthCards(hl.value, head) : [errorBox(hl.reason)]));
  };
  await refresh();
  timer = setInterval(() => { refresh().catch(() => {}); }, 5000);
}

const RATES = [
  { key: "orders_per_minute", title: "Orders / min", fmt: v => fmtNum(v) },
  { key: "events_per_second", title: "Events published / s", fmt: v => fmtNum(v, 1) },
  { key: "consumer_lag", title: "Consumer lag", fmt: v => fmtNum(v), warn: v => v > 1000 },
  { key: "dead_letters_per_minute", title: "New dead letters / min", fmt: v => fmtNum(v, 1), warn: v => v > 0,
    sub: s => `${fmtNum(s.dead_letters_new)} awaiting action` },
  { key: "cdc_lag_bytes", title: "CDC lag", fmt: v => (v === null || v === undefined ? "no slot" : fmtBytes(v)), warn: v => v > 64 << 20 },
  { key: "outbox_oldest_age_seconds", title: "Outbox backlog age", fmt: v => (v ? fmtDuration(v) : "empty"), warn: v => v > 30,
    sub: s => `${fmtNum(s.outbox_backlog)} unpublished` },
];

function rateCards(ov) {
  const samples = ov.samples || [];
  const last = samples[samples.length - 1] || {};
  const minutes = Math.round((samples.length * (ov.interval_seconds || 5)) / 60);
  return RATES.map(r => {
    const v = last[r.key];
    return h("section", { class: ["card", "rate", r.warn && r.warn(v) ? "warn" : null], dataset: { rate: r.key } },
      h("h3", null, r.title),
      h("div", { class: "rate-value" }, r.fmt(v)),
      r.sub ? h("div", { class: "stat-sub" }, r.sub(last)) : null,
      sparkline(samples.map(s => s[r.key] ?? null), { label: r.title + " over the last minutes" }),
      h("div", { class: "stat-sub" }, `last ${minutes || "<1"} min`));
  });
}

function healthCards(hl, head) {
  const status = head.querySelector("#overview-status");
  clear(status).append("Platform ", badge(hl.status));
  const comps = Object.entries(hl.components || {});
  if (comps.length === 0) return [h("p", { class: "empty" }, "No component details.")];
  return comps.map(([name, c]) => card(null,
    h("div", { class: "card-head" }, h("h3", null, humanKey(name)), badge(c.status)),
    details(c.details || {})));
}

function details(obj, depth = 0) {
  const rows = [];
  for (const [k, v] of Object.entries(obj)) {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      if (depth < 1) {
        rows.push(h("dt", { class: "group" }, humanKey(k)), h("dd", { class: "group" }, details(v, depth + 1)));
      } else {
        rows.push(h("dt", null, humanKey(k)), h("dd", null, inline(v)));
      }
      continue;
    }
    rows.push(h("dt", null, humanKey(k)), h("dd", null, value(k, v)));
  }
  return h("dl", { class: "kv" }, rows);
}

// inline shows a small object on one line ("lag 0 · state Stable").
function inline(obj) {
  const entries = Object.entries(obj).filter(([, x]) => x === null || typeof x !== "object");
  if (entries.length === 0 || entries.length > 5) return `${Object.keys(obj).length} entries`;
  return entries.map(([k, x]) => `${humanKey(k).toLowerCase()} ${value(k, x)}`).join(" · ");
}

function value(k, v) {
  if (v === null || v === undefined) return "—";
  if (Array.isArray(v)) {
    if (v.length === 0) return "none";
    if (v.every(x => typeof x !== "object")) {
      const shown = v.slice(0, 6).join(", ");
      return v.length > 6 ? `${shown} +${v.length - 6} more` : shown;
    }
    return `${v.length} entries`;
  }
  if (typeof v === "number") {
    if (/bytes$/i.test(k)) return fmtBytes(v);
    if (/(rate|ratio|fraction)$/i.test(k)) return (v * 100).toFixed(1) + " %";
    if (/ms$/i.test(k)) return fmtNum(v, 2) + " ms";
    if (/seconds$/i.test(k)) return fmtDuration(v);
    return fmtNum(v, 2);
  }
  if (typeof v === "boolean") return v ? "yes" : "no";
  return String(v);
}
