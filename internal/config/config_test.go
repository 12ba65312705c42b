package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// loadCase is one environment for LoadFrom: either check holds on the
// config it loads, or the error names wantErr.
type loadCase struct {
	name    string
	env     map[string]string
	check   func(Config) bool
	wantErr string
}

// runLoadCases loads each case's environment (in JSON log format) as a
// subtest.
func runLoadCases(t *testing.T, cases []loadCase) {
	t.Helper()
	for _, tt := range cases {
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
		"database": c.Database.URL, "redis": c.Redis.URL, "kafka": c.Kafka.EmbeddedAddr, "data": c.DataDir,
		"http": c.HTTP.Addr, "connect": c.CDC.ConnectAddr, "strategy": c.EventStrategy,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s default = %q, want %q", k, got[k], v)
		}
	}
	if !c.Kafka.Embedded() || c.Kafka.Bootstrap()[0] != "127.0.0.1:9092" {
		t.Errorf("empty TRACKOPS_KAFKA_BROKERS must mean the embedded broker: %v", c.Kafka.Bootstrap())
	}
}

func TestLoadFrom(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "db-url")
	if err := os.WriteFile(secret, []byte("postgres://u:p@db/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runLoadCases(t, []loadCase{
		{"debezium is an alias of cdc", map[string]string{"TRACKOPS_EVENT_STRATEGY": "debezium"},
			func(c Config) bool { return c.EventStrategy == StrategyCDC }, ""},
		{"brokers list", map[string]string{"TRACKOPS_KAFKA_BROKERS": " k1:9092, k2:9092 ,"},
			func(c Config) bool {
				return !c.Kafka.Embedded() && len(c.Kafka.Bootstrap()) == 2 && c.Kafka.Bootstrap()[1] == "k2:9092"
			}, ""},
		{"value from a file", map[string]string{"TRACKOPS_DATABASE_URL_FILE": secret},
			func(c Config) bool { return c.Database.URL == "postgres://u:p@db/x" }, ""},
		{"durations", map[string]string{"TRACKOPS_RELAY_POLL_INTERVAL": "250ms"},
			func(c Config) bool { return c.Relay.PollInterval == 250*time.Millisecond }, ""},
		{"unknown strategy", map[string]string{"TRACKOPS_EVENT_STRATEGY": "kafka-streams"}, nil, "TRACKOPS_EVENT_STRATEGY"},
		{"bad duration", map[string]string{"TRACKOPS_RELAY_POLL_INTERVAL": "soon"}, nil, "TRACKOPS_RELAY_POLL_INTERVAL"},
		{"bad number", map[string]string{"TRACKOPS_KAFKA_PARTITIONS": "three"}, nil, "TRACKOPS_KAFKA_PARTITIONS"},
		{"missing secret file", map[string]string{"TRACKOPS_REDIS_URL_FILE": "/nonexistent/x"}, nil, "TRACKOPS_REDIS_URL_FILE"},
		{"half a TLS pair", map[string]string{"TRACKOPS_TLS_CERT_FILE": "c.pem"}, nil, "TRACKOPS_TLS_KEY_FILE"},
		{"compression defaults to none", map[string]string{},
			func(c Config) bool { return c.Kafka.Compression == "none" }, ""},
		{"compression", map[string]string{"TRACKOPS_KAFKA_COMPRESSION": "ZSTD"},
			func(c Config) bool { return c.Kafka.Compression == "zstd" }, ""},
		{"unknown compression", map[string]string{"TRACKOPS_KAFKA_COMPRESSION": "brotli"}, nil, "TRACKOPS_KAFKA_COMPRESSION=\"brotli\": want one of none, gzip, snappy, lz4, zstd"},
		{"unparsable database url names the form", map[string]string{"TRACKOPS_DATABASE_URL": "postgres://u:secret@db:port/x"},
			nil, "want the form postgres://USER:PASSWORD@HOST:5432/DATABASE?sslmode=disable"},
		{"redis url with a bad scheme", map[string]string{"TRACKOPS_REDIS_URL": "http://u:secret@127.0.0.1:6379"},
			nil, "want redis://HOST:6379"},
		{"redis cluster list", map[string]string{"TRACKOPS_REDIS_URL": "redis+cluster://a:1,b:2"},
			func(c Config) bool { return c.Redis.URL == "redis+cluster://a:1,b:2" }, ""},
	})
}

func TestScaleOutSettings(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "admin-key")
	if err := os.WriteFile(keyFile, []byte("tok_secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runLoadCases(t, []loadCase{
		{"direct URL defaults to the database URL, no pooler",
			map[string]string{"TRACKOPS_DATABASE_URL": "postgres://a/x"},
			func(c Config) bool { return c.Database.Direct() == "postgres://a/x" && !c.Database.Pooled() }, ""},
		{"a direct URL of its own means a pooler in front of the main one",
			map[string]string{"TRACKOPS_DATABASE_URL": "postgres://bouncer:6432/x", "TRACKOPS_DATABASE_DIRECT_URL": "postgres://db:5432/x"},
			func(c Config) bool { return c.Database.Direct() == "postgres://db:5432/x" && c.Database.Pooled() }, ""},
		{"embedded broker: one replica",
			map[string]string{},
			func(c Config) bool { return c.Kafka.ReplicationFactor == 1 && c.Kafka.MinInsyncReplicas == 1 }, ""},
		{"a real cluster: three replicas, two in sync",
			map[string]string{"TRACKOPS_KAFKA_BROKERS": "k1:9092,k2:9092,k3:9092"},
			func(c Config) bool { return c.Kafka.ReplicationFactor == 3 && c.Kafka.MinInsyncReplicas == 2 }, ""},
		{"explicit replication, min.insync follows",
			map[string]string{"TRACKOPS_KAFKA_BROKERS": "k1:9092", "TRACKOPS_KAFKA_REPLICATION_FACTOR": "2"},
			func(c Config) bool { return c.Kafka.ReplicationFactor == 2 && c.Kafka.MinInsyncReplicas == 1 }, ""},
		{"brokers' defaults",
			map[string]string{"TRACKOPS_KAFKA_BROKERS": "k1:9092", "TRACKOPS_KAFKA_REPLICATION_FACTOR": "-1"},
			func(c Config) bool { return c.Kafka.ReplicationFactor == -1 && c.Kafka.MinInsyncReplicas == 0 }, ""},
		{"bootstrap key from a secret file",
			map[string]string{"TRACKOPS_BOOTSTRAP_ADMIN_KEY_FILE": keyFile},
			func(c Config) bool { return c.Auth.BootstrapAdminKey == "tok_secret" }, ""},
		{"replicas on the embedded broker", map[string]string{"TRACKOPS_KAFKA_REPLICATION_FACTOR": "3"}, nil, "TRACKOPS_KAFKA_BROKERS"},
		{"zero replicas", map[string]string{"TRACKOPS_KAFKA_BROKERS": "k:1", "TRACKOPS_KAFKA_REPLICATION_FACTOR": "0"}, nil, "TRACKOPS_KAFKA_REPLICATION_FACTOR"},
		{"more in sync than replicas",
			map[string]string{"TRACKOPS_KAFKA_BROKERS": "k:1", "TRACKOPS_KAFKA_MIN_INSYNC_REPLICAS": "4"}, nil, "TRACKOPS_KAFKA_MIN_INSYNC_REPLICAS"},
	})
}

// Every bad variable of every section is reported at once — values that
// do not parse beside values that cannot work — so a deployment is fixed in
// one round, and no message repeats a password.
func TestValidateReportsEveryBadVariable(t *testing.T) {
	bad := map[string]string{
		"TRACKOPS_DATABASE_URL":              "postgres://u:secret@db:port/x",
		"TRACKOPS_DATABASE_DIRECT_URL":       "postgres://u:secret@db:port/y",
		"TRACKOPS_REDIS_URL":                 "memcached://u:secret@h:1",
		"TRACKOPS_EVENT_STRATEGY":            "kafka-streams",
		"TRACKOPS_KAFKA_COMPRESSION":         "brotli",
		"TRACKOPS_KAFKA_DURABILITY":          "sometimes",
		"TRACKOPS_KAFKA_FLUSH_INTERVAL":      "0s",
		"TRACKOPS_KAFKA_PARTITIONS":          "three",
		"TRACKOPS_KAFKA_TLS":                 "maybe",
		"TRACKOPS_KAFKA_SASL_MECHANISM":      "GSSAPI",
		"TRACKOPS_HTTP_MAX_BODY_BYTES":       "0",
		"TRACKOPS_TLS_CERT_FILE":             "cert.pem",
		"TRACKOPS_RELAY_BATCH_SIZE":          "0",
		"TRACKOPS_RELAY_POLL_INTERVAL":       "soon",
		"TRACKOPS_CONSUMER_RETRY_ATTEMPTS":   "0",
		"TRACKOPS_CONSUMER_RETRY_MULTIPLIER": "x2",
		"TRACKOPS_CDC_SLOT_NAME":             "Orders",
		"TRACKOPS_DLQ_MAX_REPLAYS":           "0",
		"TRACKOPS_DLQ_ALERT_WEBHOOK":         "slack",
		"TRACKOPS_RATE_LIMIT_IP":             "lots",
		"TRACKOPS_RATE_LIMIT_LOGIN":          "5/d",
		"TRACKOPS_SAGA_PENDING_TIMEOUT":      "-1m",
		"TRACKOPS_LOG_FORMAT":                "xml",
		"TRACKOPS_LOG_LEVEL":                 "loud",
		"TRACKOPS_SHUTDOWN_TIMEOUT":          "later",
		"OTEL_TRACES_SAMPLER_ARG":            "2",
	}
	_, err := LoadFrom(envOf(bad))
	if err == nil {
		t.Fatal("no error")
	}
	for name := range bad {
		want := name
		if name == "TRACKOPS_TLS_CERT_FILE" {
			want = "TRACKOPS_TLS_KEY_FILE" // the half that is missing
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error shows a password: %v", err)
	}
}

func TestRateLimits(t *testing.T) {
	c, err := LoadFrom(envOf(map[string]string{"TRACKOPS_LOG_FORMAT": "json", "TRACKOPS_RATE_LIMIT_IP": "off",
		"TRACKOPS_RATE_LIMIT_PRINCIPAL": "50/s,100"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Limits.IP.Off() || c.Limits.Principal != (Rate{Count: 50, Burst: 100, Period: time.Second}) ||
		c.Limits.Login != (Rate{Count: 5, Burst: 5, Period: time.Minute}) {
		t.Fatalf("limits %+v", c.Limits)
	}
	for in, want := range map[string]Rate{
		"100/s": {100, 100, time.Second}, "600/m,50": {600, 50, time.Minute}, " 1000 / h ": {1000, 1000, time.Hour}, "0": {}, "OFF": {},
	} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"100", "x/s", "0/s", "-1/s", "5/d", "5/s,0", "5/s,x"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
}

func TestKafkaSecurity(t *testing.T) {
	c, err := LoadFrom(envOf(map[string]string{"TRACKOPS_LOG_FORMAT": "json", "TRACKOPS_KAFKA_TLS": "true",
		"TRACKOPS_KAFKA_TLS_CA_FILE": "ca.pem", "TRACKOPS_KAFKA_SASL_MECHANISM": "scram-sha-512",
		"TRACKOPS_KAFKA_SASL_USERNAME": "u", "TRACKOPS_KAFKA_SASL_PASSWORD": "p"}))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Kafka.Security; !s.TLS || s.CAFile != "ca.pem" || s.SASLMechanism != "SCRAM-SHA-512" || s.SASLUsername != "u" {
		t.Fatalf("security %+v", s)
	}
	for env, want := range map[string]string{
		"TRACKOPS_KAFKA_TLS_CA_FILE=ca.pem":       "TRACKOPS_KAFKA_TLS is not true",
		"TRACKOPS_KAFKA_SASL_USERNAME=u":          "TRACKOPS_KAFKA_SASL_MECHANISM is not",
		"TRACKOPS_KAFKA_SASL_MECHANISM=PLAIN":     "needs TRACKOPS_KAFKA_SASL_USERNAME",
		"TRACKOPS_KAFKA_TLS_CERT_FILE=client.pem": "must be set together",
	} {
		k, v, _ := strings.Cut(env, "=")
		m := map[string]string{"TRACKOPS_LOG_FORMAT": "json", k: v}
		if k == "TRACKOPS_KAFKA_TLS_CERT_FILE" {
			m["TRACKOPS_KAFKA_TLS"] = "true"
		}
		if _, err := LoadFrom(envOf(m)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", env, err, want)
		}
	}
}
