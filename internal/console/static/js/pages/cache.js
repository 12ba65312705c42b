// Cache: status, hit ratio and size of each store as cards; evict one key
// (admin).
import { api } from "../api.js";
import { h, add, card, badge, fmtNum, fmtBytes, fmtDuration, errorBox, field, select, confirmAction, toast } from "../ui.js";

export async function render(ctx) {
  const { root, can } = ctx;
  const s = await api("/api/v1/ops/cache");
  if (ctx.stale()) return;
  const pct = r => (r * 100).toFixed(1) + " %";
  add(root, 
    h("div", { class: "page-head" }, h("h1", null, "Cache"), badge(s.status),
      h("span", { class: "muted" }, s.redis ? `Redis ${s.redis.version || ""} · ${s.redis.used_memory_human || fmtBytes(s.redis.used_memory)} used` : "")),
    s.last_error ? h("div", { class: "alert warn" }, s.last_error) : null,
    h("div", { class: "stats" },
      stat("Hit ratio (this process)", pct(s.hit_rate), `${fmtNum(s.hits)} hits · ${fmtNum(s.misses)} misses`),
      stat("Redis keyspace hit ratio", s.redis ? pct(s.redis.keyspace_hit_rate) : "—", s.redis ? `${fmtNum(s.redis.keyspace_hits)} hits` : ""),
      stat("Errors", fmtNum(s.errors), `${fmtNum(s.pending_invalidations)} invalidations pending`),
      stat("Recoveries", fmtNum(s.generation))),
    h("div", { class: "cards", id: "stores" }, (s.stores || []).map(st => card(null,
      h("div", { class: "card-head" }, h("h3", null, st.name), h("span", { class: "muted" }, st.db >= 0 ? `db ${st.db}` : st.prefix)),
      h("div", { class: "ratio" }, ring(st.hit_rate), h("div", null, h("div", { class: "stat-value" }, pct(st.hit_rate)), h("div", { class: "stat-sub" }, "hit ratio"))),
      h("dl", { class: "kv" },
        [["Keys", st.keys < 0 ? "unknown" : fmtNum(st.keys) + (st.keys_capped ? "+" : "")], ["TTL", fmtDuration(st.ttl_seconds)],
          ["Hits", fmtNum(st.hits)], ["Misses", fmtNum(st.misses)], ["Errors", fmtNum(st.errors)],
          ...(st.near ? [["Near cache", `${st.near.live ? "live" : "off"} · ${fmtNum(st.near.entries)} keys · ${fmtNum(st.near.hits)} hits`]] : [])]
          .map(([k, v]) => [h("dt", null, k), h("dd", null, v)]))))),
    can("admin") ? evictForm() : null);
}

function stat(label, value, sub) {
  return h("div", { class: "stat" }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value),
    sub ? h("div", { class: "stat-sub" }, sub) : null);
}

function ring(r) {
  const c = 2 * Math.PI * 16;
  return h("svg", { svg: true, class: "ring", viewBox: "0 0 40 40", role: "img", "aria-label": "hit ratio" },
    h("circle", { svg: true, cx: 20, cy: 20, r: 16, class: "ring-bg" }),
    h("circle", { svg: true, cx: 20, cy: 20, r: 16, class: "ring-fg", "stroke-dasharray": `${(c * (r || 0)).toFixed(1)} ${c.toFixed(1)}`, transform: "rotate(-90 20 20)" }));
}

function evictForm() {
  const out = h("div", { id: "evict-result" });
  const form = h("form", { class: "card form", id: "evict-form", onsubmit: async e => {
    e.preventDefault();
    const f = new FormData(form);
    const body = { store: f.get("store"), key: String(f.get("key")).trim() };
    if (!(await confirmAction("Evict this key?", `${body.key} is removed from the ${body.store} store; the next read loads it from PostgreSQL.`, "Evict"))) return;
    try {
      const r = await api("/api/v1/ops/cache/evict", { method: "POST", body });
      const msg = { evicted: "Evicted: the next read loads it from PostgreSQL.", missing: "Nothing was cached under that key.",
        tombstone: "The key holds an invalidation marker (a newer version was committed); it stays, and the next read loads from PostgreSQL." }[r.outcome];
      out.replaceChildren(h("p", { class: "alert ok" }, badge(r.outcome), " ", msg));
      toast(`${r.key}: ${r.outcome}`);
    } catch (err) { out.replaceChildren(errorBox(err)); }
  } },
    h("h2", null, "Evict a key"),
    h("div", { class: "grid" },
      field("Store", select("store", ["orders", "inventory", "system"], "orders")),
      field("Key", h("input", { name: "key", required: true, placeholder: "order:<id>, order:status:<id>, inventory:<sku>, flag:<name>" }))),
    h("div", { class: "bar" }, h("button", { type: "submit", class: "primary", id: "evict" }, "Evict")), out);
  return form;
}
