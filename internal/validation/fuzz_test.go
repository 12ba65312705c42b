package validation

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRawJSONProblem: a JSON document RawJSONProblem accepts decodes to
// strings (keys and values) without NUL, and a refused one really holds
// something jsonb refuses.
func FuzzRawJSONProblem(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, `{"a\u0000":1}`, `"\ud800"`, `"\ud83d\ude00"`, `"\\u0000"`, `["\u00e9"]`, "\"\xff\"", `"\uDC00\uD800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		p := RawJSONProblem(raw)
		var doc any
		if err := json.Unmarshal(raw, &doc); err != nil {
			return
		}
		nul := hasNUL(doc)
		if p == "" && nul {
			t.Fatalf("%q accepted but decodes to a NUL", raw)
		}
		if p != "" && !nul && utf8.Valid(raw) && !strings.Contains(p, "surrogate") {
			t.Fatalf("%q refused (%s) but holds no NUL", raw, p)
		}
	})
}

func hasNUL(doc any) bool {
	switch d := doc.(type) {
	case string:
		return strings.IndexByte(d, 0) >= 0
	case []any:
		for _, e := range d {
			if hasNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, v := range d {
			if strings.IndexByte(k, 0) >= 0 || hasNUL(v) {
				return true
			}
		}
	}
	return false
}

// FuzzTextProblem: accepted text is UTF-8 without NUL.
func FuzzTextProblem(f *testing.F) {
	f.Add("abc")
	f.Add("a\x00")
	f.Add("\xff")
	f.Fuzz(func(t *testing.T, s string) {
		if TextProblem(s) == "" && (!utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0) {
			t.Fatalf("%q accepted", s)
		}
	})
}
