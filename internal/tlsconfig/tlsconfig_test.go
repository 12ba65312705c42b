package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/testfix"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := testfix.WriteCert(dir, cn)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestServerTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "first")
	cfg, err := Server(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), TLSConfig: cfg, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	addr := ln.Addr().String()

	dial := func(min, max uint16) (*tls.Conn, error) {
		return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: min, MaxVersion: max})
	}
	if c, err := dial(tls.VersionTLS10, tls.VersionTLS11); err == nil {
		c.Close()
		t.Errorf("a TLS 1.1 client was accepted")
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c, err := dial(v, v)
		if err != nil {
			t.Fatalf("TLS %x client: %v", v, err)
		}
		if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "first" {
			t.Errorf("served %q", cn)
		}
		c.Close()
	}

	// A renewed certificate is served without a restart; a broken one is
	// ignored and the last good one stays in use.
	r := &reloader{certFile: certFile, keyFile: keyFile, every: 0}
	if err := r.load(); err != nil {
		t.Fatal(err)
	}
	served := func() string {
		c, _ := r.get(nil)
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		return leaf.Subject.CommonName
	}
	writeCert(t, dir, "second")
	future := time.Now().Add(time.Minute)
	os.Chtimes(certFile, future, future)
	if cn := served(); cn != "second" {
		t.Errorf("after renewal serving %q, want second", cn)
	}
	os.WriteFile(certFile, []byte("garbage"), 0o600)
	future = future.Add(time.Minute)
	os.Chtimes(certFile, future, future)
	if cn := served(); cn != "second" {
		t.Errorf("after a broken renewal serving %q, want second", cn)
	}

	if _, err := Server(filepath.Join(dir, "missing.pem"), keyFile); err == nil {
		t.Errorf("missing certificate accepted")
	}
}

func TestKafkaOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "pw")
	os.WriteFile(notPEM, []byte("s3cret\n"), 0o600)
	cases := []struct {
		sec   config.KafkaSecurity
		nopts int
		err   string
	}{
		{config.KafkaSecurity{}, 0, ""},
		{config.KafkaSecurity{TLS: true}, 1, ""},
		{config.KafkaSecurity{SASLMechanism: "SCRAM-SHA-512", SASLUsername: "u", SASLPassword: "s3cret"}, 1, ""},
		{config.KafkaSecurity{TLS: true, SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "p"}, 2, ""},
		{config.KafkaSecurity{SASLMechanism: "GSSAPI", SASLUsername: "u", SASLPassword: "s3cret"}, 0, "want PLAIN"},
		{config.KafkaSecurity{TLS: true, CAFile: notPEM}, 0, "no PEM certificate"},
		{config.KafkaSecurity{TLS: true, CAFile: filepath.Join(dir, "none")}, 0, "CA file"},
	}
	for i, c := range cases {
		opts, err := Kafka(c.sec)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("case %d: err %v, want it to mention %q", i, err, c.err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks the password: %v", err)
			}
			continue
		}
		if err != nil || len(opts) != c.nopts {
			t.Errorf("case %d: %d options, err %v; want %d", i, len(opts), err, c.nopts)
		}
	}
}

// TestKafkaTLSAndSCRAM talks to an in-process broker that requires TLS and
// SCRAM-SHA-256, with options built from the configuration.
func TestKafkaTLSAndSCRAM(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "broker")
	srvCfg, err := Server(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(srvCfg), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "trackops", "right-password"), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	produce := func(pass string) error {
		opts, err := Kafka(config.KafkaSecurity{TLS: true, CAFile: certFile,
			SASLMechanism: "SCRAM-SHA-256", SASLUsername: "trackops", SASLPassword: pass})
		if err != nil {
			return err
		}
		cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.RequestRetries(0),
			kgo.RecordRetries(1))...)
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("v")}).FirstErr()
	}
	if err := produce("right-password"); err != nil {
		t.Fatalf("produce over TLS with SCRAM: %v", err)
	}
	if err := produce("wrong-password"); err == nil {
		t.Errorf("produce with a wrong SCRAM password succeeded")
	}
}
