// Command benchdocs regenerates the figures of docs/benchmarks.md and the
// charts in docs/bench/ from the results `make bench` and `make bench-sweep`
// wrote to bench/results/, so the document cannot drift from a run. It runs
// from the repository root (make bench-docs).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/trackops/trackops/internal/bench"
)

func main() {
	results := flag.String("results", "bench/results", "directory of latest.json and sweep.json")
	doc := flag.String("doc", "docs/benchmarks.md", "document whose generated sections are rewritten")
	charts := flag.String("charts", "docs/bench", "directory the SVG charts are written to")
	flag.Parse()
	if err := run(*results, *doc, *charts); err != nil {
		fmt.Fprintln(os.Stderr, "benchdocs:", err)
		os.Exit(1)
	}
}

func run(results, doc, charts string) error {
	res, err := bench.LoadResults(results)
	if err != nil {
		return err
	}
	md, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	out, err := bench.RenderDoc(md, res)
	if err != nil {
		return fmt.Errorf("%s: %w", doc, err)
	}
	if err := os.WriteFile(doc, out, 0o644); err != nil {
		return err
	}
	svgs, err := bench.Charts(res)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(charts, 0o755); err != nil {
		return err
	}
	for name, b := range svgs {
		if err := os.WriteFile(filepath.Join(charts, name), b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("benchdocs: wrote %s and %d charts in %s\n", doc, len(svgs), charts)
	return nil
}
