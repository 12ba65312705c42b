package ops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/validation"
)

// Filter selects records in the message browser. Empty fields match
// everything; the set ones must all match.
type Filter struct {
	// Key is a substring of the record key.
	Key string `json:"key,omitempty"`
	// Header is a header name, or name=value for a header with that value.
	Header string `json:"header,omitempty"`
	// JSONPath is a path into the value read as JSON, such as
	// data.customer_id or after.items[0].sku (a leading "$." is allowed);
	// JSONValue is the value it must hold, compared as text (a string
	// without its quotes, a number as written, true, false or null).
	JSONPath  string `json:"json_path,omitempty"`
	JSONValue string `json:"json_value,omitempty"`
	// Text is a case-insensitive substring of the value.
	Text string `json:"text,omitempty"`

	path      []pathStep
	headerKey string
	headerVal string
	headerHas bool
	textLower []byte
}

type pathStep struct {
	key   string
	index int // -1 for an object key
}

// compile checks the filter and prepares it for matching.
func (f *Filter) compile() error {
	var errs validation.Errors
	if f.JSONPath != "" {
		p, err := parsePath(f.JSONPath)
		if err != nil {
			errs.Add("json_path", "%v", err)
		}
		f.path = p
	} else if f.JSONValue != "" {
		errs.Add("json_path", "is required with json_value")
	}
	if f.Header != "" {
		k, v, has := strings.Cut(f.Header, "=")
		f.headerKey, f.headerVal, f.headerHas = k, v, has
	}
	if f.Text != "" {
		f.textLower = bytes.ToLower([]byte(f.Text))
	}
	return errs.Err()
}

// parsePath reads data.items[0].sku into steps.
func parsePath(s string) ([]pathStep, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "$"), ".")
	if s == "" {
		return nil, fmt.Errorf("path %q names nothing", s)
	}
	var out []pathStep
	for _, part := range strings.Split(s, ".") {
		name := part
		var idx []int
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			rest := part[i:]
			for rest != "" {
				if rest[0] != '[' {
					return nil, fmt.Errorf("path part %q: expected [index]", part)
				}
				end := strings.IndexByte(rest, ']')
				if end < 0 {
					return nil, fmt.Errorf("path part %q: missing ]", part)
				}
				n, err := strconv.Atoi(rest[1:end])
				if err != nil || n < 0 {
					return nil, fmt.Errorf("path part %q: index must be a whole number", part)
				}
				idx = append(idx, n)
				rest = rest[end+1:]
			}
		}
		if name == "" && len(idx) == 0 {
			return nil, fmt.Errorf("path %q has an empty part", s)
		}
		if name != "" {
			out = append(out, pathStep{key: name, index: -1})
		}
		for _, n := range idx {
			out = append(out, pathStep{index: n})
		}
	}
	return out, nil
}

// match reports whether rec passes every set part of the filter.
func (f *Filter) match(rec *kgo.Record) bool {
	if f.Key != "" && !bytes.Contains(rec.Key, []byte(f.Key)) {
		return false
	}
	if f.headerKey != "" {
		found := false
		for _, h := range rec.Headers {
			if h.Key == f.headerKey && (!f.headerHas || string(h.Value) == f.headerVal) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if f.textLower != nil && !bytes.Contains(bytes.ToLower(rec.Value), f.textLower) {
		return false
	}
	if f.path != nil {
		v, ok := lookup(rec.Value, f.path)
		if !ok || v != f.JSONValue {
			return false
		}
	}
	return true
}

// lookup reads the value at path in the JSON document doc, as text.
func lookup(doc []byte, path []pathStep) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", false
	}
	for _, st := range path {
		switch node := v.(type) {
		case map[string]any:
			if st.index >= 0 {
				return "", false
			}
			next, ok := node[st.key]
			if !ok {
				return "", false
			}
			v = next
		case []any:
			if st.index < 0 || st.index >= len(node) {
				return "", false
			}
			v = node[st.index]
		case string:
			// A JSON document inside a string (Debezium's io.debezium.data.Json)
			// is read through.
			var inner any
			d := json.NewDecoder(strings.NewReader(node))
			d.UseNumber()
			if d.Decode(&inner) != nil {
				return "", false
			}
			m, ok := inner.(map[string]any)
			if !ok || st.index >= 0 {
				return "", false
			}
			next, ok := m[st.key]
			if !ok {
				return "", false
			}
			v = next
		default:
			return "", false
		}
	}
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case nil:
		return "null", true
	default:
		b, _ := json.Marshal(x)
		return string(b), true
	}
}

// Message is one record as the browser shows it. Key, header values and
// value are text when they are valid UTF-8, else base64 (the *_encoding
// fields say so).
type Message struct {
	Partition     int32           `json:"partition"`
	Offset        int64           `json:"offset"`
	Timestamp     string          `json:"timestamp"`
	Key           *string         `json:"key"`
	KeyEncoding   string          `json:"key_encoding,omitempty"`
	Headers       []MessageHeader `json:"headers"`
	Value         *string         `json:"value"`
	ValueEncoding string          `json:"value_encoding,omitempty"`
	// JSON is true when the value parses as JSON (the console pretty-prints it).
	JSON      bool `json:"json"`
	SizeBytes int  `json:"size_bytes"`
	// Truncated is true when the value was cut to MaxValueBytes.
	Truncated bool `json:"truncated,omitempty"`
}

// MessageHeader is one record header.
type MessageHeader struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Encoding string `json:"encoding,omitempty"`
}

// MaxValueBytes caps a value returned by the browser.
const MaxValueBytes = 256 << 10

func toMessage(rec *kgo.Record) Message {
	m := Message{Partition: rec.Partition, Offset: rec.Offset, Timestamp: rec.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Headers: []MessageHeader{}, SizeBytes: len(rec.Key) + len(rec.Value)}
	if rec.Key != nil {
		k, enc := textOrBase64(rec.Key)
		m.Key, m.KeyEncoding = &k, enc
	}
	for _, h := range rec.Headers {
		v, enc := textOrBase64(h.Value)
		m.Headers = append(m.Headers, MessageHeader{Key: h.Key, Value: v, Encoding: enc})
	}
	if rec.Value != nil {
		val := rec.Value
		m.JSON = json.Valid(val)
		if len(val) > MaxValueBytes {
			val, m.Truncated = val[:MaxValueBytes], true
		}
		v, enc := textOrBase64(val)
		m.Value, m.ValueEncoding = &v, enc
	}
	return m
}

func textOrBase64(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64Std(b), "base64"
}
