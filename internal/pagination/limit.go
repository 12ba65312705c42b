package pagination

import (
	"strconv"

	"github.com/trackops/trackops/internal/validation"
)

// Page size bounds of the order and inventory list endpoints.
const (
	DefaultSize = 20
	MaxSize     = 100
)

// Limit reads a page-size query value: def when raw is empty, otherwise a
// whole number from 1 to max, or a "limit" field error in errs.
func Limit(raw string, def, max int, errs *validation.Errors) int {
	if raw == "" {
		return def
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > max {
		errs.Add("limit", "must be a whole number from 1 to %d", max)
	}
	return n
}
