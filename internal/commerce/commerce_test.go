package commerce

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseMoney(t *testing.T) {
	tests := []struct {
		in   string
		want Money
		ok   bool
	}{
		{"19.99", 1999, true},
		{"0", 0, true},
		{"5", 500, true},
		{"5.5", 550, true},
		{"0.01", 1, true},
		{"-1.25", -125, true},
		{"1.999", 0, false},
		{"1.", 0, false},
		{".5", 0, false},
		{"abc", 0, false},
		{"1e3", 0, false},
		{"", 0, false},
		{"1,00", 0, false},
		{"9999999999999", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseMoney(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseMoney(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if s := Money(1999).String(); s != "19.99" {
		t.Errorf("String() = %q", s)
	}
	if s := Money(-5).String(); s != "-0.05" {
		t.Errorf("String() = %q", s)
	}
}

func TestMoneyJSON(t *testing.T) {
	tests := []struct {
		in   string
		want Money
		ok   bool
	}{
		{`"19.99"`, 1999, true},
		{`1999`, 1999, true},
		{`19.99`, 0, false}, // floats are refused
		{`"x"`, 0, false},
		{`true`, 0, false},
		{`1e5`, 0, false},
	}
	for _, tt := range tests {
		var m Money
		err := json.Unmarshal([]byte(tt.in), &m)
		if (err == nil) != tt.ok || m != tt.want {
			t.Errorf("unmarshal %s = %v, %v; want %v ok=%v", tt.in, m, err, tt.want, tt.ok)
		}
	}
	b, _ := json.Marshal(Money(250))
	if string(b) != `"2.50"` {
		t.Errorf("marshal = %s", b)
	}
}

func TestValidSKU(t *testing.T) {
	for _, tt := range []struct {
		sku string
		ok  bool
	}{
		{"SKU-1", true}, {"a", true}, {"9.x_y-z", true}, {strings.Repeat("A", 64), true},
		{"", false}, {"-SKU", false}, {".a", false}, {"SKU 1", false}, {"SKU/1", false},
		{strings.Repeat("A", 65), false}, {"SKÜ", false},
	} {
		if got := ValidSKU(tt.sku); got != tt.ok {
			t.Errorf("ValidSKU(%q) = %v, want %v", tt.sku, got, tt.ok)
		}
	}
}

func TestValidQuantity(t *testing.T) {
	for q, ok := range map[int]bool{-1: false, 0: false, 1: true, MaxQuantity: true, MaxQuantity + 1: false} {
		if got := ValidQuantity(q); got != ok {
			t.Errorf("ValidQuantity(%d) = %v, want %v", q, got, ok)
		}
	}
}

// FuzzMoney: every amount either parses to what it prints, or is refused.
func FuzzMoney(f *testing.F) {
	for _, s := range []string{`"19.99"`, `1999`, `"-0.5"`, `1e3`, `"999999999999.99"`, `"1.999"`, `-`, `""`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Money
		if err := m.UnmarshalJSON(b); err != nil {
			return
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back Money
		if err := back.UnmarshalJSON(out); err != nil || back != m {
			t.Fatalf("%q -> %s -> %v (%v)", b, out, back, err)
		}
	})
}
