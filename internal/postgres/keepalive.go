package postgres

import (
	"net/url"
	"strings"
)

// serverKeepalives are the server settings WithServerKeepalives adds: the
// server probes an idle session after 2 s, every second, and gives it up
// after 3 unanswered probes or 5 s of unacknowledged data.
var serverKeepalives = [][2]string{
	{"tcp_keepalives_idle", "2"},
	{"tcp_keepalives_interval", "1"},
	{"tcp_keepalives_count", "3"},
	{"tcp_user_timeout", "5000"},
}

// WithServerKeepalives returns connString (a libpq URL or keyword/value
// string) with server-side TCP keepalive settings sent as startup
// parameters, unless it names them already. A session-level advisory lock
// (a lease) lives as long as its session; when its holder's host vanishes
// or is cut off without closing the connection, the server would otherwise
// keep the session, and the lock, until the kernel's keepalive gives up —
// two hours by default. With these settings the server ends it within
// about five seconds, so another process can take the lease. Use it only
// for direct connections: PgBouncer refuses unknown startup parameters.
func WithServerKeepalives(connString string) string {
	if strings.Contains(connString, "://") {
		u, err := url.Parse(connString)
		if err != nil {
			return connString
		}
		q := u.Query()
		for _, kv := range serverKeepalives {
			if !q.Has(kv[0]) {
				q.Set(kv[0], kv[1])
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	out := connString
	for _, kv := range serverKeepalives {
		if !strings.Contains(connString, kv[0]) {
			out += " " + kv[0] + "=" + kv[1]
		}
	}
	return strings.TrimSpace(out)
}
