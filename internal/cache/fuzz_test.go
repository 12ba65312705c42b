package cache_test

import (
	"testing"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/validation"
)

// FuzzSettingName: an accepted flag or config name is storable text that
// makes a well-formed Redis key.
func FuzzSettingName(f *testing.F) {
	for _, s := range []string{"x", "feature.new-checkout", "A", "a\x00", "", "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if cache.ValidateSettingName(name) != nil {
			return
		}
		if validation.TextProblem(name) != "" || len(name) > 100 || name == "" {
			t.Fatalf("name %q accepted", name)
		}
	})
}
