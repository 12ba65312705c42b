package events

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestNewEventIsCloudEvent(t *testing.T) {
	ev, err := New(OrderCreated, AggregateOrder, "order-1", OrderCreatedData{OrderID: "order-1"}, "corr-9")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"} {
		if _, ok := m[k]; !ok {
			t.Errorf("CloudEvent lacks %q: %s", k, b)
		}
	}
	if m["specversion"] != "1.0" || m["type"] != OrderCreated || m["subject"] != "order-1" || ev.Topic() != OrderCreated {
		t.Fatalf("attributes: %s", b)
	}
	h := ev.Headers()
	if h[HeaderEventType] != OrderCreated || h[HeaderEventID] != ev.ID || h[HeaderCorrelationID] != "corr-9" {
		t.Fatalf("headers %v", h)
	}
	back, err := Decode(b)
	if err != nil || back.ID != ev.ID {
		t.Fatalf("decode: %v %+v", err, back)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	for _, in := range []string{
		`not json`,
		`{}`,
		`{"specversion":"0.3","id":"1","type":"X","subject":"s","data":{}}`,
		`{"specversion":"1.0","type":"X","subject":"s","data":{}}`,
		`{"specversion":"1.0","id":"1","subject":"s","data":{}}`,
		`{"specversion":"1.0","id":"1","type":"X","data":{}}`,
		`{"specversion":"1.0","id":"1","type":"X","subject":"s"}`,
	} {
		if _, err := Decode([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%s) = %v, want ErrMalformed", in, err)
		}
	}
}
