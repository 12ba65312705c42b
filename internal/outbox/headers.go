package outbox

import (
	"bytes"
	"encoding/json"

	"github.com/twmb/franz-go/pkg/kgo"
)

// parseHeaders turns an outbox row's headers (a JSON object of strings, as
// Write stores it and jsonb prints it) into record headers. Plain strings
// are cut out of the text directly, which costs a fraction of
// encoding/json; anything else (escapes, other value types) goes through
// encoding/json into a map of strings, and gives no headers when that
// fails, as the relay always did.
func parseHeaders(b []byte) []kgo.RecordHeader {
	if len(b) == 0 {
		return nil
	}
	if bytes.IndexByte(b, '\\') < 0 {
		if hs, ok := parsePlainHeaders(b); ok {
			return hs
		}
	}
	var m map[string]string
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	hs := make([]kgo.RecordHeader, 0, len(m))
	for k, v := range m {
		hs = append(hs, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	return hs
}

// parsePlainHeaders parses {"k": "v", ...} without escapes; ok is false for
// anything else.
func parsePlainHeaders(b []byte) (hs []kgo.RecordHeader, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil, skipSpace(b, i+1) == len(b)
	}
	hs = make([]kgo.RecordHeader, 0, 4)
	for {
		var k, v []byte
		if k, i, ok = plainString(b, i); !ok {
			return nil, false
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		if v, i, ok = plainString(b, skipSpace(b, i+1)); !ok {
			return nil, false
		}
		hs = append(hs, kgo.RecordHeader{Key: string(k), Value: v})
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return hs, skipSpace(b, i+1) == len(b)
		default:
			return nil, false
		}
	}
}

// plainString reads a JSON string without escapes starting at b[i].
func plainString(b []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	end := bytes.IndexByte(b[i+1:], '"')
	if end < 0 {
		return nil, i, false
	}
	s = b[i+1 : i+1+end]
	for _, c := range s {
		if c < 0x20 {
			return nil, i, false
		}
	}
	return s, i + end + 2, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
