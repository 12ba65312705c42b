// Orders: search by customer, status, SKU and time, with paging; one order's
// details, status changes and cancellation (operator); and its journey.
import { api } from "../api.js";
import {
  h, add, table, badge, card, fmtTime, fmtMs, timeCell, short, errorBox, field, select, confirmAction, toast,
  toLocalInput, fromLocalInput,
} from "../ui.js";

const STATUSES = ["PENDING", "CONFIRMED", "PROCESSING", "SHIPPED", "DELIVERED", "CANCELLED"];
// What an operator may move an order to (PENDING → CONFIRMED is the saga's).
const NEXT = { CONFIRMED: ["PROCESSING"], PROCESSING: ["SHIPPED"], SHIPPED: ["DELIVERED"] };
const CANCELLABLE = new Set(["PENDING", "CONFIRMED", "PROCESSING"]);

export async function render(ctx) {
  const [, id, sub] = ctx.route.segments;
  if (!id) return renderSearch(ctx);
  return renderOrder(ctx, id, sub || "details");
}

async function renderSearch(ctx) {
  const { root, route, navigate, href } = ctx;
  const p = route.params;
  const q = new URLSearchParams({ limit: p.get("limit") || "25" });
  for (const k of ["customer_id", "status", "sku", "created_from", "created_to", "cursor"]) if (p.get(k)) q.set(k, p.get(k));
  const form = h("form", { class: "search", id: "order-search", onsubmit: e => {
    e.preventDefault();
    const f = new FormData(e.target);
    navigate(["orders"], { customer_id: f.get("customer_id"), status: f.get("status"), sku: f.get("sku"),
      created_from: fromLocalInput(f.get("created_from")), created_to: fromLocalInput(f.get("created_to")), limit: f.get("limit") });
  } },
    h("div", { class: "grid" },
      field("Customer", h("input", { name: "customer_id", value: p.get("customer_id") || "" })),
      field("Status", select("status", [["", "any"], ...STATUSES], p.get("status") || "")),
      field("Has SKU", h("input", { name: "sku", value: p.get("sku") || "" })),
      field("Created from", h("input", { name: "created_from", type: "datetime-local", step: 1, value: toLocalInput(p.get("created_from")) })),
      field("Created before", h("input", { name: "created_to", type: "datetime-local", step: 1, value: toLocalInput(p.get("created_to")) })),
      field("Per page", select("limit", ["10", "25", "50", "100"], p.get("limit") || "25"))),
    h("div", { class: "bar" }, h("button", { type: "submit", class: "primary" }, "Search"),
      h("a", { class: "button", href: href(["orders"]) }, "Clear")));
  const open = h("form", { class: "bar", id: "order-open", onsubmit: e => {
    e.preventDefault();
    const id = String(new FormData(e.target).get("id")).trim();
    if (id) navigate(["orders", id]);
  } }, h("input", { name: "id", placeholder: "order id", size: 38, "aria-label": "order id" }), h("button", { type: "submit" }, "Open order"));
  add(root, h("div", { class: "page-head" }, h("h1", null, "Orders"), open), form);
  const data = await api("/api/v1/ops/orders?" + q);
  if (ctx.stale()) return;
  add(root, table(data.orders, [
    { title: "Order", render: o => h("a", { href: href(["orders", o.id]), class: "order-link", title: o.id }, short(o.id, 13)) },
    { title: "Customer", key: "customer_id" },
    { title: "Status", render: o => badge(o.status) },
    { title: "Lines", num: true, key: "lines" },
    { title: "Total", num: true, render: o => `${o.total_amount} ${o.currency}` },
    { title: "Version", num: true, key: "version" },
    { title: "Created", render: o => timeCell(o.created_at) },
    { title: "Updated", render: o => timeCell(o.updated_at) },
    { title: "", render: o => h("a", { href: href(["orders", o.id, "journey"]) }, "journey") },
  ], { empty: "No orders match." }),
  h("div", { class: "bar" },
    p.get("cursor") ? h("a", { class: "button", href: href(["orders"], { ...Object.fromEntries(p), cursor: "" }) }, "First page") : null,
    data.next_cursor ? h("a", { class: "button", id: "orders-next", href: href(["orders"], { ...Object.fromEntries(p), cursor: data.next_cursor }) }, "Next page") : null));
}

async function renderOrder(ctx, id, sub) {
  const { root, href } = ctx;
  add(root, 
    h("div", { class: "crumbs" }, h("a", { href: href(["orders"]) }, "Orders"), " / ", id),
    h("nav", { class: "tabs" },
      h("a", { href: href(["orders", id]), class: sub === "details" ? "active" : null, dataset: { tab: "details" } }, "Details"),
      h("a", { href: href(["orders", id, "journey"]), class: sub === "journey" ? "active" : null, dataset: { tab: "journey" } }, "Journey")));
  if (sub === "journey") return renderJourney(ctx, id);
  const [o, hist] = await Promise.all([api("/api/v1/orders/" + encodeURIComponent(id)), api(`/api/v1/orders/${encodeURIComponent(id)}/history`)]);
  if (ctx.stale()) return;
  add(root, 
    h("div", { class: "page-head" }, h("h1", null, "Order ", h("code", null, o.id)), badge(o.status)),
    h("div", { class: "cols" },
      card("Summary", h("dl", { class: "kv" },
        [["Customer", o.customer_id], ["Total", `${o.total_amount} ${o.currency}`], ["Version", o.version],
          ["Created", fmtTime(o.created_at)], ["Updated", fmtTime(o.updated_at)], ["Cancel reason", o.cancel_reason]]
          .map(([k, v]) => [h("dt", null, k), h("dd", null, v ?? "—")]))),
      ctx.can("operator") ? actions(ctx, o) : null),
    card("Items", table(o.items, [
      { title: "SKU", render: i => h("a", { href: href(["stock"], { q: i.sku }) }, i.sku) },
      { title: "Quantity", num: true, key: "quantity" }, { title: "Unit price", num: true, key: "unit_price" },
      { title: "Line total", num: true, key: "line_total" }])),
    card("Status history", table(hist.history, [
      { title: "When", render: r => fmtTime(r.changed_at) },
      { title: "From", render: r => r.from_status ? badge(r.from_status) : "—" },
      { title: "To", render: r => badge(r.to_status) },
      { title: "Reason", key: "reason" }, { title: "Actor", key: "actor" }, { title: "Version", num: true, key: "version" }])));
}

function actions(ctx, o) {
  const next = NEXT[o.status] || [];
  const out = h("div", { id: "order-action-result" });
  const reason = h("input", { name: "reason", placeholder: "reason (optional)", id: "order-reason" });
  const change = async to => {
    if (!(await confirmAction(`Move to ${to}?`, `Order ${o.id} goes from ${o.status} to ${to}; its event is published and consumers react.`, `Move to ${to}`))) return;
    try {
      await api(`/api/v1/orders/${o.id}/status`, { method: "PATCH", body: { status: to, reason: reason.value || undefined }, headers: { "If-Match": `"${o.version}"` } });
      toast(`Order moved to ${to}`);
      ctx.navigate(ctx.route.segments, null, true);
    } catch (err) { out.replaceChildren(errorBox(err)); }
  };
  const cancel = async () => {
    if (!(await confirmAction("Cancel this order?", `Order ${o.id} is cancelled and its reserved stock released.`, "Cancel order", true))) return;
    try {
      await api(`/api/v1/orders/${o.id}/cancel`, { method: "POST", body: { reason: reason.value || "cancelled by operator" } });
      toast("Order cancelled");
      ctx.navigate(ctx.route.segments, null, true);
    } catch (err) { out.replaceChildren(errorBox(err)); }
  };
  if (next.length === 0 && !CANCELLABLE.has(o.status)) {
    return card("Actions", h("p", { class: "muted" }, o.status === "PENDING" ? "Waiting for inventory: the saga confirms or cancels it." : `A ${o.status} order cannot change any more.`));
  }
  return card("Actions", field("Reason", reason),
    h("div", { class: "bar" },
      next.map(to => h("button", { type: "button", class: "primary", dataset: { to }, onclick: () => change(to) }, `Move to ${to}`)),
      CANCELLABLE.has(o.status) ? h("button", { type: "button", class: "danger", id: "order-cancel", onclick: cancel }, "Cancel order") : null,
      o.status === "PENDING" ? h("span", { class: "muted" }, "PENDING → CONFIRMED is the saga's, once stock is reserved.") : null),
    out);
}

const KIND_LABEL = {
  request: "API request", commit: "Commit", status: "Status", outbox: "Outbox", published: "Kafka", cdc_change: "CDC change",
  handled: "Consumer", dead_letter: "Dead letter", redrive: "Redrive", reservation: "Stock",
};

async function renderJourney(ctx, id) {
  const { root, href } = ctx;
  const j = await api(`/api/v1/orders/${encodeURIComponent(id)}/journey`);
  if (ctx.stale()) return;
  const total = j.hops.length ? j.hops[j.hops.length - 1].since_start_ms : 0;
  add(root, 
    h("div", { class: "page-head" }, h("h1", null, "Journey of ", h("code", null, j.order.id)), badge(j.order.status),
      h("span", { class: "muted" }, `${j.hops.length} hops over ${fmtMs(total)} · ${j.strategy} strategy · customer ${j.order.customer_id}`)),
    j.gaps && j.gaps.length ? h("div", { class: "alert info", id: "journey-gaps" }, h("strong", null, "Not shown: "),
      h("ul", null, j.gaps.map(g => h("li", null, g))),
      j.strategy === "cdc" ? h("a", { href: href(["topics", "orders.orders", "messages"], { from: "oldest", key: j.order.id, run: "1" }) }, "Find this order's change events in orders.orders") : null) : null,
    h("ol", { class: "timeline", id: "journey" }, j.hops.map(hop => hopView(hop, href))),
    h("h2", null, "Events"),
    table(j.events, [
      { title: "Event", render: e => h("span", null, e.type, h("br"), h("code", { class: "muted", title: e.id }, short(e.id, 13))) },
      { title: "Source", key: "source" },
      { title: "Topic / partition / offset", render: e => h("span", null, h("a", { href: href(["topics", e.topic]) }, e.topic),
        e.partition !== undefined && e.partition !== null ? ` [${e.partition}] @${e.offset}` : h("span", { class: "muted" }, " (position unknown)")) },
      { title: "Published", render: e => e.published_at ? fmtTime(e.published_at) : (e.outbox_state ? badge(e.outbox_state) : "—") },
      { title: "Handled by", render: e => e.handlings.length
        ? e.handlings.map(x => h("div", null, `${x.consumer} · ${fmtTime(x.handled_at)}${x.attempts ? ` · attempt ${x.attempts}` : ""}`))
        : h("span", { class: "muted" }, "no consumer recorded it (consumers record only events they act on)") },
      { title: "Dead letters", render: e => (e.dead_letters || []).map(d => h("div", null, h("a", { href: href(["dlq", d.id]) }, "#" + d.id), " ", badge(d.status))) },
    ]),
    h("h2", null, "Reservations"),
    table(j.reservations, [
      { title: "SKU", render: r => h("a", { href: href(["stock"], { q: r.sku }) }, r.sku) }, { title: "Quantity", num: true, key: "quantity" },
      { title: "Status", render: r => badge(r.status) }, { title: "Created", render: r => fmtTime(r.created_at) },
      { title: "Updated", render: r => fmtTime(r.updated_at) }], { empty: "No stock was reserved for this order." }));
}

// clock is the time of day with milliseconds; the full time is its title.
function clock(t) {
  const d = new Date(t);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)} UTC`;
}

function hopView(hop, href) {
  const chips = [];
  const chip = (label, v) => { if (v !== undefined && v !== null && v !== "") chips.push(h("span", { class: "chip" }, h("span", { class: "muted" }, label + " "), v)); };
  chip("actor", hop.actor);
  chip("correlation", hop.correlation_id);
  chip("request", hop.request_id && hop.request_id !== hop.correlation_id ? hop.request_id : "");
  chip("status", hop.http_status);
  if (hop.topic) chips.push(h("span", { class: "chip" }, h("span", { class: "muted" }, "topic "), h("a", { href: href(["topics", hop.topic]) }, hop.topic)));
  chip("partition", hop.partition);
  chip("offset", hop.offset);
  chip("LSN", hop.lsn);
  chip("group", hop.group && hop.group !== hop.consumer ? hop.group : "");
  chip("attempts", hop.attempts);
  chip("version", hop.version);
  chip("reason", hop.reason);
  chip("event", hop.event_id ? short(hop.event_id, 13) : "");
  if (hop.dead_letter_id) chips.push(h("a", { class: "chip", href: href(["dlq", hop.dead_letter_id]) }, `dead letter #${hop.dead_letter_id}`));
  return h("li", { class: ["hop", hop.kind], dataset: { kind: hop.kind } },
    h("div", { class: "hop-time" }, h("time", { datetime: hop.at, title: fmtTime(hop.at) }, clock(hop.at)),
      hop.since_previous_ms !== undefined ? h("span", { class: "gap" }, "+" + fmtMs(hop.since_previous_ms)) : h("span", { class: "gap" }, "start")),
    h("div", { class: "hop-body" },
      h("div", { class: "hop-title" }, h("span", { class: "kind" }, KIND_LABEL[hop.kind] || hop.kind), hop.title,
        hop.outcome ? badge(hop.outcome) : null),
      hop.error ? h("div", { class: "error-text" }, hop.error) : null,
      chips.length ? h("div", { class: "chips" }, chips) : null));
}

