package cache

// SetJoinedFlightHook lets tests know when a GetOrLoad caller has joined a
// load, to build deterministic interleavings.
func SetJoinedFlightHook(v *Versioned, f func()) { v.joinedFlight = f }
