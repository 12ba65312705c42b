// Package repocheck holds tests over the repository itself rather than over
// one package: the documentation renders (tables whole, relative links
// pointing at files that exist) and every Go module TrackOps is built from
// carries a licence compatible with its own Apache-2.0 (docs/licenses.md
// lists them and is checked against the build).
package repocheck
