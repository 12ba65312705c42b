// Package tlsconfig builds the TLS settings of TrackOps' HTTP servers and of
// its Kafka clients (TLS and SASL from the configuration's Kafka section). Redis and
// PostgreSQL take TLS from their URLs (rediss://, sslmode=verify-full); see
// docs/security.md.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/trackops/trackops/internal/config"
)

// Server returns a TLS configuration for an HTTP server serving the
// certificate chain and key in PEM files: TLS 1.2 or newer, and for TLS 1.2
// only AEAD cipher suites with forward secrecy. The files are read again
// when they change (checked at most once a minute), so a renewed
// certificate is served without a restart.
func Server(certFile, keyFile string) (*tls.Config, error) {
	r := &reloader{certFile: certFile, keyFile: keyFile, every: time.Minute}
	if err := r.load(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   tls12Suites,
		GetCertificate: r.get,
		NextProtos:     []string{"h2", "http/1.1"},
	}, nil
}

// tls12Suites are the TLS 1.2 suites allowed (TLS 1.3 suites are fixed by Go
// and all good).
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

type reloader struct {
	certFile, keyFile string
	every             time.Duration

	mu        sync.Mutex
	cert      *tls.Certificate
	modTime   time.Time
	lastCheck time.Time
}

func (r *reloader) load() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.modTime, r.lastCheck = &cert, r.newestModTime(), time.Now()
	return nil
}

func (r *reloader) newestModTime() time.Time {
	var t time.Time
	for _, f := range []string{r.certFile, r.keyFile} {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t
}

func (r *reloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.lastCheck) >= r.every {
		r.lastCheck = time.Now()
		if r.newestModTime().After(r.modTime) {
			// A half-written pair fails to load; the old one stays in use
			// and the next check tries again.
			_ = r.load()
		}
	}
	return r.cert, nil
}

// Kafka returns the kgo options for the TLS and SASL that s asks for
// (config.Kafka.Security, from the TRACKOPS_KAFKA_TLS* and
// TRACKOPS_KAFKA_SASL_* variables, which config validates). The zero s
// gives no options: plaintext, as for the embedded broker.
func Kafka(s config.KafkaSecurity) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if s.TLS {
		cfg, err := Client(s.CAFile, s.CertFile, s.KeyFile, s.ServerName)
		if err != nil {
			return nil, fmt.Errorf("Kafka TLS: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	mech, err := saslMechanism(s.SASLMechanism, s.SASLUsername, s.SASLPassword)
	if err != nil {
		return nil, err
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// Client returns a client TLS configuration (TLS 1.2+): caFile, when set,
// replaces the system roots; certFile and keyFile, when set, are presented
// for mutual TLS; serverName, when set, is the name verified.
func Client(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("client certificate and key files must be set together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func saslMechanism(name, user, pass string) (sasl.Mechanism, error) {
	if name == "" {
		if user != "" || pass != "" {
			return nil, fmt.Errorf("TRACKOPS_KAFKA_SASL_USERNAME/PASSWORD are set but TRACKOPS_KAFKA_SASL_MECHANISM is not (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
		return nil, nil
	}
	if user == "" || pass == "" {
		return nil, fmt.Errorf("TRACKOPS_KAFKA_SASL_MECHANISM=%s needs TRACKOPS_KAFKA_SASL_USERNAME and TRACKOPS_KAFKA_SASL_PASSWORD (or _FILE)", name)
	}
	switch strings.ToUpper(name) {
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("TRACKOPS_KAFKA_SASL_MECHANISM=%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", name)
}
