package repocheck

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	east "github.com/yuin/goldmark/extension/ast"
	"github.com/yuin/goldmark/text"
)

// docFiles are README.md and every docs/*.md, relative to the root.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	rel := []string{"README.md"}
	for _, f := range files {
		r, _ := filepath.Rel(root, f)
		rel = append(rel, r)
	}
	return rel
}

// TestDocsRender parses README.md and docs/*.md as GitHub renders them
// (CommonMark with GFM tables) and fails on what a reader would see broken:
// a table row that fell out of its table (after a blank line, say), a row
// with more or fewer cells than its header, or a relative link or image
// pointing at a file that does not exist.
func TestDocsRender(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	md := goldmark.New(goldmark.WithExtensions(extension.Table))
	for _, name := range docFiles(t, root) {
		src, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range checkDoc(md, src, filepath.Join(root, filepath.Dir(name))) {
			t.Errorf("%s: %s", name, p)
		}
	}
}

// checkDoc returns the problems of one Markdown document whose relative
// links resolve against dir.
func checkDoc(md goldmark.Markdown, src []byte, dir string) []string {
	var problems []string
	doc := md.Parser().Parse(text.NewReader(src))
	lineOf := func(n ast.Node) int {
		for c := n; c != nil; c = c.FirstChild() {
			if c.Type() == ast.TypeBlock && c.Lines().Len() > 0 {
				return strings.Count(string(src[:c.Lines().At(0).Start]), "\n") + 1
			}
			if t, ok := c.(*ast.Text); ok {
				return strings.Count(string(src[:t.Segment.Start]), "\n") + 1
			}
		}
		return 0
	}
	_ = ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch n := n.(type) {
		case *ast.Paragraph:
			// A GFM table row outside a table renders as a paragraph
			// starting with a pipe.
			if lines := n.Lines(); lines.Len() > 0 {
				seg := lines.At(0)
				first := strings.TrimSpace(string(seg.Value(src)))
				if strings.HasPrefix(first, "|") && strings.Count(first, "|") >= 2 {
					problems = append(problems, "line "+itoa(lineOf(n))+": a table row outside any table (a blank line splits the table?): "+first)
				}
			}
		case *east.Table:
			// goldmark pads short rows and drops extra cells, as GitHub
			// does; the source shows what the author wrote.
			lines := strings.Split(string(src), "\n")
			start := lineOf(n) - 1
			want := -1
			for i := start; i >= 0 && i < len(lines) && strings.Contains(lines[i], "|"); i++ {
				if i == start+1 {
					continue // the delimiter row
				}
				got := cellCount(lines[i])
				if want < 0 {
					want = got
				} else if got != want {
					problems = append(problems, "line "+itoa(i+1)+": a table row with "+itoa(got)+" cells under a header of "+itoa(want))
				}
			}
		case *ast.Link:
			if p := checkTarget(string(n.Destination), dir); p != "" {
				problems = append(problems, "line "+itoa(lineOf(n))+": "+p)
			}
		case *ast.Image:
			if p := checkTarget(string(n.Destination), dir); p != "" {
				problems = append(problems, "line "+itoa(lineOf(n))+": "+p)
			}
		}
		return ast.WalkContinue, nil
	})
	return problems
}

// cellCount counts the cells of a table row: unescaped pipes between
// optional outer ones.
func cellCount(row string) int {
	row = strings.TrimSpace(row)
	row = strings.TrimPrefix(row, "|")
	if strings.HasSuffix(row, "|") && !strings.HasSuffix(row, "\\|") {
		row = row[:len(row)-1]
	}
	n := 1
	for i := 0; i < len(row); i++ {
		switch row[i] {
		case '\\':
			i++ // an escaped character, \| included
		case '|':
			n++
		}
	}
	return n
}

// checkTarget reports a relative link whose file does not exist.
func checkTarget(dest, dir string) string {
	u, err := url.Parse(dest)
	if err != nil {
		return "unparsable link " + dest
	}
	if u.Scheme != "" || u.Host != "" || u.Path == "" || strings.HasPrefix(dest, "#") {
		return "" // external, or an anchor in the same page
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(u.Path))); err != nil {
		return "link to a file that does not exist: " + dest
	}
	return ""
}

// TestDocsCheckCatchesBreakage shows the check above can fail, on the
// README's own former mistake (a table split by a blank line), a short row
// and a dead link.
func TestDocsCheckCatchesBreakage(t *testing.T) {
	t.Parallel()
	md := goldmark.New(goldmark.WithExtensions(extension.Table))
	broken := "| command | what |\n|---|---|\n| `a` | one |\n\n| `b` | two |\n\n| x | y |\n|---|---|\n| only one |\n\nSee [cdc](docs/nope.md) and [ok](https://example.org/x) and [here](#top).\n"
	problems := checkDoc(md, []byte(broken), t.TempDir())
	want := []string{"a table row outside any table", "a table row with 1 cells under a header of 2", "docs/nope.md"}
	if len(problems) != len(want) {
		t.Fatalf("problems %q, want %d", problems, len(want))
	}
	for i, w := range want {
		if !strings.Contains(problems[i], w) {
			t.Errorf("problem %d = %q, want one about %q", i, problems[i], w)
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestEveryVariableIsDocumented fails when internal/config reads a
// TRACKOPS_* variable that the README's configuration table does not name.
func TestEveryVariableIsDocumented(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "internal", "config", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var src []byte
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	vars := regexp.MustCompile(`"(TRACKOPS_[A-Z0-9_]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(vars) < 20 {
		t.Fatalf("found only %d variables in internal/config", len(vars))
	}
	for _, v := range vars {
		if !strings.Contains(string(readme), "`"+v[1]+"`") {
			t.Errorf("README.md's configuration table lacks %s", v[1])
		}
	}
}

// TestOnlyConfigReadsTheEnvironment fails when code outside internal/config
// reads the process environment: configuration is one typed Config, loaded
// and validated in one place. Test fixtures (which pass an environment on
// to the child processes they start, or read TRACKOPS_TEST_* settings) are
// the exception.
func TestOnlyConfigReadsTheEnvironment(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	reads := regexp.MustCompile(`\bos\.(Getenv|LookupEnv|Environ)\(`)
	allowed := []string{"internal/config/", "internal/testfix/", "internal/e2e/", "internal/repocheck/"}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules" || rel == "deploy" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		for _, a := range allowed {
			if strings.HasPrefix(filepath.ToSlash(rel), a) {
				return nil
			}
		}
		// Test helper packages (…test/) read only TRACKOPS_TEST_* settings.
		if strings.HasSuffix(filepath.Dir(rel), "test") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if m := reads.Find(b); m != nil {
			t.Errorf("%s reads the environment (%s); add the setting to internal/config instead", rel, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
