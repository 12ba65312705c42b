package kafka

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// maxPending bounds the records one member holds between fetch and offset
// commit: handled or not, a record counts until a commit covers it. At the
// bound the member stops fetching (back-pressure) until commits catch up.
const maxPending = 2000

// commitSpacing is the shortest time between two offset commits of one
// member: records finished meanwhile share the next commit. A commit is a
// round trip to the group coordinator (and a write to its log); per record,
// at a few hundred records a second, they would cost more than the records.
const commitSpacing = 10 * time.Millisecond

// pipeline hands a member's records to per-key workers as they arrive and
// commits each partition's offsets as far as its records are finished.
//
// Records of one key run one after another in offset order, in one worker
// that lives while the key has records queued; keys of a partition run
// concurrently, up to KeyConcurrency. Unlike a poll-handle-commit loop, the
// next fetch does not wait for the slowest record of the previous one: a
// record that arrives while others are being handled (or retried) starts as
// soon as its key is free. That is what makes a hop's latency the handler's
// own rather than half a batch's.
//
// Offsets: a partition's committed offset moves past a record only once it
// and every earlier record of the partition are finished (handled or
// dead-lettered), so a crash or a stop redelivers, never skips. Before a
// partition is revoked its records in flight are waited for and its
// finished prefix committed, so the next owner starts where this member
// stopped; a lost partition (the member fell out of the group) is waited
// for too, so that a key reassigned here later never runs beside an older
// record of its own.
type pipeline struct {
	c *Consumer

	mu      sync.Mutex
	changed *sync.Cond // broadcast when a record finishes or a commit trims
	parts   map[topicPartition]*partitionWork
	pending int // records fetched and not yet covered by a commit

	finished chan struct{} // a record finished since the committer looked
	workers  sync.WaitGroup

	// commitMu orders commits: one at a time, each computed and trimmed
	// under it, so a later commit never rewinds an earlier one and no
	// commit runs while a revocation settles its partitions.
	commitMu sync.Mutex
}

type topicPartition struct {
	topic     string
	partition int32
}

// partitionWork is one assigned partition's records from the first not yet
// committed.
type partitionWork struct {
	slots    chan struct{}        // one per key being handled (KeyConcurrency)
	records  []*pendingRecord     // offset order
	keys     map[string]*keyQueue // keys with a worker
	inFlight int                  // dispatched, neither finished nor abandoned
}

type pendingRecord struct {
	rec      *kgo.Record
	finished bool // handled or dead-lettered
}

// keyQueue is one key's records waiting for (or in) its worker.
type keyQueue struct {
	recs []*pendingRecord
}

func newPipeline(c *Consumer) *pipeline {
	p := &pipeline{c: c, parts: map[topicPartition]*partitionWork{}, finished: make(chan struct{}, 1)}
	p.changed = sync.NewCond(&p.mu)
	return p
}

// run fetches and dispatches until ctx ends, then waits for the workers
// (a record being retried stops at once) and commits what finished.
func (p *pipeline) run(ctx context.Context) {
	stopCommitter := make(chan struct{})
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		p.commitLoop(ctx, stopCommitter)
	}()
	// cond waits cannot watch ctx: wake them when it ends.
	stopWake := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.changed.Broadcast()
		p.mu.Unlock()
	})
	defer stopWake()

	cl := p.c.client
	for {
		room := p.waitForRoom(ctx)
		if ctx.Err() != nil {
			break
		}
		fetches := cl.PollRecords(ctx, room)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			cl.AllowRebalance()
			break
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.Canceled) {
				p.c.log.Warn("fetch failed", "topic", topic, "partition", partition, "err", err)
			}
		})
		fetches.EachRecord(func(rec *kgo.Record) { p.dispatch(ctx, rec) })
		// Records in flight need not hold a rebalance back: a revocation
		// waits for its partitions' records (onRevoked).
		cl.AllowRebalance()
	}
	p.workers.Wait()
	close(stopCommitter)
	<-committerDone
	// Commit even while shutting down: these records are finished
	// (commitLocked outlives ctx).
	p.commit(ctx)
}

// waitForRoom blocks while the member holds maxPending records and returns
// how many more it may fetch.
func (p *pipeline) waitForRoom(ctx context.Context) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.pending >= maxPending && ctx.Err() == nil {
		p.changed.Wait()
	}
	return maxPending - p.pending
}

// dispatch queues rec behind its key's earlier records, starting the key's
// worker when it has none.
func (p *pipeline) dispatch(ctx context.Context, rec *kgo.Record) {
	p.mu.Lock()
	tp := topicPartition{rec.Topic, rec.Partition}
	pw := p.parts[tp]
	if pw == nil {
		pw = &partitionWork{slots: make(chan struct{}, max(p.c.cfg.KeyConcurrency, 1)), keys: map[string]*keyQueue{}}
		p.parts[tp] = pw
	}
	pr := &pendingRecord{rec: rec}
	pw.records = append(pw.records, pr)
	pw.inFlight++
	p.pending++
	key := string(rec.Key)
	if p.c.cfg.KeyConcurrency <= 1 {
		key = "" // the whole partition in sequence
	}
	if q := pw.keys[key]; q != nil {
		q.recs = append(q.recs, pr)
		p.mu.Unlock()
		return
	}
	q := &keyQueue{recs: []*pendingRecord{pr}}
	pw.keys[key] = q
	p.mu.Unlock()
	p.workers.Go(func() { p.work(ctx, pw, key, q) })
}

// work handles a key's records in order until its queue is empty, or
// abandons them when ctx ends (they stay unfinished: redelivered).
func (p *pipeline) work(ctx context.Context, pw *partitionWork, key string, q *keyQueue) {
	select {
	case pw.slots <- struct{}{}:
		defer func() { <-pw.slots }()
	case <-ctx.Done():
	}
	for {
		p.mu.Lock()
		pr := q.recs[0]
		p.mu.Unlock()
		ok := ctx.Err() == nil && p.c.handle(ctx, pr.rec)
		p.mu.Lock()
		n := 1
		if ok {
			pr.finished = true
			q.recs = q.recs[1:]
		} else {
			n, q.recs = len(q.recs), nil // stopping: the key's records stay unfinished
		}
		pw.inFlight -= n
		empty := len(q.recs) == 0
		if empty {
			delete(pw.keys, key)
		}
		p.changed.Broadcast()
		p.mu.Unlock()
		if ok {
			select {
			case p.finished <- struct{}{}:
			default: // the committer has a wake-up pending already
			}
		}
		if empty {
			return
		}
	}
}

// commitLoop commits finished records as they finish, at most every
// commitSpacing, until stop.
func (p *pipeline) commitLoop(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-p.finished:
		}
		p.commit(ctx)
		select {
		case <-stop:
			return
		case <-time.After(commitSpacing):
		}
	}
}

// commit commits, for each partition, the last record of its finished
// prefix. A failed commit is kept and tried again with the next one; the
// records are redelivered if none succeeds.
func (p *pipeline) commit(ctx context.Context) {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	p.commitLocked(ctx, nil)
}

// commitLocked is commit for the partitions of only (all when nil), with
// commitMu held.
func (p *pipeline) commitLocked(ctx context.Context, only map[topicPartition]bool) {
	p.mu.Lock()
	var (
		recs  []*kgo.Record
		trims = map[*partitionWork]int{}
	)
	for tp, pw := range p.parts {
		if only != nil && !only[tp] {
			continue
		}
		n := 0
		for n < len(pw.records) && pw.records[n].finished {
			n++
		}
		if n > 0 {
			recs = append(recs, pw.records[n-1].rec)
			trims[pw] = n
		}
	}
	p.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := p.c.waitDurable(cctx); err != nil {
		p.c.log.Warn("broker did not make produced records durable; offsets not committed (records will be redelivered)", "err", err)
		return
	}
	if err := p.c.client.CommitRecords(cctx, recs...); err != nil {
		p.c.log.Warn("offset commit failed; handled records may be redelivered", "err", err)
		return
	}
	p.mu.Lock()
	for pw, n := range trims {
		pw.records = pw.records[n:]
		p.pending -= n
	}
	p.changed.Broadcast()
	p.mu.Unlock()
}

// onRevoked settles partitions this member is about to give up: it waits
// for their records in flight and commits their finished prefixes, so the
// next owner starts where this member stopped.
func (p *pipeline) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	p.settle(ctx, revoked, true)
}

// onLost forgets partitions the member lost without a revocation (it fell
// out of the group): their offsets can no longer be committed here, but
// their records in flight are waited for.
func (p *pipeline) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	p.settle(ctx, lost, false)
}

func (p *pipeline) settle(ctx context.Context, parts map[string][]int32, commit bool) {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	set := map[topicPartition]bool{}
	for t, ps := range parts {
		for _, n := range ps {
			set[topicPartition{t, n}] = true
		}
	}
	p.mu.Lock()
	for p.busy(set) {
		p.changed.Wait()
	}
	p.mu.Unlock()
	if commit {
		p.commitLocked(ctx, set)
	}
	p.mu.Lock()
	for tp := range set {
		if pw := p.parts[tp]; pw != nil {
			p.pending -= len(pw.records)
			delete(p.parts, tp)
		}
	}
	p.changed.Broadcast()
	p.mu.Unlock()
}

// busy reports whether any partition of set has records in flight; p.mu
// is held.
func (p *pipeline) busy(set map[topicPartition]bool) bool {
	for tp := range set {
		if pw := p.parts[tp]; pw != nil && pw.inFlight > 0 {
			return true
		}
	}
	return false
}
