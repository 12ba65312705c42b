package config

import (
	"strings"
	"testing"
	"time"
)

func TestKafkaDurabilitySettings(t *testing.T) {
	c, err := LoadFrom(envOf(map[string]string{"TRACKOPS_LOG_FORMAT": "json"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Durability != "group" || c.Kafka.FlushInterval != 50*time.Millisecond {
		t.Fatalf("defaults: %q %v, want group 50ms", c.Kafka.Durability, c.Kafka.FlushInterval)
	}
	c, err = LoadFrom(envOf(map[string]string{"TRACKOPS_LOG_FORMAT": "json", "TRACKOPS_KAFKA_DURABILITY": "FSYNC", "TRACKOPS_KAFKA_FLUSH_INTERVAL": "5ms"}))
	if err != nil || c.Kafka.Durability != "fsync" || c.Kafka.FlushInterval != 5*time.Millisecond {
		t.Fatalf("fsync, 5ms: %q %v %v", c.Kafka.Durability, c.Kafka.FlushInterval, err)
	}
	for env, want := range map[string]string{
		"TRACKOPS_KAFKA_DURABILITY=sometimes": "TRACKOPS_KAFKA_DURABILITY",
		"TRACKOPS_KAFKA_FLUSH_INTERVAL=0s":    "TRACKOPS_KAFKA_FLUSH_INTERVAL",
	} {
		k, v, _ := strings.Cut(env, "=")
		_, err := LoadFrom(envOf(map[string]string{"TRACKOPS_LOG_FORMAT": "json", k: v}))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one naming %s", env, err, want)
		}
	}
}
