package inventory

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/validation"
)

func decodeStatus(t *testing.T, body []byte, v any) bool {
	t.Helper()
	req := httptest.NewRequest("PUT", "/x", bytes.NewReader(body))
	if err := httpapi.DecodeJSON(req, v); err != nil {
		rec := httptest.NewRecorder()
		httpapi.WriteError(rec, req, err)
		if rec.Code < 400 || rec.Code > 499 {
			t.Fatalf("decode %q: %d", body, rec.Code)
		}
		return false
	}
	return true
}

// FuzzSetRequest drives PUT /inventory/{sku}'s decoder and validator: what
// it accepts is storable (SKU and name are text without NUL, on_hand within
// its bounds).
func FuzzSetRequest(f *testing.F) {
	for _, s := range []string{`{"name":"n","on_hand":1}`, `{"name":"\u0000","on_hand":-1}`, `{"on_hand":1e3}`, `{"name":"` + "\xff" + `"}`} {
		f.Add("SKU-1", []byte(s))
	}
	f.Fuzz(func(t *testing.T, sku string, body []byte) {
		var req setRequest
		if !decodeStatus(t, body, &req) || req.OnHand == nil {
			return
		}
		sr := SetRequest{SKU: sku, Name: req.Name, OnHand: *req.OnHand}
		if err := sr.Validate(); err != nil {
			var verrs validation.Errors
			if !errors.As(err, &verrs) {
				t.Fatalf("validation error %T is not a 422", err)
			}
			return
		}
		if validation.TextProblem(sku) != "" || (req.Name != nil && validation.TextProblem(*req.Name) != "") || sr.OnHand < 0 || sr.OnHand > MaxOnHand {
			t.Fatalf("accepted %+v", sr)
		}
	})
}

// FuzzAdjustRequest drives POST /inventory/{sku}/adjust's decoder and
// validator and the on_hand arithmetic.
func FuzzAdjustRequest(f *testing.F) {
	for _, s := range []string{`{"delta":-3,"reason":"r"}`, `{"delta":0}`, `{"delta":9223372036854775807,"reason":"x"}`, `{"reason":"\u0000","delta":1}`} {
		f.Add("SKU-1", []byte(s), int64(5), int64(2))
	}
	f.Fuzz(func(t *testing.T, sku string, body []byte, onHand, reserved int64) {
		var req adjustRequest
		if !decodeStatus(t, body, &req) || req.Delta == nil {
			return
		}
		ar := AdjustRequest{SKU: sku, Delta: *req.Delta, Reason: req.Reason}
		if ar.Validate() != nil {
			return
		}
		if validation.TextProblem(ar.Reason) != "" {
			t.Fatalf("reason %q accepted", ar.Reason)
		}
		if onHand < 0 || onHand > MaxOnHand || reserved < 0 || reserved > onHand {
			return
		}
		it := Item{SKU: sku, OnHand: onHand, Reserved: reserved}
		if err := it.Adjust(ar.Delta); err == nil && (it.OnHand < it.Reserved || it.OnHand > MaxOnHand) {
			t.Fatalf("adjust %d of %d/%d gave on_hand %d", ar.Delta, onHand, reserved, it.OnHand)
		}
	})
}
