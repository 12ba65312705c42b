// Stock: search by SKU or name, with paging; one SKU's reservations; set
// stock (operator).
import { api } from "../api.js";
import { h, add, table, card, fmtNum, timeCell, fmtTime, errorBox, field, confirmAction, toast, badge } from "../ui.js";

export async function render(ctx) {
  const sku = ctx.route.segments[1];
  return sku ? renderSKU(ctx, sku) : renderList(ctx);
}

async function renderList(ctx) {
  const { root, route, navigate, href, can } = ctx;
  const p = route.params;
  const q = new URLSearchParams({ limit: "25" });
  if (p.get("q")) q.set("q", p.get("q"));
  if (p.get("cursor")) q.set("cursor", p.get("cursor"));
  add(root, h("div", { class: "page-head" }, h("h1", null, "Stock")),
    h("form", { class: "bar", id: "stock-search", onsubmit: e => { e.preventDefault(); navigate(["stock"], { q: new FormData(e.target).get("q") }); } },
      h("input", { name: "q", value: p.get("q") || "", placeholder: "SKU or name contains", "aria-label": "SKU or name" }),
      h("button", { type: "submit", class: "primary" }, "Search")));
  if (can("operator")) add(root, setForm(ctx, {}));
  const data = await api("/api/v1/ops/stock?" + q);
  if (ctx.stale()) return;
  add(root, table(data.items, [
    { title: "SKU", render: i => h("a", { href: href(["stock", i.sku]) }, i.sku) },
    { title: "Name", key: "name" },
    { title: "On hand", num: true, render: i => fmtNum(i.on_hand) },
    { title: "Reserved", num: true, render: i => fmtNum(i.reserved) },
    { title: "Available", num: true, render: i => h("span", { class: i.available === 0 ? "error-text" : null }, fmtNum(i.available)) },
    { title: "Version", num: true, key: "version" },
    { title: "Updated", render: i => timeCell(i.updated_at) },
  ], { empty: "No SKU matches." }),
  h("div", { class: "bar" },
    p.get("cursor") ? h("a", { class: "button", href: href(["stock"], { q: p.get("q") }) }, "First page") : null,
    data.next_cursor ? h("a", { class: "button", href: href(["stock"], { q: p.get("q"), cursor: data.next_cursor }) }, "Next page") : null));
}

function setForm(ctx, item) {
  const out = h("div", { id: "stock-result" });
  const form = h("form", { class: "card form", id: "stock-form", onsubmit: async e => {
    e.preventDefault();
    const f = new FormData(form);
    const sku = String(f.get("sku")).trim();
    const onHand = Number(f.get("on_hand"));
    if (!(await confirmAction(`Set stock of ${sku}?`, `On hand becomes ${fmtNum(onHand)}; the change is recorded in the stock ledger.`, "Set stock"))) return;
    try {
      const it = await api("/api/v1/inventory/" + encodeURIComponent(sku), { method: "PUT", body: { name: String(f.get("name") || sku), on_hand: onHand } });
      toast(`${it.sku}: ${fmtNum(it.on_hand)} on hand, ${fmtNum(it.available)} available`);
      ctx.navigate(ctx.route.segments, Object.fromEntries(ctx.route.params), true);
    } catch (err) { out.replaceChildren(errorBox(err)); }
  } },
    h("h3", null, "Set stock"),
    h("div", { class: "grid" },
      field("SKU", h("input", { name: "sku", required: true, value: item.sku || "", readonly: item.sku ? true : null })),
      field("Name", h("input", { name: "name", value: item.name || "" })),
      field("On hand", h("input", { name: "on_hand", type: "number", min: 0, required: true, value: item.on_hand ?? "" }))),
    h("div", { class: "bar" }, h("button", { type: "submit", class: "primary", id: "stock-set" }, "Set stock")), out);
  return form;
}

async function renderSKU(ctx, sku) {
  const { root, href, can } = ctx;
  const [it, res] = await Promise.all([api("/api/v1/inventory/" + encodeURIComponent(sku)),
    api(`/api/v1/inventory/${encodeURIComponent(sku)}/reservations?limit=100`)]);
  if (ctx.stale()) return;
  add(root, h("div", { class: "crumbs" }, h("a", { href: href(["stock"]) }, "Stock"), " / ", sku),
    h("div", { class: "page-head" }, h("h1", null, it.sku), h("span", { class: "muted" }, it.name)),
    h("div", { class: "stats" },
      ...[["On hand", it.on_hand], ["Reserved", it.reserved], ["Available", it.available], ["Version", it.version]]
        .map(([k, v]) => h("div", { class: "stat" }, h("div", { class: "stat-label" }, k), h("div", { class: "stat-value" }, fmtNum(v))))),
    can("operator") ? setForm(ctx, it) : null,
    card("Reservations", table(res.reservations, [
      { title: "Order", render: r => h("a", { href: href(["orders", r.order_id, "journey"]) }, r.order_id) },
      { title: "Quantity", num: true, key: "quantity" }, { title: "Status", render: r => badge(r.status) },
      { title: "Created", render: r => fmtTime(r.created_at) }, { title: "Updated", render: r => fmtTime(r.updated_at) }],
    { empty: "Nothing reserved." })));
}
