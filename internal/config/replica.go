package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Read replica settings, in a block of their own.
//
//	TRACKOPS_DATABASE_READ_URL      empty (reads on the primary)
//	TRACKOPS_DATABASE_READ_MAX_LAG  10s

// MaxReadLagLimit bounds TRACKOPS_DATABASE_READ_MAX_LAG: a cache miss may be
// loaded from the replica, and the cache's stale set-back guard (version
// tombstones living 2 minutes, loads cut at half of that) holds only for
// rows read less than a minute behind the primary.
const MaxReadLagLimit = time.Minute

func (c *Config) loadReplica(e *env) {
	c.DatabaseReadURL = e.str("TRACKOPS_DATABASE_READ_URL", "")
	c.DatabaseReadMaxLag = e.duration("TRACKOPS_DATABASE_READ_MAX_LAG", 10*time.Second)
}

func (c Config) validateReplica() []error {
	var errs []error
	if c.DatabaseReadURL != "" {
		if _, err := pgconn.ParseConfig(c.DatabaseReadURL); err != nil {
			reason := err.Error()
			if i := strings.LastIndex(reason, ": "); i >= 0 {
				reason = reason[i+2:]
			}
			errs = append(errs, fmt.Errorf("TRACKOPS_DATABASE_READ_URL is not a PostgreSQL URL (%s); want the form %s", reason, DatabaseURLForm))
		}
	}
	if c.DatabaseReadMaxLag <= 0 || c.DatabaseReadMaxLag >= MaxReadLagLimit {
		errs = append(errs, fmt.Errorf("TRACKOPS_DATABASE_READ_MAX_LAG=%s: want a positive duration below %s, such as 10s", c.DatabaseReadMaxLag, MaxReadLagLimit))
	}
	return errs
}

// ReadReplica reports whether read-only queries go to a replica.
func (c Config) ReadReplica() bool { return c.DatabaseReadURL != "" }
