package auth

import (
	"testing"
	"time"

	"github.com/trackops/trackops/internal/httpapi"
)

func TestKeyCacheIsBoundedAndExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newKeyCache(3, 30*time.Second)
	c.now = func() time.Time { return now }
	for i := byte(0); i < 10; i++ {
		c.put([32]byte{i}, &keyEntry{principal: httpapi.Principal{ID: string('a' + rune(i))}})
		if n := len(c.m); n > 3 {
			t.Fatalf("cache holds %d entries, bound is 3", n)
		}
	}
	if c.get([32]byte{9}) == nil {
		t.Fatalf("the newest entry is missing")
	}
	now = now.Add(31 * time.Second)
	if c.get([32]byte{9}) != nil {
		t.Errorf("entry served after its TTL")
	}
	c.put([32]byte{42}, &keyEntry{principal: httpapi.Principal{ID: "x"}})
	c.dropID("x")
	if c.get([32]byte{42}) != nil {
		t.Errorf("dropped entry still served")
	}
}
