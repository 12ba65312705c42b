package commerce

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Money is an amount in minor units (cents). Amounts are never floats: JSON
// carries them as decimal strings ("19.99") or as whole minor units (1999).
type Money int64

// ErrBadMoney is returned for amounts that are not a decimal with at most
// two fraction digits.
var ErrBadMoney = errors.New(`must be a decimal string such as "19.99" or whole minor units such as 1999`)

// ParseMoney parses a decimal string with at most two fraction digits.
func ParseMoney(s string) (Money, error) {
	s = strings.TrimSpace(s)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, hasFrac := strings.Cut(s, ".")
	if whole == "" || len(whole) > 12 || (hasFrac && (len(frac) == 0 || len(frac) > 2)) || !digits(whole) || !digits(frac) {
		return 0, ErrBadMoney
	}
	for len(frac) < 2 {
		frac += "0"
	}
	w, _ := strconv.ParseInt(whole, 10, 64)
	f, _ := strconv.ParseInt(frac, 10, 64)
	m := Money(w*100 + f)
	if neg {
		m = -m
	}
	return m, nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// String formats the amount with two fraction digits.
func (m Money) String() string {
	sign := ""
	if m < 0 {
		sign, m = "-", -m
	}
	return fmt.Sprintf("%s%d.%02d", sign, m/100, m%100)
}

// MarshalJSON writes the amount as a decimal string.
func (m Money) MarshalJSON() ([]byte, error) { return json.Marshal(m.String()) }

// UnmarshalJSON reads a decimal string or whole minor units; floats are
// refused.
func (m *Money) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return ErrBadMoney
		}
		v, err := ParseMoney(s)
		if err != nil {
			return err
		}
		*m = v
		return nil
	}
	// At most 14 digits of minor units, the same range as the decimal
	// string's 12 whole digits (both up to 999,999,999,999.99), so every
	// amount read can be written back and read again.
	if u := strings.TrimPrefix(string(b), "-"); u == "" || !digits(u) || len(u) > 14 {
		return ErrBadMoney
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return ErrBadMoney
	}
	*m = Money(v)
	return nil
}
