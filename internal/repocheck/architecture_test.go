package repocheck

import (
	"flag"
	"fmt"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var updateArchitecture = flag.Bool("update-architecture", false, "rewrite README.md's import graph from the code")

const modulePath = "github.com/trackops/trackops"

// Layers of the architecture, lowest first. A package may import packages
// of its own layer or lower ones, never a higher one.
const (
	// layerVocabulary: the words every part shares — the event contract,
	// the commerce vocabulary, field errors. Standard library only.
	layerVocabulary = iota
	// layerInfrastructure: transports, storage and observability, with no
	// business rules: HTTP routing, Kafka, PostgreSQL, Redis, the inbox
	// and outbox, the generic CDC engine.
	layerInfrastructure
	// layerServices: the boxes of the architecture, one package each; a
	// service's HTTP adapter is its http.go, which uses httpapi as a
	// toolkit.
	layerServices
	// layerWiring: internal/app alone, which builds every part.
	layerWiring
	// layerCommands: the binaries.
	layerCommands
	// layerTestSupport: fixtures and tests over the repository; no
	// production package imports them.
	layerTestSupport
)

var layerNames = map[int]string{
	layerVocabulary:     "vocabulary",
	layerInfrastructure: "infrastructure",
	layerServices:       "services",
	layerWiring:         "wiring",
	layerCommands:       "commands",
	layerTestSupport:    "test support",
}

// layers places every package of the module. A new package fails the test
// until it is placed here, which is the moment to decide what it may
// import.
var layers = map[string]int{
	"internal/commerce":   layerVocabulary,
	"internal/events":     layerVocabulary,
	"internal/validation": layerVocabulary,

	"internal/cache":      layerInfrastructure,
	"internal/cdc":        layerInfrastructure,
	"internal/config":     layerInfrastructure,
	"internal/cpusteal":   layerInfrastructure,
	"internal/httpapi":    layerInfrastructure,
	"internal/inbox":      layerInfrastructure,
	"internal/kafka":      layerInfrastructure,
	"internal/lease":      layerInfrastructure,
	"internal/logging":    layerInfrastructure,
	"internal/metrics":    layerInfrastructure,
	"internal/outbox":     layerInfrastructure,
	"internal/pagination": layerInfrastructure,
	"internal/postgres":   layerInfrastructure,
	"internal/progress":   layerInfrastructure,
	"internal/runinfo":    layerInfrastructure,
	// Private servers and child processes: the tests' fixtures, and what
	// `trackops bench` starts its scenarios with.
	"internal/testfix":   layerInfrastructure,
	"internal/tlsconfig": layerInfrastructure,
	"internal/tracing":   layerInfrastructure,

	"internal/audit":       layerServices,
	"internal/auth":        layerServices,
	"internal/bench":       layerServices,
	"internal/cdc/connect": layerServices,
	"internal/console":     layerServices,
	"internal/dlq":         layerServices,
	"internal/health":      layerServices,
	"internal/inventory":   layerServices,
	"internal/journey":     layerServices,
	"internal/ops":         layerServices,
	"internal/order":       layerServices,

	"internal/app": layerWiring,

	"cmd/trackops":             layerCommands,
	"internal/bench/benchdocs": layerCommands,

	"internal/app/apptest":           layerTestSupport,
	"internal/auth/authtest":         layerTestSupport,
	"internal/cache/cachetest":       layerTestSupport,
	"internal/e2e":                   layerTestSupport,
	"internal/httpapi/edgetest":      layerTestSupport,
	"internal/kafka/kafkatest":       layerTestSupport,
	"internal/postgres/postgrestest": layerTestSupport,
	"internal/repocheck":             layerTestSupport,
	"internal/tracing/tracingtest":   layerTestSupport,
}

// vocabularyMayImport is what the vocabulary imports besides the standard
// library: nothing but the UUID type.
var vocabularyMayImport = []string{"github.com/google/uuid"}

// domainMayImport is what a service's domain files (domain*.go) import
// besides the standard library: plain rules without I/O, testable without
// PostgreSQL, Kafka or HTTP.
var domainMayImport = []string{
	"github.com/google/uuid",
	modulePath + "/internal/commerce",
	modulePath + "/internal/events",
	modulePath + "/internal/validation",
}

// transports are the packages that tie code to a transport or a database.
var transports = []string{
	"net/http", modulePath + "/internal/httpapi",
	"github.com/twmb/franz-go", modulePath + "/internal/kafka",
	"github.com/jackc/pgx", modulePath + "/internal/postgres",
}

func isTransport(imp string) bool {
	for _, t := range transports {
		if imp == t || strings.HasPrefix(imp, t+"/") {
			return true
		}
	}
	return false
}

func isStd(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

// goPackage is one package of the module as the build sees it.
type goPackage struct {
	rel   string // path below the module, e.g. internal/order
	dir   string
	files map[string][]string // non-test file name -> its imports
	// imports are the non-test imports; testImports add the test files'.
	imports, testImports []string
}

// loadPackages reads every package of the module (not deploy/k8s, a module
// of its own) with go/build, which applies the build constraints.
func loadPackages(t *testing.T, root string) map[string]*goPackage {
	t.Helper()
	pkgs := map[string]*goPackage{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		rel, _ := filepath.Rel(root, path)
		if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || rel == "deploy" || rel == "bin" || rel == "data") {
			return filepath.SkipDir
		}
		bp, err := build.Default.ImportDir(path, 0)
		if err != nil {
			if _, none := err.(*build.NoGoError); none {
				return nil
			}
			return fmt.Errorf("%s: %w", rel, err)
		}
		p := &goPackage{rel: filepath.ToSlash(rel), dir: path, files: map[string][]string{},
			imports: bp.Imports, testImports: append(append([]string{}, bp.TestImports...), bp.XTestImports...)}
		fset := token.NewFileSet()
		for _, f := range bp.GoFiles {
			af, err := parser.ParseFile(fset, filepath.Join(path, f), nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, is := range af.Imports {
				imp, _ := strconv.Unquote(is.Path.Value)
				p.files[f] = append(p.files[f], imp)
			}
		}
		pkgs[p.rel] = p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// internalImports are imp's packages of the module, as paths below it.
func internalImports(imps []string) []string {
	var out []string
	for _, imp := range imps {
		if rel, ok := strings.CutPrefix(imp, modulePath+"/"); ok {
			out = append(out, rel)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestArchitecture holds the import graph to the architecture README.md
// draws: layers that import only downwards, domain files free of any
// transport, event handlers and HTTP adapters where they belong, nothing
// but the binary importing internal/app, no cycles — and README.md's graph
// is this one.
func TestArchitecture(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	pkgs := loadPackages(t, root)
	for _, rel := range slices.Sorted(mapsKeys(pkgs)) {
		p := pkgs[rel]
		layer, ok := layers[rel]
		if !ok {
			t.Errorf("%s is in no layer: place it in layers (internal/repocheck/architecture_test.go)", rel)
			continue
		}
		for _, imp := range internalImports(p.imports) {
			il, ok := layers[imp]
			switch {
			case !ok:
				// reported on its own
			case il == layerTestSupport && layer != layerTestSupport:
				t.Errorf("%s imports the test fixture %s outside its tests", rel, imp)
			case il > layer && layer != layerTestSupport:
				t.Errorf("%s (%s) imports %s upwards (%s)", rel, layerNames[layer], imp, layerNames[il])
			}
		}
		if layer == layerVocabulary {
			for _, imp := range p.imports {
				if !isStd(imp) && !slices.Contains(vocabularyMayImport, imp) {
					t.Errorf("%s is vocabulary but imports %s: the vocabulary is the standard library's words only", rel, imp)
				}
			}
		}
		if rel != "cmd/trackops" && rel != "internal/app" {
			for _, imp := range append(append([]string{}, p.imports...), p.testImports...) {
				if imp == modulePath+"/internal/app" {
					t.Errorf("%s imports internal/app: only the binary does; build what a test needs from the parts' constructors", rel)
				}
			}
		}
	}
	checkServices(t, pkgs)
	if cycle := findCycle(pkgs); cycle != nil {
		t.Errorf("import cycle: %s", strings.Join(cycle, " → "))
	}
	checkReadmeGraph(t, root, pkgs)
}

// checkServices holds the two services to their shape: domain rules in
// domain*.go, importing no transport; event handlers that never see Kafka;
// the HTTP adapter in http.go; and neither service importing the other
// (they share the commerce vocabulary and talk through events).
func checkServices(t *testing.T, pkgs map[string]*goPackage) {
	t.Helper()
	for _, svc := range []string{"internal/order", "internal/inventory"} {
		p, ok := pkgs[svc]
		if !ok {
			t.Fatalf("%s not found", svc)
		}
		domainFiles := 0
		for _, file := range slices.Sorted(mapsKeys(p.files)) {
			imps := p.files[file]
			where := svc + "/" + file
			if strings.HasPrefix(file, "domain") {
				domainFiles++
				for _, imp := range imps {
					if !isStd(imp) && !slices.Contains(domainMayImport, imp) {
						t.Errorf("%s is a domain file but imports %s (domain files import only the standard library, %s)",
							where, imp, strings.Join(domainMayImport, ", "))
					}
					if isTransport(imp) {
						t.Errorf("%s is a domain file but imports the transport %s", where, imp)
					}
				}
			}
			for _, imp := range imps {
				switch {
				case imp == modulePath+"/internal/kafka":
					t.Errorf("%s imports internal/kafka: event handlers are events.Handlers; the Kafka runner decodes and dead-letters", where)
				case strings.HasPrefix(imp, "github.com/twmb/franz-go") && where != "internal/order/changestream.go":
					t.Errorf("%s imports %s: only the order change stream hands records to the CDC engine", where, imp)
				case (imp == "net/http" || imp == modulePath+"/internal/httpapi") && file != "http.go":
					t.Errorf("%s imports %s: a service's HTTP adapter is its http.go", where, imp)
				}
			}
		}
		if domainFiles == 0 {
			t.Errorf("%s has no domain*.go file", svc)
		}
		for _, other := range []string{"internal/order", "internal/inventory"} {
			if other != svc && slices.Contains(internalImports(p.imports), other) {
				t.Errorf("%s imports %s: the services share internal/commerce and talk through events", svc, other)
			}
		}
	}
}

// findCycle returns a cycle of non-test imports between the module's
// packages, or nil.
func findCycle(pkgs map[string]*goPackage) []string {
	const (
		unseen = iota
		open
		done
	)
	state := map[string]int{}
	var stack []string
	var visit func(string) []string
	visit = func(rel string) []string {
		state[rel] = open
		stack = append(stack, rel)
		if p, ok := pkgs[rel]; ok {
			for _, imp := range internalImports(p.imports) {
				switch state[imp] {
				case open:
					i := slices.Index(stack, imp)
					return append(append([]string{}, stack[i:]...), imp)
				case unseen:
					if c := visit(imp); c != nil {
						return c
					}
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[rel] = done
		return nil
	}
	for _, rel := range slices.Sorted(mapsKeys(pkgs)) {
		if state[rel] == unseen {
			if c := visit(rel); c != nil {
				return c
			}
		}
	}
	return nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

const (
	graphBegin = "<!-- import graph: generated from the code by TestArchitecture (internal/repocheck); " +
		"`go test ./internal/repocheck -run TestArchitecture -update-architecture` rewrites it -->"
	graphEnd = "<!-- end of import graph -->"
)

// importGraph draws the module's non-test imports by layer, highest first:
// each package and the packages of the module it imports.
func importGraph(pkgs map[string]*goPackage) string {
	short := func(rel string) string { return strings.TrimPrefix(rel, "internal/") }
	width := 0
	for rel := range pkgs {
		if l, placed := layers[rel]; placed && l != layerTestSupport {
			width = max(width, len(short(rel)))
		}
	}
	var b strings.Builder
	b.WriteString("```text\n")
	for layer := layerCommands; layer >= layerVocabulary; layer-- {
		var rels []string
		for rel, l := range layers {
			if _, ok := pkgs[rel]; ok && l == layer {
				rels = append(rels, rel)
			}
		}
		slices.Sort(rels)
		fmt.Fprintf(&b, "%s\n", strings.ToUpper(layerNames[layer]))
		for _, rel := range rels {
			line := fmt.Sprintf("  %-*s", width, short(rel))
			var deps []string
			for _, imp := range internalImports(pkgs[rel].imports) {
				deps = append(deps, short(imp))
			}
			if len(deps) == 0 {
				b.WriteString(strings.TrimRight(line, " ") + "\n")
				continue
			}
			line += " → "
			indent := strings.Repeat(" ", len([]rune(line)))
			for i, d := range deps {
				if i > 0 && len([]rune(line))+1+len(d) > 110 {
					b.WriteString(line + "\n")
					line = indent
				} else if i > 0 {
					line += " "
				}
				line += d
			}
			b.WriteString(line + "\n")
		}
	}
	b.WriteString("```\n")
	return b.String()
}

// checkReadmeGraph compares README.md's import graph with the code's (or
// rewrites it with -update-architecture).
func checkReadmeGraph(t *testing.T, root string, pkgs map[string]*goPackage) {
	t.Helper()
	path := filepath.Join(root, "README.md")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	start := strings.Index(readme, graphBegin)
	end := strings.Index(readme, graphEnd)
	if start < 0 || end < start {
		t.Fatalf("README.md has no import graph between %q and %q", graphBegin, graphEnd)
	}
	want := importGraph(pkgs)
	got := readme[start+len(graphBegin)+1 : end]
	if got == want {
		return
	}
	if *updateArchitecture {
		readme = readme[:start+len(graphBegin)+1] + want + readme[end:]
		if err := os.WriteFile(path, []byte(readme), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's import graph is not the code's; run go test ./internal/repocheck -run TestArchitecture -update-architecture.\nThe code's:\n%s", want)
}
