package ops_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/ops"
)

func TestTopicsAndGroupLag(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := kafkatest.New(t)
	p := kafkatest.NewProducer(t, b)
	kafkatest.CreateTopics(t, p, 2, "T1")
	for i := range 10 {
		rec := &kgo.Record{Topic: "T1", Key: []byte{byte(i)}, Value: []byte("v")}
		if err := p.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// A group that consumed and committed 4 records leaves a lag of 6.
	c, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumerGroup("g1"), kgo.ConsumeTopics("T1"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	var got []*kgo.Record
	for len(got) < 10 {
		c.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, r) })
	}
	// Commit the first two records of each partition.
	perPart := map[int32][]*kgo.Record{}
	for _, r := range got {
		perPart[r.Partition] = append(perPart[r.Partition], r)
	}
	var commit []*kgo.Record
	committed := 0
	for _, rs := range perPart {
		n := min(2, len(rs))
		commit = append(commit, rs[n-1])
		committed += n
	}
	if err := c.CommitRecords(ctx, commit...); err != nil {
		t.Fatal(err)
	}
	c.Close()

	k := ops.NewKafka(p, kafkatest.Options(b))
	topics, err := k.Topics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tp := range topics {
		if tp.Name == "T1" {
			found = true
			if tp.Messages != 10 || len(tp.Partitions) != 2 {
				t.Fatalf("T1: %+v", tp)
			}
		}
	}
	if !found {
		t.Fatalf("T1 not listed: %+v", topics)
	}
	groups, err := k.Groups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || groups[0].Group != "g1" || groups[0].TotalLag != int64(10-committed) {
		t.Fatalf("groups: %+v (committed %d)", groups, committed)
	}
}
