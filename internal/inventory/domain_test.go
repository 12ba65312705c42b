package inventory

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/validation"
)

func TestSumLinesMergesPerSKUAndSortsForLockOrder(t *testing.T) {
	tests := []struct {
		name    string
		in      []OrderLine
		want    []Line
		wantErr string
	}{
		{name: "one line", in: []OrderLine{{"A", 2}}, want: []Line{{"A", 2}}},
		{name: "sorted by sku", in: []OrderLine{{"C", 1}, {"A", 2}, {"B", 3}}, want: []Line{{"A", 2}, {"B", 3}, {"C", 1}}},
		{name: "repeated sku summed", in: []OrderLine{{"B", 1}, {"A", 2}, {"B", 4}}, want: []Line{{"A", 2}, {"B", 5}}},
		{name: "byte order, not case-folded", in: []OrderLine{{"b", 1}, {"B", 1}}, want: []Line{{"B", 1}, {"b", 1}}},
		{name: "no lines", in: nil, wantErr: "no lines"},
		{name: "zero quantity", in: []OrderLine{{"A", 0}}, wantErr: "quantity 0"},
		{name: "negative quantity", in: []OrderLine{{"A", 3}, {"A", -1}}, wantErr: "quantity -1"},
		{name: "invalid sku", in: []OrderLine{{"bad sku", 1}}, wantErr: "invalid sku"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SumLines(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestShortfallsAllOrNothing(t *testing.T) {
	stock := map[string]Stock{
		"A": {OnHand: 10, Reserved: 4}, // 6 available
		"B": {OnHand: 5, Reserved: 5},  // 0 available
		"C": {OnHand: 1, Reserved: 0},  // 1 available
	}
	tests := []struct {
		name  string
		lines []Line
		want  []Shortfall
	}{
		{name: "fits exactly", lines: []Line{{"A", 6}, {"C", 1}}},
		{name: "fits with room", lines: []Line{{"A", 1}}},
		{name: "one unit short", lines: []Line{{"A", 7}},
			want: []Shortfall{{SKU: "A", Requested: 7, Available: 6, Reason: ShortInsufficientStock}}},
		{name: "nothing left", lines: []Line{{"B", 1}},
			want: []Shortfall{{SKU: "B", Requested: 1, Available: 0, Reason: ShortInsufficientStock}}},
		{name: "unknown sku", lines: []Line{{"Z", 1}},
			want: []Shortfall{{SKU: "Z", Requested: 1, Available: 0, Reason: ShortUnknownSKU}}},
		{name: "one short line fails the order, every short line listed", lines: []Line{{"A", 2}, {"B", 1}, {"C", 2}, {"Z", 3}},
			want: []Shortfall{
				{SKU: "B", Requested: 1, Available: 0, Reason: ShortInsufficientStock},
				{SKU: "C", Requested: 2, Available: 1, Reason: ShortInsufficientStock},
				{SKU: "Z", Requested: 3, Available: 0, Reason: ShortUnknownSKU},
			}},
		{name: "over-reserved row reports zero available", lines: []Line{{"X", 1}},
			want: []Shortfall{{SKU: "X", Requested: 1, Available: 0, Reason: ShortInsufficientStock}}},
	}
	stock["X"] = Stock{OnHand: 1, Reserved: 3} // impossible under the CHECK; must not report negative
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Shortfalls(tt.lines, stock)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAdjustAndSetNeverGoBelowReserved(t *testing.T) {
	tests := []struct {
		name       string
		onHand     int64
		reserved   int64
		delta      int64
		set        *int64
		wantOnHand int64
		conflict   bool
		validation bool
	}{
		{name: "add stock", onHand: 5, reserved: 2, delta: 3, wantOnHand: 8},
		{name: "remove down to reserved", onHand: 5, reserved: 2, delta: -3, wantOnHand: 2},
		{name: "remove below reserved", onHand: 5, reserved: 2, delta: -4, conflict: true},
		{name: "remove below zero", onHand: 1, reserved: 0, delta: -2, conflict: true},
		{name: "above the maximum", onHand: MaxOnHand, delta: 1, validation: true},
		{name: "set to reserved", onHand: 5, reserved: 2, set: ptr[int64](2), wantOnHand: 2},
		{name: "set below reserved", onHand: 5, reserved: 2, set: ptr[int64](1), conflict: true},
		{name: "set to zero with nothing reserved", onHand: 5, set: ptr[int64](0), wantOnHand: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := Item{SKU: "A", OnHand: tt.onHand, Reserved: tt.reserved}
			var err error
			if tt.set != nil {
				err = it.SetOnHand(*tt.set)
			} else {
				err = it.Adjust(tt.delta)
			}
			var verrs validation.Errors
			switch {
			case tt.conflict:
				var c *StockConflictError
				if !errors.Is(err, ErrStockConflict) || !errors.As(err, &c) {
					t.Fatalf("err = %v, want a stock conflict", err)
				}
				if it.OnHand != tt.onHand {
					t.Fatalf("on_hand changed to %d on a refused change", it.OnHand)
				}
				if !strings.Contains(err.Error(), "on_hand") {
					t.Fatalf("message %q does not explain itself", err)
				}
			case tt.validation:
				if !errors.As(err, &verrs) {
					t.Fatalf("err = %v, want a validation error", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if it.OnHand != tt.wantOnHand || it.Available() != tt.wantOnHand-tt.reserved {
					t.Fatalf("on_hand %d available %d, want %d and %d", it.OnHand, it.Available(), tt.wantOnHand, tt.wantOnHand-tt.reserved)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRequestValidation(t *testing.T) {
	long := strings.Repeat("x", MaxNameLen+1)
	tests := []struct {
		name   string
		err    error
		fields []string
	}{
		{"valid set", SetRequest{SKU: "SKU-1", Name: ptr("Widget"), OnHand: 3}.Validate(), nil},
		{"set without name (update)", SetRequest{SKU: "SKU-1", OnHand: 3}.Validate(), nil},
		{"bad sku", SetRequest{SKU: "-x", OnHand: 1}.Validate(), []string{"sku"}},
		{"negative on_hand", SetRequest{SKU: "A", OnHand: -1}.Validate(), []string{"on_hand"}},
		{"huge on_hand", SetRequest{SKU: "A", OnHand: MaxOnHand + 1}.Validate(), []string{"on_hand"}},
		{"blank name", SetRequest{SKU: "A", Name: ptr("  "), OnHand: 1}.Validate(), []string{"name"}},
		{"long name", SetRequest{SKU: "A", Name: &long, OnHand: 1}.Validate(), []string{"name"}},
		{"control chars", SetRequest{SKU: "A", Name: ptr("a\x00b"), OnHand: 1}.Validate(), []string{"name"}},
		{"valid adjust", AdjustRequest{SKU: "A", Delta: -3, Reason: "damaged"}.Validate(), nil},
		{"zero delta, no reason", AdjustRequest{SKU: "A"}.Validate(), []string{"delta", "reason"}},
		{"huge delta", AdjustRequest{SKU: "A", Delta: -MaxOnHand - 1, Reason: "x"}.Validate(), []string{"delta"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var verrs validation.Errors
			if tt.fields == nil {
				if tt.err != nil {
					t.Fatalf("unexpected error %v", tt.err)
				}
				return
			}
			if !errors.As(tt.err, &verrs) {
				t.Fatalf("err = %v, want validation errors on %v", tt.err, tt.fields)
			}
			var got []string
			for _, f := range verrs {
				got = append(got, f.Field)
			}
			if !reflect.DeepEqual(got, tt.fields) {
				t.Fatalf("fields %v, want %v", got, tt.fields)
			}
		})
	}
}
