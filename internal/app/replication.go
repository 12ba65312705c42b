package app

import (
	"context"

	"github.com/trackops/trackops/internal/kafka"
)

// warnUnderReplicated logs the topics that exist with fewer replicas than
// TRACKOPS_KAFKA_REPLICATION_FACTOR (created before it was raised, or by
// hand): new topics get the setting, existing ones are not changed.
func (a *App) warnUnderReplicated(ctx context.Context, topics []string) {
	short, err := kafka.UnderReplicated(ctx, a.producer, topics...)
	if err != nil {
		a.log.Warn("could not check the replication of topics", "err", err)
		return
	}
	for topic, n := range short {
		a.log.Warn("topic has fewer replicas than TRACKOPS_KAFKA_REPLICATION_FACTOR; reassign its partitions to raise it",
			"topic", topic, "replicas", n, "want", a.cfg.Kafka.ReplicationFactor)
	}
}
