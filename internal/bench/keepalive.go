package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// keepAliveClient is a minimal HTTP/1.1 client for closed-loop GETs: each
// worker owns one keep-alive connection and writes its request and reads
// the response on its own goroutine, as load generators such as wrk do.
// net/http's client hands every request between three goroutines; on a
// two-core machine it spent more CPU than the server it was measuring, and
// that CPU was taken from the server.
type keepAliveClient struct {
	host string
	// tail is what follows a request's path: the protocol, the headers and
	// the blank line, the same for every request.
	tail    string
	timeout time.Duration
	conns   []*keepAliveConn
}

type keepAliveConn struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

// newKeepAliveClient is a client for base (http://host:port) with one
// connection slot per worker; token, if set, is sent as a bearer token.
func newKeepAliveClient(base, token string, workers int, timeout time.Duration) (*keepAliveClient, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("keep-alive client: %w", err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("keep-alive client: %s: only http is supported", base)
	}
	tail := " HTTP/1.1\r\nHost: " + u.Host + "\r\n"
	if token != "" {
		tail += "Authorization: Bearer " + token + "\r\n"
	}
	return &keepAliveClient{host: u.Host, tail: tail + "\r\n", timeout: timeout, conns: make([]*keepAliveConn, workers)}, nil
}

// get sends GET path on worker's connection (dialled on first use, and
// again after an error or a response that closes it) and reads the whole
// response. It returns the status code.
func (k *keepAliveClient) get(ctx context.Context, worker int, path string) (int, error) {
	kc := k.conns[worker]
	if kc == nil {
		c, err := (&net.Dialer{Timeout: k.timeout}).DialContext(ctx, "tcp", k.host)
		if err != nil {
			return 0, err
		}
		kc = &keepAliveConn{c: c, br: bufio.NewReaderSize(c, 16<<10)}
		k.conns[worker] = kc
	}
	kc.req = append(kc.req[:0], "GET "...)
	kc.req = append(kc.req, path...)
	kc.req = append(kc.req, k.tail...)
	code, keep, err := kc.roundTrip(k.timeout)
	if err != nil || !keep {
		kc.c.Close()
		k.conns[worker] = nil
	}
	return code, err
}

func (kc *keepAliveConn) roundTrip(timeout time.Duration) (code int, keep bool, err error) {
	if err := kc.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, false, err
	}
	if _, err := kc.c.Write(kc.req); err != nil {
		return 0, false, err
	}
	h, err := readResponseHead(kc.br)
	if err != nil {
		return 0, false, err
	}
	switch {
	case h.chunked:
		err = discardChunked(kc.br)
	case h.length >= 0:
		_, err = kc.br.Discard(int(h.length))
	default: // delimited by the end of the connection
		_, err = io.Copy(io.Discard, kc.br)
		h.close = true
	}
	return h.code, err == nil && !h.close, err
}

// responseHead is what the client needs of a response's status line and
// headers.
type responseHead struct {
	code    int
	length  int64 // -1: no Content-Length
	chunked bool
	close   bool
}

// readResponseHead parses a status line and headers in place, without the
// allocations of a header map (http.ReadResponse builds one per response,
// which was most of this client's cost).
func readResponseHead(br *bufio.Reader) (responseHead, error) {
	h := responseHead{length: -1}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return h, fmt.Errorf("read status line: %w", err)
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return h, fmt.Errorf("malformed status line %q", line)
	}
	if h.code, err = strconv.Atoi(string(line[9:12])); err != nil {
		return h, fmt.Errorf("malformed status line %q", line)
	}
	h.close = line[7] == '0' // HTTP/1.0 closes unless told otherwise
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return h, fmt.Errorf("read header: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return h, nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return h, fmt.Errorf("malformed header %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if h.length, err = strconv.ParseInt(string(value), 10, 64); err != nil || h.length < 0 {
				return h, fmt.Errorf("malformed Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			h.chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			h.close = bytes.EqualFold(value, []byte("close"))
		}
	}
}

// discardChunked reads a chunked body and its trailer.
func discardChunked(br *bufio.Reader) error {
	if _, err := io.Copy(io.Discard, httputil.NewChunkedReader(br)); err != nil {
		return fmt.Errorf("read chunked body: %w", err)
	}
	for { // the trailer ends with an empty line
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("read trailer: %w", err)
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

// close closes every open connection.
func (k *keepAliveClient) close() {
	for i, kc := range k.conns {
		if kc != nil {
			kc.c.Close()
			k.conns[i] = nil
		}
	}
}
