package journey

import (
	"context"
	"time"
)

// ackTimeColumns are the names the outbox's Kafka acknowledgement time may
// have, most likely first.
var ackTimeColumns = []string{"kafka_acked_at", "acked_at", "ack_at"}

// ackColumns says which of the outbox's optional acknowledgement columns
// exist: the partition and offset Kafka acknowledged a row at, and when. The
// journey reads them when a migration has added them and shows the
// consumers' view of each record until then.
type ackColumns struct {
	partition bool   // kafka_partition and kafka_offset
	ackAt     string // column name, "" when absent
	checked   time.Time
}

func (a ackColumns) selectList() string {
	s := "NULL::integer, NULL::bigint"
	if a.partition {
		s = "kafka_partition, kafka_offset"
	}
	if a.ackAt != "" {
		return s + ", " + a.ackAt
	}
	return s + ", NULL::timestamptz"
}

func (a ackColumns) dest(x *outboxRow) []any { return []any{&x.partition, &x.offset, &x.ackedAt} }

// ackColumns looks the columns up in the catalogue: once when they exist,
// and again at most once a minute while they do not (another process may
// migrate the shared database meanwhile).
func (b *Builder) ackColumns(ctx context.Context) ackColumns {
	b.ackMu.Lock()
	defer b.ackMu.Unlock()
	now := b.opts.Now()
	if b.ack.partition && b.ack.ackAt != "" || now.Sub(b.ack.checked) < time.Minute {
		return b.ack
	}
	rows, err := b.db.Query(ctx, `SELECT column_name::text FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'outbox_events'
		  AND column_name = ANY($1)`, append([]string{"kafka_partition", "kafka_offset"}, ackTimeColumns...))
	if err != nil {
		return b.ack // keep what is known; try again on the next journey
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if rows.Scan(&name) == nil {
			have[name] = true
		}
	}
	if rows.Err() != nil {
		return b.ack
	}
	a := ackColumns{partition: have["kafka_partition"] && have["kafka_offset"], checked: now}
	for _, c := range ackTimeColumns {
		if have[c] {
			a.ackAt = c
			break
		}
	}
	b.ack = a
	return a
}
