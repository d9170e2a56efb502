// Package devstack starts the zero-setup dependencies of `webhookd dev`: an
// in-process Kafka (kfake, a real Kafka wire-protocol server that any client
// can reach) persisted under the data directory, and the lock that keeps
// that directory to one process (DirLock).
package devstack

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is a running in-process broker.
type Kafka struct {
	c *kfake.Cluster
}

// StartKafka listens on addr (127.0.0.1:port; port 0 picks a free one, see
// Addrs) and keeps its data in dir, so topics, offsets and pipelines survive
// a restart. An empty dir keeps everything in memory.
//
// extra options configure the broker further (devkafka's TLS and SASL).
func StartKafka(addr, dir string, extra ...kfake.Opt) (*Kafka, error) {
	host, portS, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dev Kafka address %q: %w", addr, err)
	}
	if host != "127.0.0.1" && host != "localhost" {
		return nil, fmt.Errorf("dev Kafka address %q: the in-process broker only listens on 127.0.0.1", addr)
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, fmt.Errorf("dev Kafka address %q: %w", addr, err)
	}
	// Ports(port) with port 0 listens on 127.0.0.1:0: the kernel picks a
	// free port, which Addrs reports.
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.ClusterID("webhookd-dev")}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kfake.DataDir(abs))
	}
	c, err := kfake.NewCluster(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("start dev Kafka on %s: %w", addr, err)
	}
	return &Kafka{c: c}, nil
}

// Addrs are the broker addresses.
func (k *Kafka) Addrs() []string { return k.c.ListenAddrs() }

// Close stops the broker, flushing its data.
func (k *Kafka) Close() { k.c.Close() }
