package dlq

import (
	"bytes"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/validation"
)

// FuzzParseFilter: the dead-letter list filters parse or are refused, and a
// parsed filter is within its bounds.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"topic=ORDER_CREATED&since=1h&limit=10", "status=bogus&cursor=-1", "since=2026-01-02T15:04:05Z", "limit=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		flt, err := ParseFilter(q, time.Unix(1e9, 0))
		if err != nil {
			return
		}
		if flt.Limit < 1 || flt.Limit > 1000 || flt.BeforeID < 0 {
			t.Fatalf("%q gave %+v", raw, flt)
		}
	})
}

// FuzzReplayRequest drives the replay decoder and validator.
func FuzzReplayRequest(f *testing.F) {
	for _, s := range []string{`{"id":1}`, `{"topic":"ORDER_CREATED","all":true,"dry_run":true}`, `{"topic":"\u0000"}`, `{"id":-1,"topic":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var b replayBody
		req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		if err := httpapi.DecodeJSON(req, &b); err != nil {
			rec := httptest.NewRecorder()
			httpapi.WriteError(rec, req, err)
			if rec.Code < 400 || rec.Code > 499 {
				t.Fatalf("%q: %d", body, rec.Code)
			}
			return
		}
		rr := ReplayRequest{ID: b.ID, Topic: b.Topic, Fingerprint: b.Fingerprint, All: b.All}
		if rr.Validate() != nil {
			return
		}
		if validation.TextProblem(rr.Topic) != "" || validation.TextProblem(rr.Fingerprint) != "" || rr.ID < 0 {
			t.Fatalf("accepted %+v", rr)
		}
	})
}
