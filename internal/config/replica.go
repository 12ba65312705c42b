package config

import (
	"fmt"
	"time"
)

// Read replica settings of the Database section.
//
//	TRACKOPS_DATABASE_READ_URL      empty (reads on the primary)
//	TRACKOPS_DATABASE_READ_MAX_LAG  10s

// MaxReadLagLimit bounds TRACKOPS_DATABASE_READ_MAX_LAG: a cache miss may be
// loaded from the replica, and the cache's stale set-back guard (version
// tombstones living 2 minutes, loads cut at half of that) holds only for
// rows read less than a minute behind the primary.
const MaxReadLagLimit = time.Minute

func (d *Database) loadReplica(e *env) {
	d.ReadURL = e.str("TRACKOPS_DATABASE_READ_URL", "")
	d.ReadMaxLag = e.duration("TRACKOPS_DATABASE_READ_MAX_LAG", 10*time.Second)
}

func (d Database) validateReplica() []error {
	var errs []error
	if d.ReadURL != "" {
		if err := checkDatabaseURL("TRACKOPS_DATABASE_READ_URL", d.ReadURL); err != nil {
			errs = append(errs, err)
		}
	}
	if d.ReadMaxLag <= 0 || d.ReadMaxLag >= MaxReadLagLimit {
		errs = append(errs, fmt.Errorf("TRACKOPS_DATABASE_READ_MAX_LAG=%s: want a positive duration below %s, such as 10s", d.ReadMaxLag, MaxReadLagLimit))
	}
	return errs
}

// ReadReplica reports whether read-only queries go to a replica.
func (d Database) ReadReplica() bool { return d.ReadURL != "" }
