package outbox

import (
	"encoding/json"
	"sort"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestParseHeadersMatchesEncodingJSON: the fast path for plain strings and
// the encoding/json fallback give the headers decoding into a
// map[string]string gives (none when that fails).
func TestParseHeadersMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"event_id": "e-1", "event_type": "ORDER_CREATED", "correlation_id": "c-9"}`,
		`{"event_id":"e-1","traceparent":"00-abc-def-01"}`,
		` { } `,
		`{"quoted": "a \"b\" c", "tab": "x\ty", "unicode": "\u00e9"}`,
		`{"n": 3, "s": "kept"}`,
		`{"s": "v",}`,
		`not json`,
		``,
	} {
		got := parseHeaders([]byte(in))
		var m map[string]string
		var want []kgo.RecordHeader
		if json.Unmarshal([]byte(in), &m) == nil {
			for k, v := range m {
				want = append(want, kgo.RecordHeader{Key: k, Value: []byte(v)})
			}
		}
		if !sameHeaders(got, want) {
			t.Errorf("parseHeaders(%q) = %v, want %v", in, got, want)
		}
	}
}

func sameHeaders(a, b []kgo.RecordHeader) bool {
	key := func(hs []kgo.RecordHeader) []string {
		out := make([]string, len(hs))
		for i, h := range hs {
			out[i] = h.Key + "=" + string(h.Value)
		}
		sort.Strings(out)
		return out
	}
	ka, kb := key(a), key(b)
	if len(ka) != len(kb) {
		return false
	}
	for i := range ka {
		if ka[i] != kb[i] {
			return false
		}
	}
	return true
}
