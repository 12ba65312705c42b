package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopBrowser()
	removeScreenshots()
	os.Exit(code)
}

// consoleRig is one TrackOps process for the console tests, with a user of
// each role and one order that went through the whole saga.
type consoleRig struct {
	p        *Process
	db       *postgrestest.Database
	cfg      Config
	order    apiOrder
	customer string
	viewer   string // API key
	operator string // API key
}

func newConsoleRig(t *testing.T) *consoleRig {
	t.Helper()
	db := postgrestest.New(t)
	cfg, _ := strategyConfig(t, db, "outbox")
	p := Start(t, cfg)
	r := &consoleRig{p: p, db: db, cfg: cfg, customer: "cust-console-" + uniqueSuffix()}
	if out, err := Command(t, p.Env, "console-passw0rd\n", "user", "create", "--username", "ada", "--role", "admin"); err != nil {
		t.Fatalf("user create: %v\n%s", err, out)
	}
	for role, dst := range map[string]*string{"viewer": &r.viewer, "operator": &r.operator} {
		out, err := Command(t, p.Env, "", "apikey", "create", "--name", "console-"+role, "--role", role)
		if err != nil {
			t.Fatalf("apikey create: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for _, l := range lines {
			if strings.HasPrefix(l, "tok_") {
				*dst = strings.TrimSpace(l)
			}
		}
		if *dst == "" {
			t.Fatalf("no key in %q", out)
		}
	}
	mustCall(t, p, http.MethodPut, "/api/v1/inventory/CONSOLE-1", `{"name":"Console widget","on_hand":50}`, http.StatusCreated, nil)
	body := fmt.Sprintf(`{"customer_id":%q,"items":[{"sku":"CONSOLE-1","quantity":3,"unit_price":"4.50"}]}`, r.customer)
	mustCall(t, p, http.MethodPost, "/api/v1/orders", body, http.StatusCreated, &r.order)
	waitUntil(t, "order confirmed", 60*time.Second, func(ctx context.Context) (bool, error) {
		var o apiOrder
		_, err := call(p, http.MethodGet, "/api/v1/orders/"+r.order.ID, "", &o)
		return o.Status == "CONFIRMED", err
	})
	return r
}

// TestConsoleInBrowser drives the ops console in headless Chromium against
// the real binary: one process and one browser for every step, a fresh tab
// per step.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	watchSlow(t)
	r := newConsoleRig(t)
	t.Run("SignIn", r.testSignIn)
	t.Run("DeepLinksAndHistory", r.testDeepLinks)
	t.Run("BrowseTopicWithJSONFilter", r.testBrowse)
	t.Run("CreateConnectorFromForm", r.testCreateConnector)
	t.Run("RedriveDeadLetter", r.testRedrive)
	t.Run("ResetGroupOffsets", r.testResetOffsets)
	t.Run("OrderJourney", r.testJourney)
	t.Run("ViewerSeesNoActions", r.testViewer)
	t.Run("CachePageShowsTheNearCache", r.testCache)
}

func (r *consoleRig) testSignIn(t *testing.T) {
	b := NewTab(t, r.p)
	b.Open("#/orders")
	b.WaitVisible("#signin-form")
	if n := b.Count("#nav a"); n != 0 {
		t.Errorf("%d navigation links before signing in", n)
	}
	b.Shot("form")
	b.Fill("#username", "ada")
	b.Fill("#password", "console-passw0rd")
	b.Click("#signin-submit")
	b.WaitVisible("#who .role")
	if who := b.Text("#who"); !strings.Contains(who, "ada") || !strings.Contains(strings.ToLower(who), "admin") {
		t.Errorf("header says %q, want the user and role", who)
	}
	if b.Count("#signin-form") != 0 {
		t.Error("the sign-in form is still on the page after signing in")
	}
	// Signed in, it shows the page the link asked for.
	b.WaitVisible("#order-search")
	if !strings.HasPrefix(b.Hash(), "#/orders") {
		t.Errorf("after sign-in at %q, want #/orders", b.Hash())
	}
	b.Shot("signed-in")
	b.Click("#signout")
	b.WaitVisible("#signin-form")
}

func (r *consoleRig) testDeepLinks(t *testing.T) {
	b := NewTab(t, r.p)
	b.SignInWithKey(r.p.Token, "#/orders/"+r.order.ID)
	onOrder := fmt.Sprintf(`(document.querySelector("h1") || {textContent: ""}).textContent.includes(%q)`, r.order.ID)
	b.WaitFor("order page", onOrder)
	// A reload keeps the place.
	b.Open("#/orders/" + r.order.ID)
	b.WaitFor("order page after reload", onOrder)
	// A search is a link too, and back and forward walk the pages visited.
	b.Go("#/orders?customer_id=" + r.customer)
	if n := b.Count(fmt.Sprintf(`a.order-link[title=%q]`, r.order.ID)); n != 1 {
		t.Errorf("the linked search lists the order %d times", n)
	}
	if v := Eval[string](b, `document.querySelector("#order-search [name=customer_id]").value`); v != r.customer {
		t.Errorf("the search form shows %q, want the linked customer", v)
	}
	b.Go("#/stock")
	b.Eval(`history.back()`)
	b.WaitFor("back to the search", fmt.Sprintf(`document.querySelectorAll(%q).length === 1`, fmt.Sprintf("a.order-link[title=%q]", r.order.ID)))
	b.Eval(`history.forward()`)
	b.WaitVisible("#stock-search")
	if active := b.Text("#nav a.active"); active != "Stock" {
		t.Errorf("active navigation %q, want Stock", active)
	}
	b.Shot("stock")
}

func (r *consoleRig) testBrowse(t *testing.T) {
	b := NewTab(t, r.p)
	b.SignInWithKey(r.p.Token, "#/topics/ORDER_CREATED")
	b.WaitVisible("#browse-form")
	b.Fill("#browse-form [name=json_path]", "data.customer_id")
	b.Fill("#browse-form [name=json_value]", r.customer)
	b.Click("#browse-run")
	b.WaitFor("scan finished", `document.querySelector("#browse-progress").dataset.state === "done"`)
	found := Eval[[]string](b, `[...document.querySelectorAll("#browse-results details.message .msg-key code")].map(e => e.innerText)`)
	if len(found) != 1 || found[0] != r.order.ID {
		t.Errorf("messages found %q, want only the order's ORDER_CREATED", found)
	}
	if body := b.Text("#browse-results details.message pre"); !strings.Contains(body, `"customer_id": "`+r.customer+`"`) {
		t.Errorf("the record's value is not shown pretty-printed: %q", body)
	}
	// The search is in the URL: a reload runs it again.
	if h := b.Hash(); !strings.Contains(h, "json_path=data.customer_id") {
		t.Errorf("hash %q does not hold the filter", h)
	}
	b.Shot("found")
}

func (r *consoleRig) testCreateConnector(t *testing.T) {
	keys, err := cdc.DatabaseKeys(r.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	suffix := uniqueSuffix()
	name := "console-" + suffix
	b := NewTab(t, r.p)
	b.SignInWithKey(r.p.Token, "#/cdc")
	b.Click("#new-connector")
	b.WaitVisible("#connector-form")
	b.Fill("#connector-form [name=name]", name)
	for _, k := range []string{"database.hostname", "database.port", "database.user", "database.password"} {
		if v, ok := keys[k]; ok {
			b.Fill(fmt.Sprintf(`#connector-form [name=%q]`, k), v)
		}
	}
	b.Fill(`#connector-form [name="topic.prefix"]`, "console_"+suffix)
	b.Fill(`#connector-form [name="table.include.list"]`, "public.orders")
	b.Fill(`#connector-form [name="slot.name"]`, "e2e_console_"+suffix)
	b.Fill(`#connector-form [name="publication.name"]`, "console_pub_"+suffix)
	// Debezium's signaling table, which the migrations create: the
	// "Snapshot tables…" button writes its signals there.
	b.Fill(`#connector-form [name="extra"]`, "signal.data.collection=public.debezium_signal\nincremental.snapshot.chunk.size=100")
	// Without a database the Connect API's validation refuses it.
	b.Click("#connector-validate")
	b.WaitVisible("#validation-errors")
	if text := b.Text("#validation-errors"); !strings.Contains(text, "database.dbname") {
		t.Errorf("validation says %q, want the missing database.dbname named", text)
	}
	b.Shot("invalid")
	b.Fill(`#connector-form [name="database.dbname"]`, keys["database.dbname"])
	b.Click("#connector-save")
	b.WaitFor("connector page", fmt.Sprintf(`location.hash === "#/cdc/%s"`, name))
	b.WaitVisible(`.connector-state[data-state="RUNNING"]`)
	b.Shot("running")
	// An incremental snapshot of public.orders from the button; the card
	// shows its progress until it completes.
	b.Click(`button[data-act="snapshot"]`)
	b.WaitVisible(`.modal input[name="table"][value="public.orders"]`)
	b.Click(`.modal-actions button[data-action="ok"]`)
	b.WaitVisible(`.snapshot-progress[data-type="incremental"][data-state="completed"]`)
	if text := b.Text(".snapshot-progress"); !strings.Contains(text, "1 of 1 tables") {
		t.Errorf("the card shows the finished snapshot as %q", text)
	}
	b.Shot("snapshot-completed")
	code, err := call(r.p, http.MethodGet, "/api/v1/ops/connect/connectors/"+name+"/status", "", nil)
	if err != nil || code != http.StatusOK {
		t.Errorf("the connector is not known to the Connect API: %d %v", code, err)
	}
	mustCall(t, r.p, http.MethodDelete, "/api/v1/ops/connect/connectors/"+name, "", http.StatusNoContent, nil)
}

func (r *consoleRig) testRedrive(t *testing.T) {
	// A record no consumer can read lands in ORDER_CREATED.dlq.
	body := fmt.Sprintf(`{"key":%q,"value":"{\"specversion\":\"1.0\",","headers":{"event_id":"console-poison-%s"}}`, r.order.ID, uniqueSuffix())
	mustCall(t, r.p, http.MethodPost, "/api/v1/ops/topics/ORDER_CREATED/messages", body, http.StatusCreated, nil)
	var id int64
	waitUntil(t, "dead letter recorded", 60*time.Second, func(ctx context.Context) (bool, error) {
		var list struct {
			Messages []struct {
				ID     int64  `json:"id"`
				Key    string `json:"key"`
				Status string `json:"status"`
			} `json:"messages"`
		}
		_, err := call(r.p, http.MethodGet, "/api/v1/ops/dlq?status=new", "", &list)
		for _, m := range list.Messages {
			if m.Key == r.order.ID {
				id = m.ID
			}
		}
		return id > 0, err
	})
	b := NewTab(t, r.p)
	b.SignInWithKey(r.p.Token, "#/dlq")
	b.WaitVisible("#dlq-bulk")
	if topics := b.Text("table tbody td .chip"); !strings.Contains(topics, "ORDER_CREATED") {
		t.Errorf("the fingerprint table shows topics %q", topics)
	}
	b.Click(fmt.Sprintf(`a.dlq-link[href="#/dlq/%d"]`, id))
	b.WaitVisible("#dlq-redrive-one")
	b.Click("#dlq-redrive-one")
	b.WaitVisible(".replay-result")
	if text := b.Text(".replay-result"); !strings.Contains(text, "Would redrive 1") {
		t.Errorf("dry run says %q", text)
	}
	b.Shot("dry-run")
	b.Click(`.modal-actions button[data-action="ok"]`)
	b.WaitFor("replayed", `[...document.querySelectorAll(".page-head .badge")].some(e => e.innerText === "replayed")`)
	b.Shot("replayed")
	var m struct {
		Status string `json:"status"`
	}
	mustCall(t, r.p, http.MethodGet, fmt.Sprintf("/api/v1/ops/dlq/%d", id), "", http.StatusOK, &m)
	if m.Status != "replayed" {
		t.Errorf("dead letter %d is %q after the redrive", id, m.Status)
	}
}

func (r *consoleRig) testResetOffsets(t *testing.T) {
	// A group that read every ORDER_CREATED record and left: no members,
	// no lag.
	group := "console-reset-" + uniqueSuffix()
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.cfg.KafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, "ORDER_CREATED")
	if err != nil {
		t.Fatal(err)
	}
	starts, err := adm.ListStartOffsets(ctx, "ORDER_CREATED")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok {
			total += o.Offset - s.Offset
		}
	})
	if err := adm.CommitAllOffsets(ctx, group, ends.Offsets()); err != nil {
		t.Fatal(err)
	}

	b := NewTab(t, r.p)
	b.SignInWithKey(r.p.Token, "#/groups/"+group)
	b.WaitVisible("#reset-form")
	b.Click("#reset-dry")
	b.WaitFor("dry run", `document.querySelector("#reset-result").innerText.includes("Dry run")`)
	b.Click("#reset-apply")
	b.Click(`.modal-actions button[data-action="ok"]`)
	b.WaitVisible("#reset-lag")
	if want := fmt.Sprintf("Offsets reset. Total lag is now %d.", total); b.Text("#reset-lag") != want {
		t.Errorf("after the reset: %q, want %q", b.Text("#reset-lag"), want)
	}
	b.Shot("reset")
}

func (r *consoleRig) testJourney(t *testing.T) {
	var want struct {
		Hops []struct {
			Kind string `json:"kind"`
		} `json:"hops"`
	}
	b := NewTab(t, r.p)
	b.SignInWithKey(r.p.Token, "#/orders/"+r.order.ID+"/journey")
	b.WaitVisible("#journey li.hop")
	mustCall(t, r.p, http.MethodGet, "/api/v1/orders/"+r.order.ID+"/journey", "", http.StatusOK, &want)
	kinds := Eval[[]string](b, `[...document.querySelectorAll("#journey li.hop")].map(e => e.dataset.kind)`)
	if len(kinds) != len(want.Hops) {
		t.Errorf("%d hops on the page, the API has %d", len(kinds), len(want.Hops))
	}
	seen := map[string]bool{}
	for _, k := range kinds {
		seen[k] = true
	}
	// Every hop of an order through the saga: the request, the commit, its
	// outbox rows and their acknowledgement, the consumers that handled
	// them, the reservation and the saga's status change.
	for _, k := range []string{"request", "commit", "outbox", "published", "handled", "reservation", "status"} {
		if !seen[k] {
			t.Errorf("no %s hop on the journey: %v", k, kinds)
		}
	}
	if gaps := b.Count("#journey li.hop .gap"); gaps != len(kinds) {
		t.Errorf("%d hops show the time since the previous one, want all %d", gaps, len(kinds))
	}
	b.Shot("journey")
}

// testCache: the Cache page's orders card says its near cache serves.
func (r *consoleRig) testCache(t *testing.T) {
	b := NewTab(t, r.p)
	b.SignInWithKey(r.p.Token, "#/cache")
	b.WaitFor("store cards", `document.querySelectorAll("#stores .card").length === 4`)
	orders := Eval[string](b, `[...document.querySelectorAll("#stores .card")].map(c => c.textContent).find(t => t.startsWith("orders")) || ""`)
	if !strings.Contains(orders, "Near cache") || !strings.Contains(orders, "live") {
		t.Errorf("the orders card does not show a live near cache: %q", orders)
	}
	b.Shot("cache")
}

func (r *consoleRig) testViewer(t *testing.T) {
	b := NewTab(t, r.p)
	b.SignInWithKey(r.viewer, "#/orders/"+r.order.ID)
	b.WaitFor("order page", `document.querySelector(".page-head .badge") !== null`)
	if role := b.Text("#who .role"); role != "viewer" {
		t.Errorf("role shown %q", role)
	}
	nav := Eval[[]string](b, `[...document.querySelectorAll("#nav a")].map(a => a.dataset.page)`)
	for _, page := range nav {
		if page == "topics" || page == "audit" || page == "cdc" || page == "groups" || page == "cache" {
			t.Errorf("a viewer is offered the %s page", page)
		}
	}
	for hash, sel := range map[string]string{
		"#/orders/" + r.order.ID: "#order-cancel, button[data-to]",
		"#/stock":                "#stock-form",
		"#/dlq":                  "#dlq-bulk, [data-redrive-group], input[data-select]",
		"#/outbox?state=failed":  "[data-retry]",
	} {
		b.Go(hash)
		if n := b.Count(sel); n != 0 {
			t.Errorf("%s: a viewer sees %d action control(s) (%s)", hash, n, sel)
		}
		if n := b.Count("main button.danger, main button.primary:not([type=submit])"); n != 0 {
			t.Errorf("%s: a viewer sees %d action button(s)", hash, n)
		}
	}
	b.Go("#/orders/" + r.order.ID)
	b.Shot("viewer")
	// The API refuses the viewer whatever the page shows.
	statuses := Eval[[]int](b, fmt.Sprintf(`Promise.all([
		["POST", "/api/v1/orders/%[1]s/cancel", {}],
		["PUT", "/api/v1/inventory/CONSOLE-1", {name: "x", on_hand: 1}],
		["POST", "/api/v1/ops/dlq/replay", {topic: "ORDER_CREATED", all: true}],
		["POST", "/api/v1/ops/topics", {name: "viewer-topic", partitions: 1}],
	].map(([method, path, body]) => fetch(path, {method, body: JSON.stringify(body), headers: {
		"Content-Type": "application/json", Authorization: "Bearer " + sessionStorage.getItem("trackops.token")}}).then(r => r.status)))`, r.order.ID))
	for i, s := range statuses {
		if s != http.StatusForbidden {
			t.Errorf("viewer action %d answered %d, want 403", i, s)
		}
	}
}

// wantJourney checks the journey of an order that was placed, confirmed by
// the saga and shipped, under strategy: its status changes, the consumers
// that handled its creation and its shipment, its committed reservation,
// and under cdc the change records the connector published for it.
func wantJourney(t *testing.T, p *Process, id, strategy string) {
	t.Helper()
	var j struct {
		Strategy string `json:"strategy"`
		Hops     []struct {
			Kind      string `json:"kind"`
			EventType string `json:"event_type"`
			Consumer  string `json:"consumer"`
			ToStatus  string `json:"to_status"`
			LSN       string `json:"lsn"`
			Offset    *int64 `json:"offset"`
		} `json:"hops"`
		Events []struct {
			Type   string `json:"type"`
			Source string `json:"source"`
		} `json:"events"`
		Gaps []string `json:"gaps"`
	}
	mustCall(t, p, http.MethodGet, "/api/v1/orders/"+id+"/journey", "", http.StatusOK, &j)
	if j.Strategy != strategy {
		t.Errorf("journey strategy %q, want %q", j.Strategy, strategy)
	}
	has := func(match func(kind, event, consumer, to, lsn string, offset *int64) bool) bool {
		for _, h := range j.Hops {
			if match(h.Kind, h.EventType, h.Consumer, h.ToStatus, h.LSN, h.Offset) {
				return true
			}
		}
		return false
	}
	for _, want := range []struct {
		what  string
		match func(kind, event, consumer, to, lsn string, offset *int64) bool
	}{
		{"the commit", func(k, _, _, to, _ string, _ *int64) bool { return k == "commit" && to == "PENDING" }},
		{"the saga's confirmation", func(k, _, _, to, _ string, _ *int64) bool { return k == "status" && to == "CONFIRMED" }},
		{"the shipment", func(k, _, _, to, _ string, _ *int64) bool { return k == "status" && to == "SHIPPED" }},
		{"inventory handling ORDER_CREATED", func(k, e, c, _, _ string, o *int64) bool {
			return k == "handled" && e == "ORDER_CREATED" && c == "trackops-inventory" && o != nil
		}},
		{"the saga handling INVENTORY_RESERVED", func(k, e, c, _, _ string, _ *int64) bool {
			return k == "handled" && e == "INVENTORY_RESERVED" && c == "trackops-order-saga"
		}},
		{"inventory handling the shipment", func(k, e, c, _, _ string, _ *int64) bool {
			return k == "handled" && e == "ORDER_STATUS_UPDATED" && c == "trackops-inventory"
		}},
		{"the reservation", func(k, _, _, _, _ string, _ *int64) bool { return k == "reservation" }},
	} {
		if !has(want.match) {
			t.Errorf("%s journey of %s lacks %s: %+v (gaps %q)", strategy, id, want.what, j.Hops, j.Gaps)
		}
	}
	if strategy == "cdc" {
		if !has(func(k, _, _, _, lsn string, o *int64) bool { return k == "cdc_change" && lsn != "" && o != nil }) {
			t.Errorf("cdc journey of %s shows no change record with its LSN: %+v (gaps %q)", id, j.Hops, j.Gaps)
		}
		for _, ev := range j.Events {
			if ev.Type == "ORDER_CREATED" && ev.Source != "cdc" {
				t.Errorf("under cdc ORDER_CREATED comes from %q", ev.Source)
			}
		}
	}
}
