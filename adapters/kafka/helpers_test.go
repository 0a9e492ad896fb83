package kafka_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"velocicompanion/adapters/kafka"
	"velocicompanion/domain"
	"velocicompanion/eventstore"
)

// record is one consumed Kafka record, decoded through our marshaler.
type record struct {
	Partition int32
	Offset    int64
	Key       string
	Headers   map[string]string
	Env       eventstore.Envelope
}

// embedded starts an embedded cluster for the test on a free port.
func embedded(t testing.TB, dir string, port int, partitions int32) *kafka.EmbeddedCluster {
	t.Helper()
	c, err := kafka.Embedded(context.Background(), dir, port, "events", partitions)
	if err != nil {
		t.Fatalf("embedded cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// consumer is a group-less kgo client reading a topic from the start; it keeps
// everything it read so far.
type consumer struct {
	t    *testing.T
	cl   *kgo.Client
	recs []record
}

func newConsumer(t *testing.T, addrs []string, topic string) *consumer {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addrs...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("kgo client: %v", err)
	}
	t.Cleanup(cl.Close)
	return &consumer{t: t, cl: cl}
}

// until polls until done(all records so far) is true, failing the test after
// timeout.
func (c *consumer) until(timeout time.Duration, done func([]record) bool) []record {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	unmarshaler := kafka.Marshaler()
	for !done(c.recs) {
		if time.Now().After(deadline) {
			c.t.Fatalf("consumer: condition not met after %v (%d records)", timeout, len(c.recs))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		fs := c.cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			cm := &sarama.ConsumerMessage{Key: r.Key, Value: r.Value, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
			hs := map[string]string{}
			for _, h := range r.Headers {
				cm.Headers = append(cm.Headers, &sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
				hs[h.Key] = string(h.Value)
			}
			msg, err := unmarshaler.Unmarshal(cm)
			if err != nil {
				c.t.Fatalf("unmarshal record %d/%d: %v", r.Partition, r.Offset, err)
			}
			env, err := eventstore.FromMessage(msg, nil)
			if err != nil {
				c.t.Fatalf("decode record %d/%d: %v", r.Partition, r.Offset, err)
			}
			c.recs = append(c.recs, record{Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Headers: hs, Env: env})
		})
	}
	return c.recs
}

// atLeast returns a condition that holds once n distinct events were read.
func atLeast(n int) func([]record) bool {
	return func(rs []record) bool { return len(distinct(rs)) >= n }
}

func distinct(rs []record) map[string]int {
	m := make(map[string]int, len(rs))
	for _, r := range rs {
		m[r.Env.EventID]++
	}
	return m
}

// checkStreamOrder fails the test unless each stream's events sit in one
// partition, keyed by the stream id, and their first deliveries come in
// version order without gaps (a redelivered older version is allowed).
func checkStreamOrder(t *testing.T, rs []record) {
	t.Helper()
	type stream struct {
		partition int32
		last      eventstore.Version
	}
	seen := map[string]bool{}
	streams := map[eventstore.Key]*stream{}
	for _, r := range rs {
		if r.Key != r.Env.StreamID {
			t.Fatalf("record %d/%d: key %q, stream id %q", r.Partition, r.Offset, r.Key, r.Env.StreamID)
		}
		k := r.Env.Key()
		s, ok := streams[k]
		if !ok {
			s = &stream{partition: r.Partition}
			streams[k] = s
		}
		if s.partition != r.Partition {
			t.Fatalf("stream %s in partitions %d and %d", k, s.partition, r.Partition)
		}
		if seen[r.Env.EventID] {
			continue
		}
		seen[r.Env.EventID] = true
		if r.Env.Version != s.last+1 {
			t.Fatalf("stream %s: version %d delivered after %d", k, r.Env.Version, s.last)
		}
		s.last = r.Env.Version
	}
}

// fakeEnvelopes returns n envelopes spread round-robin over streams streams,
// versions counting from 1 per stream, positions from first.
func fakeEnvelopes(streams, n int, first int64) []eventstore.Envelope {
	envs := make([]eventstore.Envelope, n)
	versions := make([]eventstore.Version, streams)
	prev := make([][]byte, streams)
	for i := range envs {
		s := i % streams
		versions[s]++
		if prev[s] == nil {
			prev[s] = make([]byte, 32)
		}
		payload, _ := json.Marshal(map[string]any{"n": i, "title": "host " + strconv.Itoa(i)})
		h := sha256.Sum256(append(append([]byte{}, prev[s]...), payload...))
		envs[i] = eventstore.Envelope{
			Position:   first + int64(i),
			TxID:       uint64(1000 + first + int64(i)),
			EventID:    uuid.Must(uuid.NewV7()).String(),
			Tenant:     domain.TenantID(fmt.Sprintf("tenant-%d", s%3)),
			StreamType: "case",
			StreamID:   fmt.Sprintf("stream-%04d", s),
			Version:    versions[s],
			Name:       "case.opened",
			Schema:     1,
			Payload:    payload,
			Metadata:   eventstore.Metadata{Actor: "u1", ActorType: "user", RequestID: "r" + strconv.Itoa(i)},
			RecordedAt: time.Now().UTC().Truncate(time.Microsecond),
			PrevHash:   prev[s],
			Hash:       h[:],
		}
		prev[s] = h[:]
	}
	return envs
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}
