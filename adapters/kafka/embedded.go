package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedCluster is an in-process, single-broker, Kafka-protocol cluster
// (franz-go's kfake) listening on 127.0.0.1. Clients reach it over real TCP,
// like any broker. With a data directory its topics, records, committed group
// offsets and producer state survive a restart.
type EmbeddedCluster struct {
	cluster *kfake.Cluster
	addrs   []string
	topic   string
	stop    func() bool
}

// Embedded starts an embedded cluster on 127.0.0.1:port (0 picks a free port)
// with topic and PoisonTopic(topic), each with partitions partitions
// (partitions < 1 means 1). A non-empty dataDir persists the cluster there and
// reloads it on the next start; the topics are then those persisted (seeding
// applies to a fresh directory only). The cluster closes when ctx is done or
// Close is called. Extra kfake options (a logger, say) are applied last.
func Embedded(ctx context.Context, dataDir string, port int, topic string, partitions int32, opts ...kfake.Opt) (*EmbeddedCluster, error) {
	if topic == "" {
		return nil, fmt.Errorf("kafka: embedded cluster needs a topic")
	}
	if partitions < 1 {
		partitions = 1
	}
	all := []kfake.Opt{
		kfake.Ports(port), // one broker, on this port
		kfake.SeedTopics(partitions, topic, PoisonTopic(topic)),
		kfake.DefaultNumPartitions(int(partitions)),
		kfake.ClusterID("velocicompanion-embedded"),
	}
	if dataDir != "" {
		all = append(all, kfake.DataDir(dataDir))
	}
	all = append(all, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		return nil, fmt.Errorf("kafka: start embedded cluster on port %d: %w", port, err)
	}
	e := &EmbeddedCluster{cluster: c, addrs: c.ListenAddrs(), topic: topic}
	e.stop = context.AfterFunc(ctx, c.Close)
	return e, nil
}

// Addrs returns the brokers' host:port addresses.
func (e *EmbeddedCluster) Addrs() []string { return append([]string(nil), e.addrs...) }

// Port returns the port the broker listens on; pass it to Embedded to restart
// the cluster where clients expect it.
func (e *EmbeddedCluster) Port() int {
	_, p, err := net.SplitHostPort(e.addrs[0])
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// Config returns a Config for the cluster's events topic.
func (e *EmbeddedCluster) Config(clientID string) Config {
	return Config{Brokers: e.Addrs(), Topic: e.topic, ClientID: clientID, PoisonTopic: PoisonTopic(e.topic)}
}

// Cluster returns the underlying kfake cluster (fault injection in tests).
func (e *EmbeddedCluster) Cluster() *kfake.Cluster { return e.cluster }

// Close stops the cluster, writing its state to the data directory first if it
// has one. Clients see their connections drop. Close is idempotent.
func (e *EmbeddedCluster) Close() {
	e.stop()
	e.cluster.Close()
}

// KfakeOptions returns the kfake options a server passes to Embedded: kfake's
// log through logger, its chatty info level demoted to debug.
func KfakeOptions(logger *slog.Logger) []kfake.Opt {
	return []kfake.Opt{kfake.WithLogger(KfakeLogger(logger))}
}

// KfakeLogger adapts an slog logger for kfake.WithLogger. kfake's info
// messages (connections, requests it cannot handle) are logged at debug.
func KfakeLogger(logger *slog.Logger) kfake.Logger { return kfakeLogger{defaultLogger(logger)} }

type kfakeLogger struct{ l *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	var l slog.Level
	switch level {
	case kfake.LogLevelError:
		l = slog.LevelError
	case kfake.LogLevelWarn:
		l = slog.LevelWarn
	default:
		l = slog.LevelDebug
	}
	if k.l.Enabled(context.Background(), l) {
		k.l.Log(context.Background(), l, fmt.Sprintf(format, args...), "component", "kfake")
	}
}
