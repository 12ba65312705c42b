package order

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/pagination"
	"github.com/trackops/trackops/internal/validation"
)

// FuzzCreateOrderRequest drives the create decoder and validator: any body
// is either refused as a 4xx, or becomes an order every field of which the
// database can store (totals within numeric(14,2), text without NUL).
func FuzzCreateOrderRequest(f *testing.F) {
	for _, s := range []string{
		`{"customer_id":"c","items":[{"sku":"S-1","quantity":2,"unit_price":"19.99"}]}`,
		`{"customer_id":"c","items":[{"sku":"S-1","quantity":10000,"unit_price":"100000000.00"}]}`,
		`{"customer_id":"a\u0000b","items":[{"sku":"S","quantity":1,"unit_price":1}]}`,
		`{"customer_id":"c","items":[{"sku":"S","quantity":1,"unit_price":1}],"shipping_address":{"k\u0000":"\ud800"}}`,
		`{"customer_id":"c","currency":"EUR","items":[{"sku":"S","quantity":1,"unit_price":"-1"}]}`,
		`{}`, `[]`, `null`, "\xff", `{"items":[{}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/api/v1/orders", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		req.Body = http.MaxBytesReader(rec, req.Body, 1<<20)
		var cr createRequest
		if err := httpapi.DecodeJSON(req, &cr); err != nil {
			httpapi.WriteError(rec, req, err)
			if rec.Code < 400 || rec.Code > 499 {
				t.Fatalf("decode %q: %d", body, rec.Code)
			}
			return
		}
		n, verrs := cr.toNewOrder()
		if len(verrs) > 0 {
			return
		}
		o, err := Place(n, o0)
		if err != nil {
			t.Fatalf("validated order refused by Place: %v", err)
		}
		if o.TotalAmount < 0 || o.TotalAmount > MaxAmount {
			t.Fatalf("total %s out of range", o.TotalAmount)
		}
		for _, it := range o.Items {
			if it.LineTotal < 0 || it.LineTotal > MaxAmount || validation.TextProblem(it.SKU) != "" {
				t.Fatalf("line %+v not storable", it)
			}
		}
		if validation.TextProblem(o.CustomerID) != "" || validation.RawJSONProblem(o.ShippingAddress) != "" {
			t.Fatalf("order text not storable: %q %q", o.CustomerID, o.ShippingAddress)
		}
	})
}

// FuzzStatusRequest drives the status-change decoder and the reason rule.
func FuzzStatusRequest(f *testing.F) {
	for _, s := range []string{`{"status":"CANCELLED","reason":"x"}`, `{"status":"confirmed"}`, `{"status":"X","reason":"\u0000"}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("PATCH", "/x", bytes.NewReader(body))
		var sr statusRequest
		if err := httpapi.DecodeJSON(req, &sr); err != nil {
			rec := httptest.NewRecorder()
			httpapi.WriteError(rec, req, err)
			if rec.Code < 400 || rec.Code > 499 {
				t.Fatalf("decode %q: %d", body, rec.Code)
			}
			return
		}
		st, ok := ParseStatus(sr.Status)
		o := &Order{Status: StatusConfirmed, Version: 1}
		if !ok {
			return
		}
		_, err := o.ClientTransition(st, HoldReserved, sr.Reason, "fuzz", o0)
		var verrs validation.Errors
		if err != nil && !errors.Is(err, ErrIllegalTransition) && !errors.As(err, &verrs) {
			t.Fatalf("transition error %v is neither 409 nor 422", err)
		}
		if err == nil && ValidateReason(sr.Reason) != nil {
			t.Fatalf("reason %q accepted", sr.Reason)
		}
	})
}

// FuzzCursorAndETag: the list cursor and If-Match parsers never panic, and
// a cursor they accept is one Encode could have made.
func FuzzCursorAndETag(f *testing.F) {
	f.Add(pagination.Encode(o0, uuid.Nil), `"3"`)
	f.Add("bm90IGEgY3Vyc29y", `W/"7"`)
	f.Fuzz(func(t *testing.T, cursor, tag string) {
		_, _ = parseETag(tag)
		at, id, err := pagination.Decode(cursor)
		if err == nil && pagination.Encode(at, id) == "" {
			t.Fatalf("cursor %q accepted but does not re-encode", cursor)
		}
	})
}

// o0 is a fixed clock for the fuzz targets.
var o0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
