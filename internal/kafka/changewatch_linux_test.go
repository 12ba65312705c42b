//go:build linux

package kafka

import (
	"encoding/binary"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestChangeWatchReportsWhatChanged: after a drain the watch names every
// file written or created and every directory whose entries changed, in
// directories that existed at the start and in ones created since (with
// what was written into them before their own watch existed), and nothing
// else.
func TestChangeWatchReportsWhatChanged(t *testing.T) {
	root := t.TempDir()
	old := filepath.Join(root, "partitions", "orders-0")
	mustMkdir(t, old)
	mustWrite(t, filepath.Join(old, "0.dat"), "a")
	mustWrite(t, filepath.Join(root, "untouched.json"), "x")
	w, _, err := watchChanges(root)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	drained(t, w) // what the start reported

	steps := []struct {
		name  string
		do    func()
		files []string
		dirs  []string
	}{
		{"append to a segment", func() { appendTo(t, filepath.Join(old, "0.dat"), "b") },
			[]string{"partitions/orders-0/0.dat"}, nil},
		{"nothing", func() {}, nil, nil},
		{"a new partition with its segment", func() {
			dir := filepath.Join(root, "partitions", "payments-2")
			mustMkdir(t, dir)
			mustWrite(t, filepath.Join(dir, "0.dat"), "c")
		}, []string{"partitions/payments-2/0.dat"}, []string{"partitions", "partitions/payments-2"}},
		{"state written to a temporary file and renamed over", func() {
			tmp := filepath.Join(root, "topics.json.tmp")
			mustWrite(t, tmp, "{}")
			if err := os.Rename(tmp, filepath.Join(root, "topics.json")); err != nil {
				t.Fatal(err)
			}
		}, []string{"topics.json", "topics.json.tmp"}, []string{"."}},
		{"a partition removed", func() {
			if err := os.RemoveAll(old); err != nil {
				t.Fatal(err)
			}
		}, nil, []string{"partitions", "partitions/orders-0"}},
	}
	for _, s := range steps {
		s.do()
		c := drained(t, w)
		if c.all {
			t.Fatalf("%s: the watch lost events", s.name)
		}
		if got := relative(t, root, c.files); !slices.Equal(got, sorted(s.files)) {
			t.Errorf("%s: files %q, want %q", s.name, got, sorted(s.files))
		}
		if got := relative(t, root, c.dirs); !slices.Equal(got, sorted(s.dirs)) {
			t.Errorf("%s: directories %q, want %q", s.name, got, sorted(s.dirs))
		}
	}
}

// TestChangeWatchLostEventsMeanSyncEverything: a queue overflow or a
// renamed directory leaves the watch unable to name what changed, and the
// round must sync everything.
func TestChangeWatchLostEventsMeanSyncEverything(t *testing.T) {
	w := &changeWatch{dirs: map[int32]string{1: "/data"}}
	for _, tc := range []struct {
		name string
		wd   int32
		mask uint32
		all  bool
	}{
		{"queue overflow", -1, unix.IN_Q_OVERFLOW, true},
		{"watched directory renamed", 1, unix.IN_MOVE_SELF, true},
		{"a file written", 1, unix.IN_MODIFY, false},
		{"an unknown watch", 7, unix.IN_MODIFY, false},
	} {
		c := newPathChanges()
		w.apply(rawEvent(tc.wd, tc.mask, "f"), c)
		if c.all != tc.all {
			t.Errorf("%s: all=%v, want %v", tc.name, c.all, tc.all)
		}
	}
}

// rawEvent is one inotify event as the kernel lays it out, its name padded
// with NULs.
func rawEvent(wd int32, mask uint32, name string) []byte {
	padded := (len(name) + 1 + 15) / 16 * 16
	b := make([]byte, unix.SizeofInotifyEvent+padded)
	binary.NativeEndian.PutUint32(b[0:], uint32(wd))
	binary.NativeEndian.PutUint32(b[4:], mask)
	binary.NativeEndian.PutUint32(b[12:], uint32(padded))
	copy(b[unix.SizeofInotifyEvent:], name)
	return b
}

func drained(t *testing.T, w *changeWatch) *pathChanges {
	t.Helper()
	c := newPathChanges()
	if err := w.drain(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func relative(t *testing.T, root string, set map[string]bool) []string {
	t.Helper()
	var out []string
	for _, p := range slices.Sorted(maps.Keys(set)) {
		r, err := filepath.Rel(root, p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return sorted(out)
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}
