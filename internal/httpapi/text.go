package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/trackops/trackops/internal/validation"
)

// Text at the edge. PostgreSQL refuses a NUL character in text and jsonb
// (SQLSTATE 22P05, 22021) and any byte sequence that is not UTF-8 (22021);
// jsonb also refuses lone UTF-16 surrogate escapes (22P02) and numbers beyond
// numeric's range (22003). Every string a request carries — JSON values and
// object keys, query parameters, the path — is checked here, before any
// handler runs a query, so the client gets a 4xx naming the field instead of
// a failed write.

// maxRawNumberExp bounds the decimal exponent of a number kept as raw JSON
// (json.RawMessage): far beyond any real value, far inside numeric's range.
const maxRawNumberExp = 300

// checkDecoded walks a decoded request body and reports every string (value
// or map key) that cannot be stored as text, naming it by its JSON path
// (e.g. items[2].sku). Raw JSON kept as is (json.RawMessage, or a []byte
// type with its own UnmarshalJSON) is checked and normalised: re-encoded
// from its decoded form so that what is stored is what was checked.
func checkDecoded(v any) validation.Errors {
	var errs validation.Errors
	walk(reflect.ValueOf(v), "", &errs)
	return errs
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func walk(v reflect.Value, path string, errs *validation.Errors) {
	if !v.IsValid() {
		return
	}
	if isRawJSON(v) {
		checkRaw(v, path, errs)
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walk(v.Elem(), path, errs)
		}
	case reflect.String:
		if p := validation.TextProblem(v.String()); p != "" {
			errs.Add(nameOr(path), "%s", p)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if f.Anonymous && f.Tag.Get("json") == "" {
				walk(v.Field(i), path, errs)
				continue
			}
			walk(v.Field(i), join(path, name), errs)
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return // base64 bytes, not text
		}
		for i := range v.Len() {
			walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			name := fmt.Sprint(k.Interface())
			if k.Kind() == reflect.String {
				if p := validation.TextProblem(k.String()); p != "" {
					errs.Add(nameOr(path), "object key %s %s", strconv.QuoteToASCII(k.String()), p)
					continue
				}
			}
			walk(v.MapIndex(k), join(path, name), errs)
		}
	}
}

func nameOr(path string) string {
	if path == "" {
		return "body"
	}
	return path
}

// isRawJSON reports whether v holds JSON text kept undecoded.
func isRawJSON(v reflect.Value) bool {
	t := v.Type()
	if t == reflect.TypeFor[json.RawMessage]() {
		return true
	}
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 && reflect.PointerTo(t).Implements(unmarshalerType)
}

// checkRaw checks raw JSON the way jsonb will read it and, when it is fine
// and settable, replaces it by its normalised encoding.
func checkRaw(v reflect.Value, path string, errs *validation.Errors) {
	raw := v.Bytes()
	if len(raw) == 0 {
		return
	}
	if p := validation.RawJSONProblem(raw); p != "" {
		errs.Add(nameOr(path), "%s", p)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		errs.Add(nameOr(path), "must be valid JSON")
		return
	}
	before := len(*errs)
	walkDoc(doc, path, errs)
	if len(*errs) > before || !v.CanSet() {
		return
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		errs.Add(nameOr(path), "must be valid JSON")
		return
	}
	v.SetBytes(bytes.TrimRight(out.Bytes(), "\n"))
}

// walkDoc checks a decoded JSON document (from json.Decoder with UseNumber).
func walkDoc(doc any, path string, errs *validation.Errors) {
	switch d := doc.(type) {
	case string:
		if p := validation.TextProblem(d); p != "" {
			errs.Add(nameOr(path), "%s", p)
		}
	case json.Number:
		if _, err := strconv.ParseFloat(string(d), 64); err != nil || exponent(string(d)) > maxRawNumberExp {
			errs.Add(nameOr(path), "number %s is out of range", truncate(string(d), 32))
		}
	case []any:
		for i, e := range d {
			walkDoc(e, fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(d)) {
			if p := validation.TextProblem(k); p != "" {
				errs.Add(nameOr(path), "object key %s %s", strconv.QuoteToASCII(k), p)
				continue
			}
			walkDoc(d[k], join(path, k), errs)
		}
	}
}

// exponent is the magnitude of a JSON number's decimal exponent, counting
// the digits before the point too (1e5 and 100000 are both 5).
func exponent(n string) int {
	n = strings.TrimLeft(n, "-")
	mant, exp, _ := strings.Cut(strings.ToLower(n), "e")
	e, _ := strconv.Atoi(exp)
	intPart, _, _ := strings.Cut(mant, ".")
	e += len(strings.TrimLeft(intPart, "0"))
	if e < 0 {
		e = -e
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// CheckRequestText reports the query parameters (names and values) and
// path of r that are not storable text: not UTF-8, or holding NUL. The
// router answers 400 for them before any handler runs.
func CheckRequestText(r *http.Request) validation.Errors {
	var errs validation.Errors
	if p := validation.TextProblem(r.URL.Path); p != "" {
		errs.Add("path", "%s", p)
	}
	if r.URL.RawQuery == "" {
		return errs
	}
	q, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		errs.Add("query", "is not a valid URL query: %v", err)
		return errs
	}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if p := validation.TextProblem(k); p != "" {
			errs.Add("query", "parameter name %s %s", strconv.QuoteToASCII(k), p)
			continue
		}
		for _, val := range q[k] {
			if p := validation.TextProblem(val); p != "" {
				errs.Add(k, "%s", p)
				break
			}
		}
	}
	return errs
}

func parseQuery(raw string) (map[string][]string, error) {
	out := map[string][]string{}
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k, err := unescape(k)
		if err != nil {
			return nil, err
		}
		v, err = unescape(v)
		if err != nil {
			return nil, err
		}
		out[k] = append(out[k], v)
	}
	return out, nil
}

func unescape(s string) (string, error) {
	s = strings.ReplaceAll(s, "+", " ")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated percent escape")
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad percent escape %q", s[i:i+3])
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), nil
}

// readBody reads a request body (already bounded by the router's
// MaxBytesReader) and refuses one that is not UTF-8: the JSON decoder would
// otherwise replace the bad bytes silently.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, &BadRequestError{statusFor(err), describeJSONError(err)}
	}
	if !utf8.Valid(b) {
		off := 0
		for off < len(b) {
			c, size := utf8.DecodeRune(b[off:])
			if c == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return nil, &BadRequestError{http.StatusBadRequest, fmt.Sprintf("request body is not valid UTF-8 (byte %d)", off)}
	}
	return b, nil
}
