package bench

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestKeepAliveClient: the load generator's client reads each kind of
// response framing whole, so the next request on the connection starts at
// a response boundary, and reconnects when the server closes.
func TestKeepAliveClient(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/length", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"id":"x"}`))
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, _ *http.Request) {
		for range 3 {
			_, _ = w.Write([]byte(strings.Repeat("a", 5000)))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("gone"))
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	c, err := newKeepAliveClient(srv.URL, "tok", 1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	ctx := context.Background()
	for i, tc := range []struct {
		path  string
		code  int
		conns int32 // connections opened so far
	}{
		{"/length", 200, 1},
		{"/chunked", 200, 1},
		{"/length", 200, 1},
		{"/close", 404, 1},
		{"/length", 200, 2}, // a new connection after the close
		{"/chunked", 200, 2},
		{"/chunked", 200, 2},
	} {
		code, err := c.get(ctx, 0, tc.path)
		if err != nil || code != tc.code {
			t.Fatalf("request %d, GET %s: %d, %v; want %d", i, tc.path, code, err, tc.code)
		}
		if n := conns.Load(); n != tc.conns {
			t.Errorf("request %d, GET %s: %d connections opened, want %d", i, tc.path, n, tc.conns)
		}
	}
}

func TestReadResponseHeadRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"SSH-2.0-OpenSSH\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", // ends inside the headers
	} {
		if h, err := readResponseHead(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("%q parsed as %+v, want an error", in, h)
		}
	}
	h, err := readResponseHead(bufio.NewReader(strings.NewReader("HTTP/1.0 503 Busy\r\ncontent-length: 7\r\n\r\n")))
	if err != nil || h.code != 503 || h.length != 7 || !h.close || h.chunked {
		t.Errorf("HTTP/1.0 head: %+v, %v", h, err)
	}
}

// TestHTTPFloorServesTheStoredBodies: the api-read scenario's floor answers
// an order it holds with that order's body, byte for byte, and 404 for any
// other, so its reads are the same work as the API's.
func TestHTTPFloorServesTheStoredBodies(t *testing.T) {
	t.Parallel()
	body := []byte(`{"id":"a","status":"PENDING"}`)
	f, err := startHTTPFloor(map[string][]byte{"a": body})
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/api/v1/orders/a", http.StatusOK, string(body)},
		{"/api/v1/orders/b", http.StatusNotFound, ""},
	} {
		resp, err := http.Get(f.base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.code {
			t.Errorf("GET %s: %d, want %d", tc.path, resp.StatusCode, tc.code)
		}
		if tc.code == http.StatusOK && (string(got) != tc.body || resp.Header.Get("Content-Type") != "application/json") {
			t.Errorf("GET %s: %q (%s), want %q (application/json)", tc.path, got, resp.Header.Get("Content-Type"), tc.body)
		}
	}
}
