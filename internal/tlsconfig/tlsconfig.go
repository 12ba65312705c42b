// Package tlsconfig builds the TLS settings of TrackOps' HTTP servers and of
// its Kafka client (TLS and SASL from TRACKOPS_KAFKA_* variables). Redis and
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

// Kafka returns the kgo options for TLS and SASL that these variables ask
// for (read through getenv; NAME_FILE holds the value in a file instead):
//
//	TRACKOPS_KAFKA_TLS                  true to dial brokers over TLS
//	TRACKOPS_KAFKA_TLS_CA_FILE          PEM CA bundle (default: system roots)
//	TRACKOPS_KAFKA_TLS_CERT_FILE        client certificate for mutual TLS
//	TRACKOPS_KAFKA_TLS_KEY_FILE         its key
//	TRACKOPS_KAFKA_TLS_SERVER_NAME      name to verify, when not the broker host
//	TRACKOPS_KAFKA_SASL_MECHANISM       PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
//	TRACKOPS_KAFKA_SASL_USERNAME        SASL user
//	TRACKOPS_KAFKA_SASL_PASSWORD        SASL password (prefer _FILE)
//
// With none of them set it returns no options (plaintext, as for the
// embedded broker).
func Kafka(getenv func(string) string) ([]kgo.Opt, error) {
	e := env{getenv: getenv}
	var opts []kgo.Opt
	useTLS, err := e.bool("TRACKOPS_KAFKA_TLS")
	if err != nil {
		return nil, err
	}
	caFile, certFile, keyFile := e.str("TRACKOPS_KAFKA_TLS_CA_FILE"), e.str("TRACKOPS_KAFKA_TLS_CERT_FILE"), e.str("TRACKOPS_KAFKA_TLS_KEY_FILE")
	if !useTLS && (caFile != "" || certFile != "") {
		return nil, fmt.Errorf("TRACKOPS_KAFKA_TLS_* files are set but TRACKOPS_KAFKA_TLS is not true")
	}
	if useTLS {
		cfg, err := Client(caFile, certFile, keyFile, e.str("TRACKOPS_KAFKA_TLS_SERVER_NAME"))
		if err != nil {
			return nil, fmt.Errorf("Kafka TLS: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	mechName, user, pass := e.str("TRACKOPS_KAFKA_SASL_MECHANISM"), e.str("TRACKOPS_KAFKA_SASL_USERNAME"), e.str("TRACKOPS_KAFKA_SASL_PASSWORD")
	if e.err != nil {
		return nil, e.err
	}
	mech, err := saslMechanism(mechName, user, pass)
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

type env struct {
	getenv func(string) string
	err    error
}

func (e *env) str(name string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	if path := e.getenv(name + "_FILE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil && e.err == nil {
			e.err = fmt.Errorf("%s_FILE: %w", name, err)
		}
		return strings.TrimSpace(string(b))
	}
	return ""
}

func (e *env) bool(name string) (bool, error) {
	switch strings.ToLower(e.str(name)) {
	case "", "false", "0", "no", "off":
		return false, nil
	case "true", "1", "yes", "on":
		return true, nil
	}
	return false, fmt.Errorf("%s=%q: want true or false", name, e.getenv(name))
}
