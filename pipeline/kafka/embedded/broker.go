// Package embedded runs an in-process Kafka broker for the single-process
// deployment and for tests. It speaks the real Kafka wire protocol on
// loopback, so stages reach it through kafka-go exactly as they reach a
// production cluster.
package embedded

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// BrokerConfig configures the embedded broker.
type BrokerConfig struct {
	// Port to listen on at 127.0.0.1; 0 picks a free port.
	Port int
	// DataDir persists topics and committed offsets across restarts when set.
	DataDir string
	// Partitions is the partition count of seeded and auto-created topics.
	Partitions int
	// Topics are created at start.
	Topics []string
}

// Broker is a running embedded broker.
type Broker struct {
	cluster *kfake.Cluster
	addrs   []string
}

// StartBroker starts a one-node broker listening on 127.0.0.1.
func StartBroker(cfg BrokerConfig) (*Broker, error) {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 4
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.AllowAutoTopicCreation(),
		// kfake binds 127.0.0.1 only: the embedded broker has no authentication.
		kfake.Ports(cfg.Port),
	}
	if len(cfg.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(cfg.Partitions), cfg.Topics...))
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return &Broker{cluster: c, addrs: c.ListenAddrs()}, nil
}

// Addrs returns the host:port addresses to bootstrap from.
func (b *Broker) Addrs() []string { return append([]string(nil), b.addrs...) }

// Close stops the broker.
func (b *Broker) Close() { b.cluster.Close() }
