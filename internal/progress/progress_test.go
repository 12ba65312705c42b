package progress

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// clock is a time source the test moves by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func withClock(c *clock) Option { return func(t *Tracker) { t.now = c.now } }

func TestPlainLinesAtMostOnceAnInterval(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Unix(0, 0)}
	tr := New(&out, "verify", 4, Terminal(false), withClock(c))
	c.t = c.t.Add(2 * time.Second)
	tr.Step("stock-bounds ok")     // an interval passed: a line
	tr.Step("reservation-sums ok") // same instant: none
	c.t = c.t.Add(time.Second)
	tr.Step("order-histories ok") // a line
	tr.Step("outbox-drained ok")
	tr.Done()
	want := "verify: progress 1/4 (2s) stock-bounds ok\n" +
		"verify: progress 3/4 (3s) order-histories ok\n" +
		"verify: done 4/4 (3s) outbox-drained ok\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestBarRedrawsInPlaceAndMakesRoomForOtherOutput(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Unix(0, 0)}
	tr := New(&out, "replay", 2, Terminal(true), withClock(c))
	c.t = c.t.Add(time.Second)
	tr.Step("id 1")
	_, _ = tr.Writer().Write([]byte("a line of its own\n"))
	c.t = c.t.Add(time.Second)
	tr.Step("id 2")
	tr.Done()
	s := out.String()
	if strings.Count(s, "\n") != 2 || !strings.Contains(s, "\r\033[Ka line of its own\n") {
		t.Fatalf("output %q: want the bar cleared before the other line and one final newline", s)
	}
	if !strings.HasSuffix(s, "\r\033[Kreplay [==============================] 2/2 2s id 2\n") {
		t.Fatalf("final bar %q", s[strings.LastIndex(s, "\r"):])
	}
	if !strings.Contains(s, "replay [===============               ] 1/2 1s id 1") {
		t.Fatalf("half-way bar missing from %q", s)
	}
}

func TestLogRecordsForServerWork(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&out, nil))
	tr := NewLog(log, "snapshot", 0, Interval(0))
	tr.Add(500, "public.orders")
	tr.Done()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"msg":"snapshot progress"`) || !strings.Contains(lines[1], `"msg":"snapshot done","done":500`) {
		t.Fatalf("log records:\n%s", out.String())
	}
}

func TestNilTrackerDoesNothing(t *testing.T) {
	var tr *Tracker
	tr.SetTotal(3)
	tr.Step("x")
	tr.Done()
	if _, err := tr.Writer().Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
}
