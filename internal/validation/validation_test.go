package validation

import (
	"errors"
	"fmt"
	"testing"
)

func TestDescribe(t *testing.T) {
	var errs Errors
	errs.Add("name", "is required")
	errs.Add("role", "must be viewer, operator or admin")
	if got := Describe(fmt.Errorf("create key: %w", errs.Err())); got.Error() != "name is required; role must be viewer, operator or admin" {
		t.Errorf("Describe = %q", got)
	}
	other := errors.New("connection refused")
	if got := Describe(other); got != other {
		t.Errorf("Describe changed a plain error: %v", got)
	}
}
