package dlq

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestWriteTable(t *testing.T) {
	part, off := int32(2), int64(41)
	var b bytes.Buffer
	err := WriteTable(&b, []Message{
		{ID: 7, Topic: "ORDER_CREATED.dlq", OriginalTopic: "ORDER_CREATED", OriginalPartition: &part, OriginalOffset: &off,
			Status: StatusNew, ReplayBlocked: true, ReplayCount: 3, ExceptionClass: "trackops.PermanentError",
			ExceptionMessage: "order saga:\n  " + strings.Repeat("x", 100), Fingerprint: "f1", ReceivedAt: time.Now()},
		{ID: 8, Topic: "INVENTORY_RESERVED.dlq", OriginalTopic: "INVENTORY_RESERVED", Status: StatusReplayed, ReceivedAt: time.Now()},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("table:\n%s", b.String())
	}
	for _, want := range []string{"ORDER_CREATED[2]@41", "new (loop guard)", "order saga: xxx", "…"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q lacks %q", lines[1], want)
		}
	}
	if strings.Contains(lines[1], strings.Repeat("x", 80)) {
		t.Errorf("message not cut to 80 characters: %q", lines[1])
	}
	if !strings.Contains(lines[2], "replayed") || strings.Contains(lines[2], "loop guard") {
		t.Errorf("row %q", lines[2])
	}
	b.Reset()
	if err := WriteTable(&b, nil); err != nil || !strings.Contains(b.String(), "(no dead letters)") {
		t.Errorf("empty table: %q %v", b.String(), err)
	}
}

func TestReplayResultWriteTable(t *testing.T) {
	r := ReplayResult{DryRun: true, Matched: 2, Replayed: 1, Blocked: 1, Items: []ReplayItem{
		{ID: 1, OriginalTopic: "ORDER_CREATED", Outcome: OutcomeWouldReplay, ReplayCount: 1},
		{ID: 2, OriginalTopic: "ORDER_CREATED", Outcome: OutcomeBlocked, ReplayCount: 3, Reason: "replayed 3 times"},
	}}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"would_replay", "replayed 3 times",
		"matched 2, would replay (dry run, nothing changed) 1, blocked by the loop guard 1, skipped 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
