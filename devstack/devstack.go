// Package devstack starts the zero-setup dependencies of `webhookd dev`: an
// in-process Kafka (kfake, a real Kafka wire-protocol server that any client
// can reach) persisted under the data directory.
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

// StartKafka listens on addr (127.0.0.1:port; port 0 picks one) and keeps its
// data in dir, so topics, offsets and pipelines survive a restart.
func StartKafka(addr, dir string) (*Kafka, error) {
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
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	abs, _ := filepath.Abs(dir)
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DataDir(abs),
		kfake.ClusterID("webhookd-dev"),
	)
	if err != nil {
		return nil, fmt.Errorf("start dev Kafka on %s: %w", addr, err)
	}
	return &Kafka{c: c}, nil
}

// Addrs are the broker addresses.
func (k *Kafka) Addrs() []string { return k.c.ListenAddrs() }

// Close stops the broker, flushing its data.
func (k *Kafka) Close() { k.c.Close() }
