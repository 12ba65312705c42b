package app

import (
	"fmt"
	"sort"
	"strings"
)

// Role names a part of the platform a process runs; `trackops run --roles`
// picks a subset so the same binary scales out as separate processes.
type Role string

// Roles a process can run.
const (
	RoleOrders    Role = "orders"
	RoleInventory Role = "inventory"
	RoleRelay     Role = "relay"
	RoleCDC       Role = "cdc"
	RoleConsole   Role = "console"
)

// AllRoles is the default: the whole platform in one process.
var AllRoles = []Role{RoleOrders, RoleInventory, RoleRelay, RoleCDC, RoleConsole}

// Roles is a set of roles.
type Roles map[Role]bool

// ParseRoles reads a comma list such as "orders,relay"; "" or "all" is every role.
func ParseRoles(s string) (Roles, error) {
	rs := Roles{}
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		for _, r := range AllRoles {
			rs[r] = true
		}
		return rs, nil
	}
	for _, part := range strings.Split(s, ",") {
		r := Role(strings.TrimSpace(strings.ToLower(part)))
		known := false
		for _, k := range AllRoles {
			known = known || k == r
		}
		if !known {
			return nil, fmt.Errorf("unknown role %q: want a comma list of orders, inventory, relay, cdc, console", part)
		}
		rs[r] = true
	}
	return rs, nil
}

// Has reports whether r is in the set.
func (rs Roles) Has(r Role) bool { return rs[r] }

// String lists the roles, sorted.
func (rs Roles) String() string {
	names := make([]string, 0, len(rs))
	for r := range rs {
		names = append(names, string(r))
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}
