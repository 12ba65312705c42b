// Package commerce is the vocabulary the Order and Inventory services share:
// what a SKU looks like, how many units one line may ask for, and money.
// Both services import it and neither imports the other; they talk only
// through events (internal/events). Plain rules, standard library only.
package commerce

import "regexp"

// MaxQuantity is the most units one order line may ask for: an order
// refuses more, and inventory refuses to reserve a line no valid order
// holds.
const MaxQuantity = 10_000

// SKUProblem says what a valid SKU is, worded for a field error.
const SKUProblem = "must be 1-64 letters, digits, '.', '-' or '_', starting with a letter or digit"

var skuPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidSKU reports whether s is a well-formed SKU: 1–64 letters, digits,
// dots, dashes or underscores, starting with a letter or digit. The same
// rule guards order lines, stock items and the {sku} path segment, so a SKU
// one service accepts the other accepts too.
func ValidSKU(s string) bool { return skuPattern.MatchString(s) }

// ValidQuantity reports whether q units fit one line: 1 to MaxQuantity.
func ValidQuantity(q int) bool { return q >= 1 && q <= MaxQuantity }
