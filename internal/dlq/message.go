// Package dlq watches TrackOps' dead-letter topics and gets records out of
// them again: the Monitor records every dead letter in PostgreSQL, counts it,
// groups it by an error fingerprint and raises alerts; the Replayer sends
// dead letters back to their original topic with a replay count and a loop
// guard; Handlers serve both over the ops API.
package dlq

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
)

// HeaderReplayCount counts how often a record was sent back from a dead-letter
// topic to its original topic. The dead letter of a replayed record keeps it
// (the consumer runner copies original headers), which is what lets the loop
// guard see a record going round.
const HeaderReplayCount = "trackops_replay-count"

// TopicPattern matches every dead-letter topic.
const TopicPattern = `^.*\.dlq$`

// Statuses of a recorded dead letter.
const (
	StatusNew       = "new"
	StatusReplayed  = "replayed"
	StatusDiscarded = "discarded"
)

// Header is one Kafka record header, bytes exact.
type Header struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// Message is one recorded dead letter.
type Message struct {
	ID                int64
	Topic             string
	Partition         int32
	Offset            int64
	Key               []byte
	Value             []byte
	Headers           []Header
	Timestamp         time.Time
	OriginalTopic     string
	OriginalPartition *int32
	OriginalOffset    *int64
	OriginalTimestamp *time.Time
	ConsumerGroup     string
	ExceptionClass    string
	ExceptionMessage  string
	Stacktrace        string
	Attempts          *int
	Fingerprint       string
	ErrorPattern      string
	ReplayCount       int
	Status            string
	ReplayBlocked     bool
	ReceivedAt        time.Time
	UpdatedAt         time.Time
	ReplayedAt        *time.Time
}

// FromRecord reads a dead-letter record: Spring Kafka's kafka_dlt-* headers
// (partition as 4-byte, offset and timestamp as 8-byte big-endian integers,
// or decimal text as some producers write them) and TrackOps' own. It never
// fails: whatever lands on a .dlq topic is recorded, even without headers.
func FromRecord(rec *kgo.Record) Message {
	m := Message{
		Topic:     rec.Topic,
		Partition: rec.Partition,
		Offset:    rec.Offset,
		Key:       rec.Key,
		Value:     rec.Value,
		Timestamp: rec.Timestamp,
		Headers:   make([]Header, 0, len(rec.Headers)),
	}
	for _, h := range rec.Headers {
		m.Headers = append(m.Headers, Header{Key: h.Key, Value: h.Value})
	}
	m.OriginalTopic = kafka.Header(rec, kafka.HeaderDLTOriginalTopic)
	if m.OriginalTopic == "" {
		m.OriginalTopic = strings.TrimSuffix(rec.Topic, events.DLQSuffix)
	}
	if v, ok := headerInt(rec, kafka.HeaderDLTOriginalPartition); ok {
		p := int32(v)
		m.OriginalPartition = &p
	}
	if v, ok := headerInt(rec, kafka.HeaderDLTOriginalOffset); ok {
		m.OriginalOffset = &v
	}
	if v, ok := headerInt(rec, kafka.HeaderDLTOriginalTimestamp); ok {
		ts := time.UnixMilli(v).UTC()
		m.OriginalTimestamp = &ts
	}
	if v, ok := headerInt(rec, kafka.HeaderDLTAttempts); ok {
		a := int(v)
		m.Attempts = &a
	}
	if v, ok := headerInt(rec, HeaderReplayCount); ok && v > 0 {
		m.ReplayCount = int(v)
	}
	m.ConsumerGroup = kafka.Header(rec, kafka.HeaderDLTOriginalGroup)
	m.ExceptionClass = kafka.Header(rec, kafka.HeaderDLTExceptionFQCN)
	if m.ExceptionClass == "" {
		m.ExceptionClass = "unknown"
	}
	m.ExceptionMessage = kafka.Header(rec, kafka.HeaderDLTExceptionMessage)
	m.Stacktrace = kafka.Header(rec, kafka.HeaderDLTExceptionTrace)
	m.Fingerprint, m.ErrorPattern = Fingerprint(m.ExceptionClass, m.ExceptionMessage)
	m.Status = StatusNew
	return m
}

// headerInt reads an integer header as Spring writes it (big-endian, 4 or 8
// bytes) or as decimal text.
func headerInt(rec *kgo.Record, key string) (int64, bool) {
	for _, h := range rec.Headers {
		if h.Key != key {
			continue
		}
		if n, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil {
			return n, true
		}
		switch len(h.Value) {
		case 4:
			return int64(int32(binary.BigEndian.Uint32(h.Value))), true
		case 8:
			return int64(binary.BigEndian.Uint64(h.Value)), true
		}
		return 0, false
	}
	return 0, false
}

var (
	uuidRE   = regexp.MustCompile(`(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)
	quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	hexRE    = regexp.MustCompile(`\b(?:0[xX])?[0-9a-fA-F]{8,}\b`)
	numberRE = regexp.MustCompile(`[-+]?\b\d+(?:\.\d+)?`)
	spaceRE  = regexp.MustCompile(`\s+`)
)

// Normalise strips what differs between occurrences of one error from a
// message: UUIDs, quoted values, long hex ids and numbers become
// placeholders, runs of white space one space.
func Normalise(msg string) string {
	s := uuidRE.ReplaceAllString(msg, "<uuid>")
	s = quotedRE.ReplaceAllString(s, "<value>")
	s = hexRE.ReplaceAllStringFunc(s, func(h string) string {
		body := strings.TrimPrefix(strings.TrimPrefix(h, "0x"), "0X")
		if !strings.ContainsAny(body, "0123456789") || !strings.ContainsAny(body, "abcdefABCDEF") {
			return h // a word of a-f letters, or a plain number (replaced below)
		}
		return "<hex>"
	})
	s = numberRE.ReplaceAllString(s, "<n>")
	return strings.TrimSpace(spaceRE.ReplaceAllString(s, " "))
}

// Fingerprint groups dead letters that failed the same way: a short hash of
// the exception class and the normalised message, and the readable pattern
// the hash was taken of.
func Fingerprint(class, msg string) (fingerprint, pattern string) {
	pattern = class + ": " + Normalise(msg)
	sum := sha256.Sum256([]byte(pattern))
	return hex.EncodeToString(sum[:8]), pattern
}
