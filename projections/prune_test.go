package projections_test

import (
	"context"
	"testing"
	"time"

	"velocicompanion/adapters/kafka"
	"velocicompanion/eventstore"
	"velocicompanion/projections"
)

// TestPruneSeen ages some of a projector's projector_seen rows past the
// retention and prunes them in small batches: only those go, a second prune
// removes nothing, and the projector still skips a redelivered event whose
// row was kept.
func TestPruneSeen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, 3)
	c := newCounter("count.prune")
	w.migrate(t, c)
	n := w.fill(t, tenants, 4, 5, 5)
	var envs []eventstore.Envelope
	eventually(t, 30*time.Second, "every event to be readable", func() bool {
		var err error
		envs, err = w.store.ReadAll(ctx, eventstore.Checkpoint{}, 10_000)
		if err != nil {
			t.Fatal(err)
		}
		return len(envs) == n
	})
	pub, err := kafka.NewPublisher(w.kcfg, w.log)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(ctx, envs); err != nil {
		t.Fatal(err)
	}
	rn := w.startRunner(t, c)
	eventually(t, 30*time.Second, "every event to be applied", func() bool {
		return rn.metric(t, "velocicompanion_projection_applied_total", c.Name()) == float64(n)
	})
	want := w.expected(t)

	// The first half was applied 40 days ago; another projector's rows are
	// as old. The retention is 30 days.
	old, recent := envs[:n/2], envs[n/2:]
	positions := make([]int64, len(old))
	for i, env := range old {
		positions[i] = env.Position
	}
	if _, err := w.owner.Exec(ctx, `UPDATE projector_seen SET applied_at = now() - interval '40 days'
		WHERE projector = $1 AND position = ANY($2)`, c.Name(), positions); err != nil {
		t.Fatal(err)
	}
	if _, err := w.owner.Exec(ctx, `INSERT INTO projector_seen (projector, position, event_id, tenant_id, applied_at)
		SELECT 'gone.v1', position, event_id, tenant_id, now() - interval '31 days' FROM projector_seen WHERE projector = $1`, c.Name()); err != nil {
		t.Fatal(err)
	}

	if got, err := projections.PruneSeen(ctx, w.owner, time.Now(), 0, 3); err != nil || got != 0 {
		t.Fatalf("prune with no retention removed %d rows (%v), want none", got, err)
	}
	// The store's newest positions keep their rows, however old: WaitFor
	// looks back at them.
	if got, err := projections.PruneSeen(ctx, w.owner, time.Now(), 30*24*time.Hour, 3); err != nil || got != 0 {
		t.Fatalf("prune removed %d rows among the newest positions (%v), want none", got, err)
	}
	defer projections.SetSeenKeepPositions(0)()
	got, err := projections.PruneSeen(ctx, w.owner, time.Now(), 30*24*time.Hour, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(old) + n); got != want {
		t.Fatalf("pruned %d rows, want %d", got, want)
	}
	if got := w.seenCount(t, c.Name()); got != len(recent) {
		t.Fatalf("projector_seen kept %d positions, want %d", got, len(recent))
	}
	if got := w.seenCount(t, "gone.v1"); got != 0 {
		t.Fatalf("projector_seen kept %d positions of the old projector", got)
	}
	if got, err := projections.PruneSeen(ctx, w.owner, time.Now(), 30*24*time.Hour, 3); err != nil || got != 0 {
		t.Fatalf("second prune removed %d rows (%v), want none", got, err)
	}

	// The recent events arrive again: they are duplicates, and the read
	// model is what one delivery gives.
	if err := pub.Publish(ctx, recent); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the redelivered events to be skipped", func() bool {
		return rn.metric(t, "velocicompanion_projection_duplicates_total", c.Name()) == float64(len(recent))
	})
	if got := rn.metric(t, "velocicompanion_projection_applied_total", c.Name()); got != float64(n) {
		t.Fatalf("applied %v events, want %d", got, n)
	}
	if got := tables(w.dump(t, c.Name())); diff(got, want) != "" {
		t.Fatalf("read model after pruning and redelivery:\n%s", diff(got, want))
	}
}
