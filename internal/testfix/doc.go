// Package testfix is the one fixture layer of TrackOps' tests and
// benchmarks: free loopback ports, a TCP proxy that can cut a connection,
// private redis-server processes (standalone or a Redis Cluster) a test may
// kill, freeze and restart, self-signed TLS certificates, and the trackops
// binary run as a child process.
//
// It does not import testing, so the benchmark scenarios of `trackops
// bench` (internal/bench), which run the real binary outside tests, use the
// same launchers. Test helpers (cachetest, e2e) wrap it with t.Cleanup and
// t.Fatal. A program the fixtures start that is missing is an error, never a
// reason to skip: the project's set-up (scripts/ensure-services.sh)
// installs it.
package testfix
