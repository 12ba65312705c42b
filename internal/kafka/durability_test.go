package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func startTestBroker(t *testing.T, dir string, opts ...EmbeddedOption) *Embedded {
	t.Helper()
	opts = append([]EmbeddedOption{EmbeddedLogger(quietLog)}, opts...)
	b, err := StartEmbedded("127.0.0.1:0", dir, 1, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func produceN(t *testing.T, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	p, err := NewProducer(Options{Brokers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := EnsureTopics(context.Background(), p, 1, topic); err != nil {
		t.Fatal(err)
	}
	var out []*kgo.Record
	for i := range n {
		// One record per request: one batch each, so a torn tail costs
		// exactly the last record.
		rec := &kgo.Record{Topic: topic, Key: []byte("k"), Value: fmt.Appendf(nil, "event-%04d", i)}
		if err := p.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		out = append(out, rec)
	}
	return out
}

// pageSink keeps the compiler from dropping the reads that fault pages in.
var pageSink byte

// dirtyPages counts the pages of path's first n pages that the page cache
// holds dirty or under writeback, through /proc/self/pagemap and
// /proc/kpageflags (root only: TrackOps' tests run as root, as CI does).
func dirtyPages(t *testing.T, path string) (dirty, resident int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	n := int((fi.Size() + 4095) / 4096)
	if n == 0 {
		return 0, 0
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, n*4096, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(data)
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatalf("reading page flags needs /proc/self/pagemap: %v", err)
	}
	defer pm.Close()
	kf, err := os.Open("/proc/kpageflags")
	if err != nil {
		t.Fatalf("reading page flags needs root for /proc/kpageflags: %v", err)
	}
	defer kf.Close()
	base := uintptr(unsafe.Pointer(&data[0]))
	buf := make([]byte, 8)
	for i := range n {
		pageSink += data[i*4096] // fault the page in so pagemap knows its frame
		if _, err := pm.ReadAt(buf, int64((base/4096+uintptr(i))*8)); err != nil {
			t.Fatal(err)
		}
		e := binary.LittleEndian.Uint64(buf)
		pfn := e & (1<<55 - 1)
		if e&(1<<63) == 0 || pfn == 0 {
			continue
		}
		resident++
		if _, err := kf.ReadAt(buf, int64(pfn*8)); err != nil {
			t.Fatal(err)
		}
		const kpfDirty, kpfWriteback = 1 << 4, 1 << 8
		if fl := binary.LittleEndian.Uint64(buf); fl&(kpfDirty|kpfWriteback) != 0 {
			dirty++
		}
	}
	if resident == 0 {
		t.Fatalf("pagemap shows no frames for %s: run the tests as root", path)
	}
	return dirty, resident
}

// TestExternalFsyncCoversBrokerWrites is the premise of group commit: the
// broker writes segments through its own descriptors without fsync, and
// TrackOps' fsync through a descriptor of its own cleans the same pages,
// because the page cache belongs to the inode, not the descriptor.
func TestExternalFsyncCoversBrokerWrites(t *testing.T) {
	dir := t.TempDir()
	b := startTestBroker(t, dir, WithDurability(DurabilityGroup, time.Hour))
	defer b.Close()
	seg := filepath.Join(dir, "partitions", "durable-0", "0.dat")
	deadline := time.Now().Add(30 * time.Second)
	var dirty int
	for {
		// Under memory pressure the kernel may write the pages back on
		// its own before we look; produce more until some are dirty.
		produceN(t, b.Addr(), "durable", 200)
		dirty, _ = dirtyPages(t, seg)
		if dirty > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the broker's segment never had dirty pages: was it synced by the broker itself?")
		}
	}
	if err := b.WaitDurable(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, resident := dirtyPages(t, seg)
	if after != 0 {
		t.Fatalf("after WaitDurable %d of %d resident pages of the segment are still dirty (were %d)", after, resident, dirty)
	}
}

// ownSyncer starts a broker that never syncs by itself, produces records to
// topic, and returns its data directory, the broker and a syncer of the
// test's own over its log, whose rounds the test runs.
func ownSyncer(t *testing.T, topic string, records int) (string, *Embedded, *syncer) {
	t.Helper()
	dir := t.TempDir()
	b := startTestBroker(t, dir, WithDurability(DurabilityNone, 0))
	t.Cleanup(b.Close)
	produceN(t, b.Addr(), topic, records)
	return dir, b, newSyncer(dir, b.cluster, time.Hour, nil, b.metrics, quietLog)
}

// TestWaitDurableShareOneRound: every waiter registered before a round
// starts is answered by it.
func TestWaitDurableShareOneRound(t *testing.T) {
	_, _, s := ownSyncer(t, "shared", 3)
	const waiters = 20
	var wg sync.WaitGroup
	errs := make(chan error, waiters)
	for range waiters {
		wg.Go(func() { errs <- s.WaitDurable(context.Background()) })
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.waiters)
		s.mu.Unlock()
		if n == waiters {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d waiters registered", n, waiters)
		}
		time.Sleep(time.Millisecond)
	}
	s.round()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.roundsOK != 1 {
		t.Fatalf("%d rounds answered %d waiters, want 1", s.roundsOK, waiters)
	}
	if s.ends["shared"][0] != 3 {
		t.Fatalf("round recorded ends %v, want shared:[3]", s.ends)
	}
	// A second round finds nothing changed and syncs nothing.
	if n, err := s.syncChanged(); err != nil || n != 0 {
		t.Fatalf("second sync: %d synced, err %v; want 0", n, err)
	}
}

// TestRoundsAreSpaced: waiters that keep asking for durability, one after
// another, do not start a round each: rounds start at least RoundSpacing
// apart, so over any stretch there are at most its length / RoundSpacing
// (+1) of them. Without the spacing every wait ran a round of its own, a
// few hundred microseconds each here, and this fails.
func TestRoundsAreSpaced(t *testing.T) {
	_, _, s := ownSyncer(t, "spaced", 3)
	go s.run()
	t.Cleanup(s.stopLoop)
	const workers, waits = 4, 10
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range waits {
				if err := s.WaitDurable(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	s.mu.Lock()
	rounds := s.roundsOK
	s.mu.Unlock()
	if most := uint64(elapsed/RoundSpacing) + 1; rounds > most {
		t.Fatalf("%d rounds in %v, want at most %d (one per %v)", rounds, elapsed, most, RoundSpacing)
	}
	// Each worker's waits each needed a round that started after it asked.
	if rounds < waits {
		t.Fatalf("%d rounds answered %d consecutive waits each", rounds, waits)
	}
}

// TestWatchedRoundSyncsWhatTheBrokerWrote: with change notifications a
// round fsyncs what the broker wrote since the last one, found without
// walking the log, and leaves none of its pages dirty; a round with nothing
// written syncs nothing.
func TestWatchedRoundSyncsWhatTheBrokerWrote(t *testing.T) {
	dir, b, s := ownSyncer(t, "watched", 1)
	walks := func(reason string) float64 { return testutil.ToFloat64(b.metrics.walks.WithLabelValues(reason)) }
	s.startWatch("start")
	defer s.closeWatch()
	if s.watch == nil {
		t.Fatal("no change watch on Linux")
	}
	all, err := s.syncChanged() // the first round syncs everything
	if err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, "partitions", "watched-0", "0.dat")
	for range 3 {
		produceN(t, b.Addr(), "watched", 50)
		n, err := s.syncChanged()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 || n >= all {
			t.Fatalf("a round after 50 records synced %d paths, the first %d: want some, not all", n, all)
		}
		if dirty, resident := dirtyPages(t, seg); dirty != 0 {
			t.Fatalf("after the round %d of %d resident pages of the segment are dirty", dirty, resident)
		}
		if s.watch == nil || walks("events_lost") != 0 {
			t.Fatal("the round fell back to walking the log")
		}
	}
	if n, err := s.syncChanged(); err != nil || n != 0 {
		t.Fatalf("a round with nothing written synced %d (err %v), want 0", n, err)
	}
	if walks("start") != 1 || walks("events_lost") != 0 || walks("no_notifications") != 0 {
		t.Fatalf("log walks: start %v, events_lost %v, no_notifications %v; want the one at the start",
			walks("start"), walks("events_lost"), walks("no_notifications"))
	}
}

func TestParseDurability(t *testing.T) {
	for in, want := range map[string]Durability{"": DurabilityGroup, "group": DurabilityGroup, "FSYNC": DurabilitySync, "none": DurabilityNone} {
		if got, err := ParseDurability(in); err != nil || got != want {
			t.Errorf("ParseDurability(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseDurability("always"); err == nil {
		t.Error("ParseDurability(always) accepted")
	}
}

// TestTornTailIsDetectedAndGroupsRewound reproduces a power loss that tore
// the last record of a segment the broker had synced: the start reports
// the loss against the recorded durable ends and moves a consumer group
// that had committed past it back to the recovered end.
func TestTornTailIsDetectedAndGroupsRewound(t *testing.T) {
	dir := t.TempDir()
	b := startTestBroker(t, dir)
	produceN(t, b.Addr(), "torn", 10)
	// Two barriers: the first syncs the records, the second the record
	// of the durable ends the first round reached.
	for range 2 {
		if err := b.WaitDurable(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "torn", Partition: 0, At: 10, LeaderEpoch: -1})
	if resp, err := adm.CommitOffsets(context.Background(), "readers", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}
	cl.Close()
	if got := b.Recovery(); got.Checked {
		t.Fatalf("a fresh log reported a check: %+v", got)
	}
	b.Close()

	// The crash: no clean-shutdown marker, 13 bytes gone from the tail.
	if err := os.Remove(filepath.Join(dir, cleanMarkerName)); err != nil {
		t.Fatalf("clean stop left no marker: %v", err)
	}
	seg := filepath.Join(dir, "partitions", "torn-0", "0.dat")
	fi, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(seg, fi.Size()-13); err != nil {
		t.Fatal(err)
	}

	b = startTestBroker(t, dir)
	defer b.Close()
	rec := b.Recovery()
	if !rec.Checked || rec.CleanStop || !rec.Damaged() || !rec.NeedsRepublish() {
		t.Fatalf("recovery = %+v; want a checked, unclean, damaged log", rec)
	}
	if len(rec.Truncated) != 1 || rec.Truncated[0].Topic != "torn" || rec.Truncated[0].Bytes == 0 {
		t.Fatalf("truncations = %+v; want one torn tail of topic torn", rec.Truncated)
	}
	if len(rec.Lost) != 1 || rec.Lost[0] != (PartitionLoss{Topic: "torn", Partition: 0, DurableEnd: 10, RecoveredEnd: 9}) {
		t.Fatalf("lost = %+v; want torn-0 durable 10, recovered 9", rec.Lost)
	}
	if rec.EndOffset("torn", 0) != 9 || rec.EndOffset("missing", 0) != 0 {
		t.Fatalf("ends = %v", rec.Ends)
	}
	cl, err = kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got, err := kadm.NewClient(cl).FetchOffsets(context.Background(), "readers")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := got.Lookup("torn", 0); o.At != 9 {
		t.Fatalf("group offset after recovery = %d, want 9 (the recovered end)", o.At)
	}
	if damaged, err := b.Healthy(); !damaged || err != nil {
		t.Fatalf("Healthy() = %v, %v; want damaged", damaged, err)
	}
}

// TestCleanStopNeedsNoRepublish: a clean stop leaves a marker and an intact
// log, so the next start finds nothing to do.
func TestCleanStopNeedsNoRepublish(t *testing.T) {
	dir := t.TempDir()
	b := startTestBroker(t, dir)
	produceN(t, b.Addr(), "calm", 5)
	b.Close()
	b = startTestBroker(t, dir)
	defer b.Close()
	rec := b.Recovery()
	if !rec.Checked || !rec.CleanStop || rec.Damaged() || rec.NeedsRepublish() {
		t.Fatalf("recovery = %+v; want a clean, undamaged log", rec)
	}
	if rec.EndOffset("calm", 0) != 5 {
		t.Fatalf("ends = %v; want calm:[5]", rec.Ends)
	}
}

// TestConcurrentFsyncsSyncEveryFile: a round's files are fsynced several at
// once; every file written is then clean, each is counted once, and a file
// removed since it changed is skipped without an error.
func TestConcurrentFsyncsSyncEveryFile(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i := range 2*maxConcurrentFsyncs + 3 {
		p := filepath.Join(dir, fmt.Sprintf("%d.dat", i))
		if err := os.WriteFile(p, make([]byte, 3*4096), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	removed := filepath.Join(dir, "removed.dat")
	var errs []error
	n := syncFilesConcurrently(append(paths, removed), &errs)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	if n != len(paths) {
		t.Fatalf("synced %d, want %d (the removed file skipped)", n, len(paths))
	}
	for _, p := range paths {
		if dirty, resident := dirtyPages(t, p); dirty != 0 {
			t.Fatalf("%s: %d of %d resident pages dirty after the round", p, dirty, resident)
		}
	}
}
