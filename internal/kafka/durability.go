package kafka

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Durability is how the embedded broker makes acknowledged records durable.
type Durability string

// Durability modes of the embedded broker (TRACKOPS_KAFKA_DURABILITY).
const (
	// DurabilitySync fsyncs every produced batch and offset commit inside
	// the broker's single loop before it answers: the slowest, and no
	// safer for TrackOps than DurabilityGroup, whose barrier it also runs.
	DurabilitySync Durability = "fsync"
	// DurabilityGroup (the default) leaves writes in the page cache and
	// fsyncs the log in rounds: a round starts at once when anyone waits
	// on the barrier (many waiters share it) and at least every flush
	// interval while there is unsynced data.
	DurabilityGroup Durability = "group"
	// DurabilityNone never fsyncs while running (Kafka's own default,
	// leaving it to the operating system); the barrier returns at once. A
	// power loss can lose acknowledged records; a crash of the process
	// cannot.
	DurabilityNone Durability = "none"
)

// ParseDurability reads a TRACKOPS_KAFKA_DURABILITY value.
func ParseDurability(s string) (Durability, error) {
	switch d := Durability(strings.ToLower(strings.TrimSpace(s))); d {
	case DurabilitySync, DurabilityGroup, DurabilityNone:
		return d, nil
	case "":
		return DurabilityGroup, nil
	}
	return "", fmt.Errorf("durability %q: want fsync, group or none", s)
}

// Barrier waits until everything the broker acknowledged before the call
// is durable. TrackOps calls it before it treats a record as delivered for
// good: before marking an outbox row published, before confirming a CDC
// position to the replication slot, before committing offsets over records
// its handlers produced. A nil Barrier (a real Kafka cluster, where acks=all
// is the durability) never waits.
type Barrier interface {
	WaitDurable(ctx context.Context) error
}

// WaitDurable calls b.WaitDurable, or returns nil when b is nil.
func WaitDurable(ctx context.Context, b Barrier) error {
	if b == nil {
		return nil
	}
	return b.WaitDurable(ctx)
}

// ErrDurabilityBroken is returned by every barrier after an fsync of the
// broker's log failed: the kernel may have dropped the dirty pages, so no
// later fsync can prove them durable. Restart the process (the log is
// checked on start).
var ErrDurabilityBroken = errors.New("embedded broker: an fsync of the log failed; durability can no longer be guaranteed until restart")

// syncer runs the group commit of the embedded broker: it fsyncs every file
// and directory of kfake's data directory that changed since it last did,
// in rounds. kfake writes its segments, indexes and group/producer logs with
// plain write(2) calls into the page cache; the page cache belongs to the
// inode, so fsync(2) on a descriptor of our own flushes the dirty pages
// kfake wrote through its descriptor (TestExternalFsyncCoversBrokerWrites
// checks this through /proc/meminfo's Dirty figure and the file's
// contents). Directories are fsynced too, so new segment files and renamed
// state files survive a power loss.
type syncer struct {
	dir      string
	cluster  *kfake.Cluster
	interval time.Duration
	log      *slog.Logger
	state    *stateLog
	metrics  *durabilityMetrics

	mu       sync.Mutex
	waiters  []chan error // registered since the current round started
	broken   error
	ends     map[string][]int64 // end offsets the last round made durable
	roundsOK uint64
	lastSync time.Time

	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	// owned by the loop goroutine (and by Close once the loop has ended)
	watch *changeWatch // nil: every round walks the data directory
	// pending is what the next round syncs besides the watch's events:
	// everything in the log when the watch was (re)started.
	pending *pathChanges
	// stamps of the walk, used only without a watch
	files map[string]fileStamp
	dirs  map[string]string
}

// pathChanges are the paths a round must fsync, as the change watch saw
// them.
type pathChanges struct {
	files map[string]bool
	dirs  map[string]bool
	// all says events were lost (queue overflow, a renamed directory, a
	// watch that could not be added): everything must be synced and the
	// watch rebuilt.
	all bool
}

func newPathChanges() *pathChanges {
	return &pathChanges{files: map[string]bool{}, dirs: map[string]bool{}}
}

type fileStamp struct {
	ino, size int64
	mtime     int64
}

func newSyncer(dir string, cluster *kfake.Cluster, interval time.Duration, state *stateLog, m *durabilityMetrics, log *slog.Logger) *syncer {
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	return &syncer{
		dir: dir, cluster: cluster, interval: interval, log: log, state: state, metrics: m,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		files: map[string]fileStamp{}, dirs: map[string]string{},
	}
}

// DefaultFlushInterval bounds how long an acknowledged record of the
// embedded broker stays in the page cache only, under group commit, when
// nobody waits for it (TRACKOPS_KAFKA_FLUSH_INTERVAL).
const DefaultFlushInterval = 50 * time.Millisecond

// RoundSpacing is the shortest time between the starts of two group-commit
// rounds. A round costs about a millisecond of CPU (the end offsets, the
// durable-ends record and several fsyncs) whatever it covers, and a waiter
// used to start one at once: at a few hundred events a second rounds ran
// about as often as relay batches and were a large share of the process.
// Waiters arriving within the spacing share the next round instead, so a
// wait lasts at most about the spacing plus a round. Nothing on an event's
// way to its consumers waits for a round; the relay's ledger, the CDC
// slot's confirmed position and consumers' offsets after a dead letter do.
const RoundSpacing = 10 * time.Millisecond

// WaitDurable returns once an fsync round that started after the call has
// completed: everything acknowledged before the call is then on disk. Many
// callers share one round.
func (s *syncer) WaitDurable(ctx context.Context) error {
	ch := make(chan error, 1)
	s.mu.Lock()
	if s.broken != nil {
		s.mu.Unlock()
		return s.broken
	}
	s.waiters = append(s.waiters, ch)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	start := time.Now()
	select {
	case err := <-ch:
		s.metrics.observeWait(time.Since(start))
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errors.New("embedded broker stopped before the log was synced")
	}
}

// run is the group-commit loop.
func (s *syncer) run() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	spacing := min(RoundSpacing, s.interval)
	gap := time.NewTimer(spacing)
	gap.Stop()
	var last time.Time
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		case <-t.C:
		}
		// Waiters that come in meanwhile share the round.
		if wait := spacing - time.Since(last); wait > 0 {
			gap.Reset(wait)
			select {
			case <-s.stop:
				return
			case <-gap.C:
			}
		}
		last = time.Now()
		s.round()
	}
}

// round syncs what changed and answers the waiters registered before it
// started.
func (s *syncer) round() {
	s.mu.Lock()
	waiters := s.waiters
	s.waiters = nil
	broken := s.broken
	s.mu.Unlock()
	if broken != nil {
		for _, w := range waiters {
			w <- broken
		}
		return
	}
	start := time.Now()
	// End offsets first: every record below them was written to the page
	// cache before kfake advanced them, so the fsyncs below cover them.
	ends := s.endOffsets()
	// Record the previous round's durable ends; this round's fsyncs make
	// the record itself durable.
	s.mu.Lock()
	prev := s.ends
	s.mu.Unlock()
	var err error
	if s.state != nil && prev != nil {
		err = s.state.appendEnds(prev)
	}
	n, syncErr := s.syncChanged()
	err = errors.Join(err, syncErr)
	if err != nil {
		err = fmt.Errorf("%w: %v", ErrDurabilityBroken, err)
		s.log.Error("fsync of the embedded broker's log failed; acknowledged records may not be durable", "err", err)
		s.metrics.fsyncFailures.Inc()
	}
	s.mu.Lock()
	if err != nil {
		s.broken = err
	} else {
		s.ends = ends
		s.roundsOK++
		s.lastSync = time.Now()
	}
	s.mu.Unlock()
	if n > 0 || len(waiters) > 0 {
		s.metrics.observeRound(time.Since(start), n, len(waiters))
	}
	for _, w := range waiters {
		w <- err
	}
}

// stopLoop ends the group-commit loop, letting a round in progress finish;
// it must run before kfake closes (a round asks kfake for end offsets).
func (s *syncer) stopLoop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// finalSync syncs, after kfake closed its files and wrote its shutdown
// state, whatever changed, and stops watching.
func (s *syncer) finalSync() error {
	defer s.closeWatch()
	s.mu.Lock()
	broken := s.broken
	s.mu.Unlock()
	if broken != nil {
		return broken
	}
	_, err := s.syncChanged()
	return err
}

// durableEnds are the end offsets the last successful round made durable.
func (s *syncer) durableEnds() map[string][]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ends
}

// endOffsets asks kfake for the high watermark of every partition it keeps
// on disk.
func (s *syncer) endOffsets() map[string][]int64 {
	topics := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(s.dir, "partitions"))
	for _, e := range entries {
		if t, _, ok := splitPartitionDir(e.Name()); ok {
			topics[t] = true
		}
	}
	out := make(map[string][]int64, len(topics))
	for t := range topics {
		infos := s.cluster.PartitionInfos(t)
		if infos == nil {
			continue
		}
		ends := make([]int64, len(infos))
		for i, p := range infos {
			ends[i] = p.HighWatermark
		}
		out[t] = ends
	}
	return out
}

// splitPartitionDir parses kfake's partition directory name
// "<url-escaped topic>-<partition>".
func splitPartitionDir(name string) (topic string, partition int32, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return "", 0, false
	}
	p, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil {
		return "", 0, false
	}
	t, err := url.PathUnescape(name[:i])
	if err != nil {
		return "", 0, false
	}
	return t, int32(p), true
}

// startWatch has the kernel report changes to the data directory, so that
// rounds need not walk it. Setting up the watch lists the whole log, which
// the next round syncs; reason says why (start, events_lost). Without
// change notifications every round walks.
func (s *syncer) startWatch(reason string) {
	w, all, err := watchChanges(s.dir)
	if err != nil {
		s.log.Info("embedded broker: no change notifications; each fsync round walks the log", "err", err)
		return
	}
	s.watch, s.pending = w, all
	s.metrics.walked(reason)
}

func (s *syncer) closeWatch() {
	if s.watch != nil {
		s.watch.close()
		s.watch = nil
	}
}

// syncChanged fsyncs every file written and every directory whose entries
// changed since the last round, directories after files and deepest first.
// It returns how many it synced.
func (s *syncer) syncChanged() (int, error) {
	if s.watch == nil {
		s.metrics.walked("no_notifications")
		return s.syncWalked()
	}
	c := s.pending
	if c == nil {
		c = newPathChanges()
	}
	s.pending = nil
	// Drained after the caller read the end offsets: whatever was written
	// before them is in c.
	if err := s.watch.drain(c); err != nil || c.all {
		s.log.Warn("embedded broker: change notifications lost; syncing the whole log", "dir", s.dir, "err", err)
		s.closeWatch()
		s.startWatch("events_lost")
		if s.watch == nil {
			s.metrics.walked("events_lost")
			return s.syncWalked() // no stamps yet: syncs everything
		}
		c, s.pending = s.pending, nil
	}
	var errs []error
	n := syncFilesConcurrently(slices.Collect(maps.Keys(c.files)), &errs)
	dirs := slices.Collect(maps.Keys(c.dirs))
	sortDeepestFirst(dirs)
	n += syncPaths(dirs, &errs)
	return n, errors.Join(errs...)
}

// syncPaths fsyncs each of paths, skipping those removed since they
// changed, and returns how many it synced.
func syncPaths(paths []string, errs *[]error) int {
	n := 0
	for _, path := range paths {
		n += syncOutcome(syncPath(path), errs)
	}
	return n
}

// syncOutcome counts the result err of one path's fsync: 1 if it was
// synced, 0 if it is gone (removed since it changed) or the fsync failed,
// which is added to errs.
func syncOutcome(err error, errs *[]error) int {
	if err == nil {
		return 1
	}
	if !errors.Is(err, fs.ErrNotExist) {
		*errs = append(*errs, err)
	}
	return 0
}

// maxConcurrentFsyncs bounds the fsyncs one round has in flight at once.
const maxConcurrentFsyncs = 8

// syncFilesConcurrently fsyncs files like syncPaths, several at once. A
// round's files are independent of one another (only directories need an
// order, after their files), and fsyncs in flight together share the file
// system's journal commits: on ext4 a round of six appended files takes
// about 40 % less time, and a little less CPU, than one fsync after
// another (BenchmarkSyncRound).
func syncFilesConcurrently(paths []string, errs *[]error) int {
	if len(paths) < 2 {
		return syncPaths(paths, errs)
	}
	var (
		mu  sync.Mutex // guards n and errs
		n   int
		wg  sync.WaitGroup
		sem = make(chan struct{}, maxConcurrentFsyncs)
	)
	for _, path := range paths {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := syncPath(path)
			mu.Lock()
			defer mu.Unlock()
			n += syncOutcome(err, errs)
		})
	}
	wg.Wait()
	return n
}

// sortDeepestFirst orders directories so a parent's entry for a new child
// directory is synced after the child's own entries.
func sortDeepestFirst(dirs []string) {
	slices.SortFunc(dirs, func(a, b string) int {
		return strings.Count(b, string(os.PathSeparator)) - strings.Count(a, string(os.PathSeparator))
	})
}

// syncWalked walks the data directory and fsyncs every regular file whose
// inode, size or modification time changed since its last fsync, then every
// directory whose entries changed, deepest first. It returns how many it
// synced.
func (s *syncer) syncWalked() (int, error) {
	var files, dirs []string
	err := filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked (segment retention)
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, path)
		} else if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("walk %s: %w", s.dir, err)
	}
	var errs []error
	n := syncStamped(files, s.files, fileStampOf, &errs)
	sortDeepestFirst(dirs)
	n += syncStamped(dirs, s.dirs, dirSignature, &errs)
	return n, errors.Join(errs...)
}

// syncStamped fsyncs, in order, each of paths whose stamp differs from the
// one synced holds for it, and records the new stamp; paths no longer there
// are forgotten. A path that cannot be stamped, or that vanished before its
// fsync, is skipped; other fsync errors are added to errs. It returns how
// many it synced.
func syncStamped[S comparable](paths []string, synced map[string]S, stamp func(string) (S, error), errs *[]error) int {
	n := 0
	seen := make(map[string]bool, len(paths))
	for _, path := range paths {
		seen[path] = true
		st, err := stamp(path)
		if err != nil {
			continue // removed since the walk
		}
		// A path never synced compares with the zero stamp: a file's is
		// never zero (it has an inode), and a new empty directory needs no
		// fsync of its own (its parent's entry for it is what counts).
		if synced[path] == st {
			continue
		}
		// The stamp is taken before the fsync: a write racing with it
		// changes the stamp again and is synced by the next round.
		if err := syncPath(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			*errs = append(*errs, err)
			continue
		}
		synced[path] = st
		n++
	}
	for path := range synced {
		if !seen[path] {
			delete(synced, path)
		}
	}
	return n
}

// fileStampOf stats path for its stamp.
func fileStampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return stampOf(fi), nil
}

func stampOf(fi os.FileInfo) fileStamp {
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = int64(sys.Ino)
	}
	return st
}

// dirSignature names a directory's entries with their inodes: a created,
// removed or renamed-over entry changes it (timestamps are too coarse to
// tell two changes within one clock tick apart).
func dirSignature(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return "", err
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(path, name), &st); err != nil {
			continue
		}
		b.WriteString(name)
		b.WriteByte(0)
		b.WriteString(strconv.FormatUint(st.Ino, 10))
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// syncPath fsyncs a file or directory through a descriptor of its own.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}

// stateLog is TrackOps' own small log beside kfake's files: the end offsets
// each group-commit round made durable, as CRC-framed JSON records, so a
// start after a crash can tell which acknowledged, durable records the
// broker's log lost.
type stateLog struct {
	path string
	f    *os.File
	size int64
	last string // last record written, to skip repeats
}

const (
	stateLogName    = "trackops-durable.log"
	cleanMarkerName = "trackops-clean-shutdown"
	stateLogMaxSize = 4 << 20
)

type stateRecord struct {
	At   time.Time          `json:"at"`
	Ends map[string][]int64 `json:"ends"`
}

func openStateLog(dir string) (*stateLog, error) {
	path := filepath.Join(dir, stateLogName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &stateLog{path: path, f: f, size: fi.Size()}, nil
}

func frame(data []byte) []byte {
	buf := make([]byte, 8+len(data))
	binary.LittleEndian.PutUint32(buf[0:4], uint32(len(data)))
	binary.LittleEndian.PutUint32(buf[4:8], crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
	copy(buf[8:], data)
	return buf
}

// appendEnds writes a record of ends unless it repeats the last one. The
// log is rewritten (to a temporary file, synced, renamed) when it grows
// past a few MB.
func (l *stateLog) appendEnds(ends map[string][]int64) error {
	data, err := json.Marshal(stateRecord{At: time.Now().UTC(), Ends: ends})
	if err != nil {
		return err
	}
	endsOnly, _ := json.Marshal(ends)
	if string(endsOnly) == l.last {
		return nil
	}
	rec := frame(data)
	if l.size+int64(len(rec)) > stateLogMaxSize {
		tmp := l.path + ".new"
		if err := os.WriteFile(tmp, rec, 0o644); err != nil {
			return err
		}
		if err := syncPath(tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, l.path); err != nil {
			return err
		}
		l.f.Close()
		if l.f, err = os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return err
		}
		l.size = int64(len(rec))
	} else {
		if _, err := l.f.Write(rec); err != nil {
			return fmt.Errorf("write %s: %w", l.path, err)
		}
		l.size += int64(len(rec))
	}
	l.last = string(endsOnly)
	return nil
}

func (l *stateLog) close() error { return l.f.Close() }

// readStateLog returns the last intact record of the log in dir, if any.
func readStateLog(dir string) (stateRecord, bool) {
	raw, err := os.ReadFile(filepath.Join(dir, stateLogName))
	if err != nil {
		return stateRecord{}, false
	}
	var last stateRecord
	found := false
	table := crc32.MakeTable(crc32.Castagnoli)
	for pos := 0; pos+8 <= len(raw); {
		n := int(binary.LittleEndian.Uint32(raw[pos : pos+4]))
		if n <= 0 || pos+8+n > len(raw) {
			break
		}
		data := raw[pos+8 : pos+8+n]
		if crc32.Checksum(data, table) != binary.LittleEndian.Uint32(raw[pos+4:pos+8]) {
			break
		}
		var rec stateRecord
		if json.Unmarshal(data, &rec) == nil {
			last, found = rec, true
		}
		pos += 8 + n
	}
	return last, found
}
