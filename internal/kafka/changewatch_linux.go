//go:build linux

package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// changeWatch learns from inotify which files and directories under the
// broker's data directory changed, so a group-commit round fsyncs just
// those instead of walking and stat-ing the whole log (a walk of a few
// dozen partitions cost over a millisecond of CPU per round, and rounds run
// back to back under load). The kernel queues an event inside the write,
// create, unlink or rename that causes it, so a drain that follows reading
// the broker's end offsets sees every path written before them.
type changeWatch struct {
	fd   int
	dirs map[int32]string // watch descriptor → the directory it watches
	buf  []byte
}

const watchMask = unix.IN_MODIFY | unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// watchChanges starts watching root and every directory below it, and
// returns everything the tree holds: nothing of it raised an event.
func watchChanges(root string) (*changeWatch, *pathChanges, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("inotify: %w", err)
	}
	w := &changeWatch{fd: fd, dirs: map[int32]string{}, buf: make([]byte, 64<<10)}
	all := newPathChanges()
	if err := w.addTree(root, all); err != nil {
		w.close()
		return nil, nil, err
	}
	return w, all, nil
}

// addTree watches dir and the directories below it, and marks everything in
// them changed: what was created there before the watch existed raised no
// event.
func (w *changeWatch) addTree(dir string, c *pathChanges) error {
	wd, err := unix.InotifyAddWatch(w.fd, dir, watchMask)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil // removed again before we got to it
		}
		return fmt.Errorf("inotify watch %s: %w", dir, err)
	}
	w.dirs[int32(wd)] = dir
	c.dirs[dir] = true
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		switch {
		case e.IsDir():
			if err := w.addTree(path, c); err != nil {
				return err
			}
		case e.Type().IsRegular():
			c.files[path] = true
		}
	}
	return nil
}

// drain adds to c every change queued since the last drain.
func (w *changeWatch) drain(c *pathChanges) error {
	for {
		n, err := unix.Read(w.fd, w.buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return nil
		case err != nil:
			return fmt.Errorf("read inotify: %w", err)
		}
		w.apply(w.buf[:n], c)
	}
}

// apply decodes a buffer of inotify events into c.
func (w *changeWatch) apply(buf []byte, c *pathChanges) {
	for len(buf) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(buf[0:4]))
		mask := binary.NativeEndian.Uint32(buf[4:8])
		nameLen := int(binary.NativeEndian.Uint32(buf[12:16]))
		end := unix.SizeofInotifyEvent + nameLen
		if end > len(buf) {
			c.all = true // a torn event: never expected from the kernel
			return
		}
		name := nulTrimmed(buf[unix.SizeofInotifyEvent:end])
		buf = buf[end:]
		w.applyOne(wd, mask, name, c)
	}
}

func (w *changeWatch) applyOne(wd int32, mask uint32, name string, c *pathChanges) {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		c.all = true
		return
	}
	dir, ok := w.dirs[wd]
	if !ok {
		return
	}
	switch {
	case mask&unix.IN_IGNORED != 0:
		delete(w.dirs, wd) // the directory is gone
		return
	case mask&unix.IN_MOVE_SELF != 0:
		// A watched directory renamed: the paths this watch knows are
		// wrong from here on.
		c.all = true
		return
	case name == "":
		return
	}
	path := filepath.Join(dir, name)
	if mask&(unix.IN_CREATE|unix.IN_DELETE|unix.IN_MOVED_FROM|unix.IN_MOVED_TO) != 0 {
		c.dirs[dir] = true // its entries changed
	}
	if mask&unix.IN_ISDIR != 0 {
		if mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
			if err := w.addTree(path, c); err != nil {
				c.all = true
			}
		}
		return
	}
	if mask&(unix.IN_MODIFY|unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
		c.files[path] = true
	}
}

func nulTrimmed(b []byte) string { return string(bytes.TrimRight(b, "\x00")) }

func (w *changeWatch) close() { _ = unix.Close(w.fd) }
