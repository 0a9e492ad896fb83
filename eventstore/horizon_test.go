package eventstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

// TestHorizonIgnoresOtherSchemas shows that an append held open in another
// schema (another deployment, or a parallel test) does not hold back readers
// here, while one held open here does.
func TestHorizonIgnoresOtherSchemas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	here := eventstore.NewStore(pgtest.New(t).App, newStoreCodec())
	there := eventstore.NewStore(pgtest.New(t).App, newStoreCodec())

	hold := func(s *eventstore.Store, id string) (release func(), done <-chan error) {
		held, rel, errc := make(chan struct{}), make(chan struct{}), make(chan error, 1)
		go func() {
			_, err := s.Append(ctx, eventstore.AppendRequest{
				Key: eventstore.Key{Tenant: "t", Type: "held", ID: id}, Expected: eventstore.NoStream,
				Events: []domain.Event{storeNoted{Note: "held"}},
				Also: func(ctx context.Context, tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
						return err
					}
					close(held)
					<-rel
					return nil
				}})
			errc <- err
		}()
		<-held
		return func() { close(rel) }, errc
	}
	appendOne := func(s *eventstore.Store, id string) {
		t.Helper()
		if _, err := s.Append(ctx, eventstore.AppendRequest{Key: eventstore.Key{Tenant: "t", Type: "free", ID: id},
			Expected: eventstore.NoStream, Events: []domain.Event{storeNoted{Note: "free"}}}); err != nil {
			t.Fatal(err)
		}
	}
	readCount := func(s *eventstore.Store) int {
		t.Helper()
		envs, err := s.ReadAll(ctx, eventstore.Checkpoint{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		return len(envs)
	}

	releaseThere, doneThere := hold(there, "x")
	appendOne(here, "a")
	if n := readCount(here); n != 1 {
		t.Fatalf("an append held open in another schema hid %d of 1 events here", 1-n)
	}
	releaseHere, doneHere := hold(here, "y")
	appendOne(here, "b")
	if n := readCount(here); n != 1 {
		t.Fatalf("with an append held open here, ReadAll returned %d events, want only the 1 before it", n)
	}
	releaseHere()
	releaseThere()
	for _, done := range []<-chan error{doneHere, doneThere} {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := readCount(here); n != 3 {
		t.Fatalf("after commit ReadAll returned %d events, want 3", n)
	}
}
