package cache

// SetJoinedFlightHook lets tests know when a GetOrLoad caller has joined a
// load, to build deterministic interleavings.
func SetJoinedFlightHook(v *Versioned, f func()) { v.joinedFlight = f }

// NearListenerID is the Redis client id of the stores' near cache listener
// connection (0 before it first connects), for tests that kill it.
func NearListenerID(s *Stores) int64 { return s.near.clientID.Load() }
