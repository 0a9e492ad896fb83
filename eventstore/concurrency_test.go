package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

// storeNoted is the event the store-level tests append.
type storeNoted struct {
	Note string `json:"note"`
	N    int    `json:"n"`
}

func (storeNoted) EventName() string { return "storetest.noted" }

func newStoreCodec() *eventstore.Codec {
	c := eventstore.NewCodec()
	eventstore.Register[storeNoted](c, 1)
	return c
}

// pollUntil polls cond until it holds or d has passed.
func pollUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond) // poll interval
	}
}

// TestConcurrentWritersOneStream has 8 writers, on two Store instances (two
// replicas with their own head caches), half of them with an Also callback,
// race for each next version of one stream: exactly one wins each round.
func TestConcurrentWritersOneStream(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	stores := []*eventstore.Store{eventstore.NewStore(db.App, newStoreCodec()), eventstore.NewStore(db.App, newStoreCodec())}
	key := eventstore.Key{Tenant: "t", Type: "race", ID: "1"}
	const writers, rounds = 8, 25
	current := eventstore.Version(0)
	for round := range rounds {
		expected := current
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, conflicts := 0, 0
		var won eventstore.AppendResult
		start := make(chan struct{})
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := eventstore.AppendRequest{Key: key, Expected: expected,
					Events: []domain.Event{storeNoted{Note: fmt.Sprintf("round %d writer %d", round, w)}, storeNoted{N: w}}}
				if w%2 == 1 {
					req.Events = req.Events[:1]
					req.Also = func(context.Context, pgx.Tx) error { return nil }
				}
				<-start
				res, err := stores[w%2].Append(ctx, req)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
					won = res
				case errors.Is(err, eventstore.ErrVersionConflict):
					conflicts++
				default:
					t.Errorf("round %d writer %d: %v", round, w, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins != 1 || conflicts != writers-1 {
			t.Fatalf("round %d: %d wins and %d conflicts, want 1 and %d", round, wins, conflicts, writers-1)
		}
		if won.Version <= current {
			t.Fatalf("round %d: the winner reached version %d from %d", round, won.Version, current)
		}
		current = won.Version
	}
	envs, err := stores[1].Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != int(current) {
		t.Fatalf("%d events, the last winner reached version %d", len(envs), current)
	}
	for i, e := range envs {
		if e.Version != eventstore.Version(i+1) {
			t.Fatalf("event %d has version %d: versions are not contiguous", i, e.Version)
		}
	}
	if rep, err := stores[0].Verify(ctx, ""); err != nil || !rep.OK() || rep.Events != int64(len(envs)) {
		t.Fatalf("Verify: %+v, %v", rep, err)
	}
}

// TestReadAllNeverSkips is the store-level proof that ReadAll never skips an
// event: 8 writers append to many streams while some transactions that took
// their positions (or transaction ids) early stay open and commit late. A reader
// looping on ReadAll sees every event exactly once, in (tx_id, position) order,
// while a naive "position > last" reader skips, deterministically, every late
// event (and usually some of the writers' too).
//
// It does not run in parallel with the package's other tests: the transactions
// it holds open hold back every ReadAll of its schema meanwhile (not those of
// other schemas: see TestHorizonIgnoresOtherSchemas).
func TestReadAllNeverSkips(t *testing.T) {
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	s := eventstore.NewStore(db.App, newStoreCodec())

	release, stop := make(chan struct{}), make(chan struct{})
	releaseHeld := sync.OnceFunc(func() { close(release) })
	stopReaders := sync.OnceFunc(func() { close(stop) })
	defer releaseHeld() // a failing test must not leave transactions open
	defer stopReaders()
	const lateInserted, earlyTx = 3, 2
	inserted := make(chan struct{}, lateInserted)
	// Appends to "late" streams insert their rows (taking positions) and then
	// wait before committing.
	eventstore.SetAfterInsertHook(s, func(_ context.Context, key eventstore.Key) {
		if key.Type == "late" {
			inserted <- struct{}{}
			<-release
		}
	})

	var mu sync.Mutex
	appended := map[string]bool{} // event id -> committed
	var lateIDs []string
	var maxPosition int64
	record := func(res eventstore.AppendResult, late bool) {
		ids := res.EventIDs
		mu.Lock()
		defer mu.Unlock()
		maxPosition = max(maxPosition, res.Position)
		for _, id := range ids {
			appended[id] = true
		}
		if late {
			lateIDs = append(lateIDs, ids...)
		}
	}

	// The correct reader and the naive reader run until stop is closed.
	var readers sync.WaitGroup
	var (
		rmu       sync.Mutex
		seen      = map[string]int{}
		naiveSeen = map[string]bool{}
		readerErr error
		naiveErr  error
		naiveLast int64
	)
	readers.Add(2)
	go func() {
		defer readers.Done()
		var cp eventstore.Checkpoint
		for {
			select {
			case <-stop:
				return
			default:
			}
			envs, err := s.ReadAll(ctx, cp, 37)
			rmu.Lock()
			if err != nil {
				readerErr = err
				rmu.Unlock()
				return
			}
			for _, e := range envs {
				if e.TxID < cp.TxID || (e.TxID == cp.TxID && e.Position <= cp.Position) {
					readerErr = fmt.Errorf("event %s at %d/%d does not follow %d/%d", e.EventID, e.TxID, e.Position, cp.TxID, cp.Position)
				}
				cp = eventstore.Checkpoint{TxID: e.TxID, Position: e.Position}
				seen[e.EventID]++
			}
			rmu.Unlock()
		}
	}()
	go func() {
		defer readers.Done()
		var last int64
		for {
			select {
			case <-stop:
				return
			default:
			}
			rows, err := db.Owner.Query(ctx, `SELECT event_id::text, position FROM events WHERE position > $1 ORDER BY position LIMIT 37`, last)
			if err != nil {
				rmu.Lock()
				naiveErr = err
				rmu.Unlock()
				return
			}
			var id string
			var pos int64
			_, err = pgx.ForEachRow(rows, []any{&id, &pos}, func() error {
				rmu.Lock()
				naiveSeen[id] = true
				naiveLast = pos
				rmu.Unlock()
				last = pos
				return nil
			})
			if err != nil {
				rmu.Lock()
				naiveErr = err
				rmu.Unlock()
				return
			}
		}
	}()

	// Transactions held open: three that inserted their events, two that only
	// took a transaction id (in Also) before the writers start.
	var held sync.WaitGroup
	xidTaken := make(chan struct{}, earlyTx)
	for i := range lateInserted + earlyTx {
		held.Add(1)
		go func() {
			defer held.Done()
			key := eventstore.Key{Tenant: "t", Type: "late", ID: fmt.Sprint(i)}
			also := func(context.Context, pgx.Tx) error { return nil }
			if i >= lateInserted {
				key.Type = "early"
				also = func(ctx context.Context, tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
						return err
					}
					xidTaken <- struct{}{}
					<-release
					return nil
				}
			}
			res, err := s.Append(ctx, eventstore.AppendRequest{Key: key, Expected: eventstore.NoStream,
				Events: []domain.Event{storeNoted{Note: "held", N: i}, storeNoted{Note: "held", N: i}}, Also: also})
			if err != nil {
				t.Errorf("held append %s: %v", key, err)
				return
			}
			record(res, key.Type == "late")
		}()
	}
	for range lateInserted {
		<-inserted
	}
	for range earlyTx {
		<-xidTaken
	}

	// Eight writers append to their own streams, 1 to 3 events at a time.
	var writers sync.WaitGroup
	for w := range 8 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			versions := make([]eventstore.Version, 10)
			for i := range 40 {
				stream := r.IntN(len(versions))
				n := 1 + r.IntN(3)
				events := make([]domain.Event, n)
				for j := range events {
					events[j] = storeNoted{Note: "w", N: i}
				}
				key := eventstore.Key{Tenant: domain.TenantID(fmt.Sprint("tenant-", w%3)), Type: "writer", ID: fmt.Sprint(w, "-", stream)}
				res, err := s.Append(ctx, eventstore.AppendRequest{Key: key, Expected: versions[stream], Events: events})
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				versions[stream] = res.Version
				record(res, false)
			}
		}()
	}
	writers.Wait()
	if t.Failed() {
		return
	}

	// The naive reader has read up to the writers' last position, past the
	// positions the late rows took before the writers started...
	naivePassed := func(pos int64) func() bool {
		return func() bool {
			rmu.Lock()
			defer rmu.Unlock()
			if naiveErr != nil {
				t.Fatalf("naive reader: %v", naiveErr)
			}
			return naiveLast >= pos
		}
	}
	mu.Lock()
	writersEnd := maxPosition
	mu.Unlock()
	pollUntil(t, 15*time.Second, "the naive reader to pass the writers' events", naivePassed(writersEnd))
	// ...while the correct reader is still held before the open transactions.
	rmu.Lock()
	early := len(seen)
	rmu.Unlock()
	if early != 0 {
		t.Errorf("ReadAll returned %d events from transactions that started after a still open one", early)
	}

	releaseHeld()
	held.Wait()
	mu.Lock()
	total, end := len(appended), maxPosition
	mu.Unlock()
	pollUntil(t, 15*time.Second, "ReadAll to return every appended event", func() bool {
		rmu.Lock()
		defer rmu.Unlock()
		return len(seen) >= total || readerErr != nil
	})
	pollUntil(t, 15*time.Second, "the naive reader to reach the end", naivePassed(end))
	stopReaders()
	readers.Wait()

	if readerErr != nil {
		t.Fatal(readerErr)
	}
	for id := range appended {
		if seen[id] != 1 {
			t.Errorf("ReadAll returned event %s %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if !appended[id] {
			t.Errorf("ReadAll returned event %s that no append reported (%d times)", id, n)
		}
	}
	var skipped []string
	for id := range appended {
		if !naiveSeen[id] {
			skipped = append(skipped, id)
		}
	}
	for _, id := range lateIDs {
		if naiveSeen[id] {
			t.Errorf("the naive reader saw late event %s: the test did not hold it back", id)
		}
	}
	t.Logf("%d events: ReadAll saw each once; a naive position reader skipped %d (the %d late ones and %d of concurrent writers)",
		total, len(skipped), len(lateIDs), len(skipped)-len(lateIDs))
}
