package events

import "testing"

// FuzzDecode: the consumers' envelope decoder refuses or decodes any record
// value without panicking, and what it decodes names a type and an id.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"ORDER_CREATED","subject":"x","data":{}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, value []byte) {
		env, err := Decode(value)
		if err != nil {
			return
		}
		if env.Type == "" || env.ID == "" {
			t.Fatalf("%q decoded without type or id: %+v", value, env)
		}
	})
}
