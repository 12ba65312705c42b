package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsMatchTheContract(t *testing.T) {
	c, err := LoadFrom(envOf(map[string]string{"TRACKOPS_LOG_FORMAT": "json"}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"database": "postgres://postgres@127.0.0.1:5432/trackops?sslmode=disable",
		"redis":    "redis://127.0.0.1:6379",
		"kafka":    "127.0.0.1:9092",
		"data":     "./data",
		"http":     "127.0.0.1:8080",
		"connect":  "127.0.0.1:8083",
		"strategy": "outbox",
	}
	got := map[string]string{
		"database": c.DatabaseURL, "redis": c.RedisURL, "kafka": c.EmbeddedKafkaAddr, "data": c.DataDir,
		"http": c.HTTPAddr, "connect": c.ConnectAddr, "strategy": c.EventStrategy,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s default = %q, want %q", k, got[k], v)
		}
	}
	if !c.EmbeddedKafka() || c.Brokers()[0] != "127.0.0.1:9092" {
		t.Errorf("empty TRACKOPS_KAFKA_BROKERS must mean the embedded broker: %v", c.Brokers())
	}
}

func TestLoadFrom(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "db-url")
	if err := os.WriteFile(secret, []byte("postgres://u:p@db/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		check   func(Config) bool
		wantErr string
	}{
		{"debezium is an alias of cdc", map[string]string{"TRACKOPS_EVENT_STRATEGY": "debezium"},
			func(c Config) bool { return c.EventStrategy == StrategyCDC }, ""},
		{"brokers list", map[string]string{"TRACKOPS_KAFKA_BROKERS": " k1:9092, k2:9092 ,"},
			func(c Config) bool { return !c.EmbeddedKafka() && len(c.Brokers()) == 2 && c.Brokers()[1] == "k2:9092" }, ""},
		{"value from a file", map[string]string{"TRACKOPS_DATABASE_URL_FILE": secret},
			func(c Config) bool { return c.DatabaseURL == "postgres://u:p@db/x" }, ""},
		{"durations", map[string]string{"TRACKOPS_RELAY_POLL_INTERVAL": "250ms"},
			func(c Config) bool { return c.RelayPollInterval == 250*time.Millisecond }, ""},
		{"unknown strategy", map[string]string{"TRACKOPS_EVENT_STRATEGY": "kafka-streams"}, nil, "TRACKOPS_EVENT_STRATEGY"},
		{"bad duration", map[string]string{"TRACKOPS_RELAY_POLL_INTERVAL": "soon"}, nil, "TRACKOPS_RELAY_POLL_INTERVAL"},
		{"bad number", map[string]string{"TRACKOPS_KAFKA_PARTITIONS": "three"}, nil, "TRACKOPS_KAFKA_PARTITIONS"},
		{"missing secret file", map[string]string{"TRACKOPS_REDIS_URL_FILE": "/nonexistent/x"}, nil, "TRACKOPS_REDIS_URL_FILE"},
		{"half a TLS pair", map[string]string{"TRACKOPS_TLS_CERT_FILE": "c.pem"}, nil, "TRACKOPS_TLS_KEY_FILE"},
		{"compression defaults to none", map[string]string{},
			func(c Config) bool { return c.KafkaCompression == "none" }, ""},
		{"compression", map[string]string{"TRACKOPS_KAFKA_COMPRESSION": "ZSTD"},
			func(c Config) bool { return c.KafkaCompression == "zstd" }, ""},
		{"unknown compression", map[string]string{"TRACKOPS_KAFKA_COMPRESSION": "brotli"}, nil, "TRACKOPS_KAFKA_COMPRESSION=\"brotli\": want one of none, gzip, snappy, lz4, zstd"},
		{"unparsable database url names the form", map[string]string{"TRACKOPS_DATABASE_URL": "postgres://u:secret@db:port/x"},
			nil, "want the form postgres://USER:PASSWORD@HOST:5432/DATABASE?sslmode=disable"},
		{"redis url with a bad scheme", map[string]string{"TRACKOPS_REDIS_URL": "http://u:secret@127.0.0.1:6379"},
			nil, "want redis://HOST:6379"},
		{"redis cluster list", map[string]string{"TRACKOPS_REDIS_URL": "redis+cluster://a:1,b:2"},
			func(c Config) bool { return c.RedisURL == "redis+cluster://a:1,b:2" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["TRACKOPS_LOG_FORMAT"] = "json"
			c, err := LoadFrom(envOf(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}

func TestScaleOutSettings(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "admin-key")
	if err := os.WriteFile(keyFile, []byte("tok_secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		check   func(Config) bool
		wantErr string
	}{
		{"direct URL defaults to the database URL, no pooler",
			map[string]string{"TRACKOPS_DATABASE_URL": "postgres://a/x"},
			func(c Config) bool { return c.DirectDatabaseURL() == "postgres://a/x" && !c.DatabasePooled() }, ""},
		{"a direct URL of its own means a pooler in front of the main one",
			map[string]string{"TRACKOPS_DATABASE_URL": "postgres://bouncer:6432/x", "TRACKOPS_DATABASE_DIRECT_URL": "postgres://db:5432/x"},
			func(c Config) bool { return c.DirectDatabaseURL() == "postgres://db:5432/x" && c.DatabasePooled() }, ""},
		{"embedded broker: one replica",
			map[string]string{},
			func(c Config) bool { return c.KafkaReplicationFactor == 1 && c.KafkaMinInsyncReplicas == 1 }, ""},
		{"a real cluster: three replicas, two in sync",
			map[string]string{"TRACKOPS_KAFKA_BROKERS": "k1:9092,k2:9092,k3:9092"},
			func(c Config) bool { return c.KafkaReplicationFactor == 3 && c.KafkaMinInsyncReplicas == 2 }, ""},
		{"explicit replication, min.insync follows",
			map[string]string{"TRACKOPS_KAFKA_BROKERS": "k1:9092", "TRACKOPS_KAFKA_REPLICATION_FACTOR": "2"},
			func(c Config) bool { return c.KafkaReplicationFactor == 2 && c.KafkaMinInsyncReplicas == 1 }, ""},
		{"brokers' defaults",
			map[string]string{"TRACKOPS_KAFKA_BROKERS": "k1:9092", "TRACKOPS_KAFKA_REPLICATION_FACTOR": "-1"},
			func(c Config) bool { return c.KafkaReplicationFactor == -1 && c.KafkaMinInsyncReplicas == 0 }, ""},
		{"bootstrap key from a secret file",
			map[string]string{"TRACKOPS_BOOTSTRAP_ADMIN_KEY_FILE": keyFile},
			func(c Config) bool { return c.BootstrapAdminKey == "tok_secret" }, ""},
		{"replicas on the embedded broker", map[string]string{"TRACKOPS_KAFKA_REPLICATION_FACTOR": "3"}, nil, "TRACKOPS_KAFKA_BROKERS"},
		{"zero replicas", map[string]string{"TRACKOPS_KAFKA_BROKERS": "k:1", "TRACKOPS_KAFKA_REPLICATION_FACTOR": "0"}, nil, "TRACKOPS_KAFKA_REPLICATION_FACTOR"},
		{"more in sync than replicas",
			map[string]string{"TRACKOPS_KAFKA_BROKERS": "k:1", "TRACKOPS_KAFKA_MIN_INSYNC_REPLICAS": "4"}, nil, "TRACKOPS_KAFKA_MIN_INSYNC_REPLICAS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["TRACKOPS_LOG_FORMAT"] = "json"
			c, err := LoadFrom(envOf(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}

// Every bad variable is reported at once, so a deployment is fixed in one
// round, and no message repeats a password.
func TestValidateReportsEveryBadVariable(t *testing.T) {
	_, err := LoadFrom(envOf(map[string]string{
		"TRACKOPS_LOG_FORMAT":        "json",
		"TRACKOPS_DATABASE_URL":      "postgres://u:secret@db:port/x",
		"TRACKOPS_REDIS_URL":         "memcached://u:secret@h:1",
		"TRACKOPS_EVENT_STRATEGY":    "kafka-streams",
		"TRACKOPS_KAFKA_COMPRESSION": "brotli",
	}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{"TRACKOPS_DATABASE_URL", "TRACKOPS_REDIS_URL", "TRACKOPS_EVENT_STRATEGY", "TRACKOPS_KAFKA_COMPRESSION"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error lacks %s: %v", name, err)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error shows a password: %v", err)
	}
}
