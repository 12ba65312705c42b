package auth_test

import (
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/auth"
)

func TestReadPasswordTakesTheFirstLine(t *testing.T) {
	for in, want := range map[string]string{
		"s3cret\n":          "s3cret",
		"s3cret\r\nmore\n":  "s3cret",
		"no newline at end": "no newline at end",
		" spaces kept \n":   " spaces kept ",
	} {
		if got, err := auth.ReadPassword(strings.NewReader(in)); err != nil || got != want {
			t.Errorf("ReadPassword(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "\n", "\r\n"} {
		if _, err := auth.ReadPassword(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("ReadPassword(%q): %v, want an error saying it was empty", in, err)
		}
	}
	if _, err := auth.ReadPassword(nil); err == nil {
		t.Error("ReadPassword(nil) gave a password")
	}
}
