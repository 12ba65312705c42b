package kafka

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded is the single-node Kafka-protocol broker TrackOps starts when no
// external brokers are configured. It persists its log under a data
// directory and fsyncs every produced batch, so acknowledged events survive a
// crash of the process. It has no replication: it is for development and
// single-node installs; production points TRACKOPS_KAFKA_BROKERS at a cluster.
type Embedded struct {
	cluster *kfake.Cluster
	addr    string
}

// StartEmbedded starts the broker on addr ("host:port"), keeping its log in
// dataDir (no persistence when dataDir is empty).
func StartEmbedded(addr, dataDir string, partitions int32, options ...EmbeddedOption) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka port %q: %w", portStr, err)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DefaultNumPartitions(int(partitions)),
		kfake.AllowAutoTopicCreation(),
		kfake.ListenFn(func(network, a string) (net.Listener, error) {
			_, p, _ := net.SplitHostPort(a)
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
	}
	if dataDir != "" {
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("embedded kafka data dir: %w", err)
		}
		opts = append(opts, kfake.DataDir(dataDir), kfake.SyncWrites())
	}
	for _, o := range options {
		o(&opts)
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka on %s: %w", addr, err)
	}
	return &Embedded{cluster: c, addr: c.ListenAddrs()[0]}, nil
}

// Addr is the address clients bootstrap from.
func (e *Embedded) Addr() string { return e.addr }

// Cluster exposes the underlying broker for tests and fault injection.
func (e *Embedded) Cluster() *kfake.Cluster { return e.cluster }

// Close stops the broker, flushing its log to disk.
func (e *Embedded) Close() { e.cluster.Close() }
