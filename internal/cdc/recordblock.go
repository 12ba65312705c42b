package cdc

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Sizes of a recordBlock. A key and value larger than blockMaxCopy may
// outgrow the block and get an allocation of their own.
const (
	blockBytes   = 64 << 10
	blockMaxCopy = blockBytes / 8
	blockRecords = 64
)

// recordBlock is a run of records and the bytes of their keys and values.
// The encoder carves records from its current block; each record's
// acknowledgement releases it, and the last release (the encoder's own
// hold included) empties the block and puts it back in blockPool. A large
// transaction thus cycles through the few hundred blocks its records in
// flight need instead of allocating a new one every few dozen changes:
// that allocation, the garbage collections it caused and the pages the
// runtime gave back to the kernel and faulted in again cost about a sixth
// of the connector's CPU.
type recordBlock struct {
	recs [blockRecords]kgo.Record
	ctxs [blockRecords]blockContext
	n    int    // records carved; the encoder's goroutine only
	buf  []byte // keys and values; the encoder's goroutine only
	// live counts the carved records not yet released, plus one while the
	// encoder may still carve from the block.
	live atomic.Int32
}

// blockContext is the Context of a record carved from a block: the
// transaction the record belongs to (set by emitter.produce), and the
// block to release once Kafka has acknowledged the record. Its Context and
// block never change: the producer may still look at a record's Context
// (for its Done channel) after the record was acknowledged and its slot
// reused. Records are cancelled through the context given to Produce.
type blockContext struct {
	context.Context
	block *recordBlock
	tx    *txTrack
}

// blockKey finds a record's blockContext through a context derived from
// it.
type blockKey struct{}

// Value answers the record's transaction (txKey) and its blockContext
// (blockKey) also when asked through a context derived from this one: the
// tracing hook replaces a record's Context with one that wraps it.
func (c *blockContext) Value(key any) any {
	switch key.(type) {
	case txKey:
		return c.tx
	case blockKey:
		return c
	}
	return c.Context.Value(key)
}

var blockPool = sync.Pool{New: func() any {
	b := &recordBlock{buf: make([]byte, 0, blockBytes)}
	for i := range b.ctxs {
		b.ctxs[i] = blockContext{Context: context.Background(), block: b}
	}
	return b
}}

// block returns the encoder's current block if it has a record left and
// room bytes free, or else a fresh one from the pool.
func (e *recordEncoder) block(room int) *recordBlock {
	b := e.blk
	if b != nil && b.n < blockRecords && cap(b.buf)-len(b.buf) >= room {
		return b
	}
	if b != nil {
		b.release() // the encoder's hold
	}
	b = blockPool.Get().(*recordBlock)
	b.live.Store(1)
	e.blk = b
	return b
}

// carve takes the block's next record (the caller checked there is one).
// It holds the block until releaseRecord is called with it.
func (b *recordBlock) carve() *kgo.Record {
	r := &b.recs[b.n]
	r.Context = &b.ctxs[b.n]
	b.n++
	b.live.Add(1)
	return r
}

// free returns an empty slice at the free end of the block's bytes, to
// append a key and value to; claim takes what was appended.
func (b *recordBlock) free() []byte { return b.buf[len(b.buf):len(b.buf)] }

// claim takes kv, grown by appends from free's slice, out of the block and
// returns it capped at its length, so an append to it never writes into a
// neighbour. If kv outgrew the block, append moved it to an allocation of
// its own and the block is left as it was.
func (b *recordBlock) claim(kv []byte) []byte {
	rest := b.buf[len(b.buf):cap(b.buf)]
	if len(kv) > 0 && len(kv) <= len(rest) && &kv[0] == &rest[0] {
		b.buf = b.buf[:len(b.buf)+len(kv)]
	}
	return kv[:len(kv):len(kv)]
}

// release drops one hold on the block; the last empties it and returns it
// to the pool.
func (b *recordBlock) release() {
	if b.live.Add(-1) != 0 {
		return
	}
	clear(b.recs[:b.n])
	for i := range b.n {
		b.ctxs[i].tx = nil
	}
	b.n = 0
	b.buf = b.buf[:0]
	blockPool.Put(b)
}

// tombstone returns the tombstone that follows a delete's record rec. It
// has a key of its own, copied into the tombstone's block, so that neither
// record's acknowledgement can free bytes the other still needs.
func (e *recordEncoder) tombstone(rec *kgo.Record) *kgo.Record {
	b := e.block(min(len(rec.Key), blockMaxCopy))
	t := b.carve()
	t.Topic, t.Timestamp = rec.Topic, rec.Timestamp
	if rec.Key != nil {
		t.Key = b.claim(append(b.free(), rec.Key...))
	}
	return t
}

// releaseRecord releases the block rec was carved from, if any. Call it
// once Kafka is done with rec (its promise); rec must not be used after.
func releaseRecord(rec *kgo.Record) {
	if rec.Context == nil {
		return
	}
	if c, _ := rec.Context.Value(blockKey{}).(*blockContext); c != nil {
		c.block.release()
	}
}
