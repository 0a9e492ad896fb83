package pgtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
)

// Events the conformance suite registers on the stores it is given.
type (
	confOpened struct {
		Title string   `json:"title"`
		Tags  []string `json:"tags,omitempty"`
	}
	confNoted struct {
		Note  string  `json:"note"`
		Score float64 `json:"score"`
	}
	// confRenamed is at schema 2: schema 1 had {"name": ...}.
	confRenamed struct {
		FullName string `json:"full_name"`
	}
)

func (confOpened) EventName() string  { return "conformance.opened" }
func (confNoted) EventName() string   { return "conformance.noted" }
func (confRenamed) EventName() string { return "conformance.renamed" }

// renamedV1toV2 is confRenamed's upcaster from schema 1 to 2.
func renamedV1toV2(in json.RawMessage) (json.RawMessage, error) {
	var v1 struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(in, &v1); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]string{"full_name": v1.Name})
}

func registerConformance(c *eventstore.Codec) {
	eventstore.Register[confOpened](c, 1)
	eventstore.Register[confNoted](c, 1)
	eventstore.Register[confRenamed](c, 2, renamedV1toV2)
}

// RunConformance runs the event store's conformance suite. newStore must return
// a Store on a fresh schema (see New) whose Codec has none of the suite's event
// names registered; the suite registers its own events on it.
func RunConformance(t *testing.T, newStore func(t *testing.T) *eventstore.Store) {
	setup := func(t *testing.T) (*eventstore.Store, context.Context) {
		t.Helper()
		s := newStore(t)
		registerConformance(s.Codec())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return s, ctx
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s *eventstore.Store, ctx context.Context)
	}{
		{"append_then_load", confAppendThenLoad},
		{"load_missing_stream_is_empty", confLoadMissing},
		{"no_stream", confNoStream},
		{"exact_version", confExactVersion},
		{"any_version", confAnyVersion},
		{"streams_are_scoped_by_tenant_and_type", confScoping},
		{"idempotent_retry_with_same_ids", confIdempotentRetry},
		{"reused_ids_elsewhere_conflict", confReusedIDs},
		{"upcast_old_schema_row", confUpcast},
		{"unknown_event_is_kept", confUnknownEvent},
		{"also_runs_in_the_same_transaction", confAlsoSameTx},
		{"also_error_rolls_back", confAlsoRollsBack},
		{"read_all_in_commit_order", confReadAll},
		{"verify_clean_store", confVerifyClean},
		{"invalid_requests", confInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, ctx := setup(t)
			tc.run(t, s, ctx)
		})
	}
}

var confKey = eventstore.Key{Tenant: "tenant-a", Type: "conformance", ID: "s-1"}

func appendOK(t *testing.T, ctx context.Context, s *eventstore.Store, req eventstore.AppendRequest) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(ctx, req)
	if err != nil {
		t.Fatalf("Append(%s, expected %d): %v", req.Key, req.Expected, err)
	}
	return res
}

func load(t *testing.T, ctx context.Context, s *eventstore.Store, key eventstore.Key) []eventstore.Envelope {
	t.Helper()
	envs, err := s.Load(ctx, key)
	if err != nil {
		t.Fatalf("Load(%s): %v", key, err)
	}
	return envs
}

func wantConflict(t *testing.T, err error, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

func confAppendThenLoad(t *testing.T, s *eventstore.Store, ctx context.Context) {
	meta := eventstore.Metadata{Actor: "u-1", ActorType: "user", Role: "analyst", SourceIP: "192.0.2.7",
		UserAgent: "test", RequestID: "req-1", CorrelationID: "corr-1", CausationID: "cause-1"}
	events := []domain.Event{
		confOpened{Title: "Ransomware on <host> & \"friends\"", Tags: []string{"é", "漢字", "\u2028"}},
		confNoted{Note: "n", Score: 1e21},
		confNoted{Note: "", Score: 0.000001},
	}
	before := time.Now().Add(-time.Second)
	res := appendOK(t, ctx, s, eventstore.AppendRequest{Key: confKey, Expected: eventstore.NoStream,
		Events: events, Metadata: meta})
	if res.Version != 3 || len(res.EventIDs) != 3 || res.Position <= 0 {
		t.Fatalf("result %+v, want version 3, 3 ids and a position", res)
	}
	envs := load(t, ctx, s, confKey)
	if len(envs) != 3 {
		t.Fatalf("loaded %d events, want 3", len(envs))
	}
	for i, e := range envs {
		if e.Version != eventstore.Version(i+1) {
			t.Errorf("event %d has version %d", i, e.Version)
		}
		if !reflect.DeepEqual(e.Event, events[i]) {
			t.Errorf("event %d decoded as %#v, want %#v", i, e.Event, events[i])
		}
		if e.EventID != res.EventIDs[i] {
			t.Errorf("event %d has id %s, Append said %s", i, e.EventID, res.EventIDs[i])
		}
		if id, err := uuid.Parse(e.EventID); err != nil || id.Version() != 7 {
			t.Errorf("event id %s is not a UUIDv7 (%v)", e.EventID, err)
		}
		if e.Key() != confKey || e.Metadata != meta || e.Name != events[i].EventName() || e.Schema != 1 {
			t.Errorf("event %d envelope %+v does not match what was appended", i, e)
		}
		if e.RecordedAt.Before(before) || e.RecordedAt.After(time.Now().Add(time.Second)) ||
			e.RecordedAt.Nanosecond()%1000 != 0 || !e.RecordedAt.Equal(envs[0].RecordedAt) {
			t.Errorf("event %d recorded at %v", i, e.RecordedAt)
		}
		if e.TxID == 0 || e.TxID != envs[0].TxID {
			t.Errorf("event %d has tx id %d, want the one of the append (%d)", i, e.TxID, envs[0].TxID)
		}
		if len(e.Hash) != 32 {
			t.Errorf("event %d hash has %d bytes", i, len(e.Hash))
		}
		if i == 0 && !bytes.Equal(e.PrevHash, make([]byte, 32)) {
			t.Errorf("first event's prev_hash %x is not zero", e.PrevHash)
		}
		if i > 0 {
			if e.Position <= envs[i-1].Position {
				t.Errorf("position %d does not follow %d", e.Position, envs[i-1].Position)
			}
			if !bytes.Equal(e.PrevHash, envs[i-1].Hash) {
				t.Errorf("event %d prev_hash does not link to event %d", i, i-1)
			}
		}
	}
	if res.Position != envs[2].Position {
		t.Errorf("result position %d, last event at %d", res.Position, envs[2].Position)
	}
	// A second append continues the chain.
	res2 := appendOK(t, ctx, s, eventstore.AppendRequest{Key: confKey, Expected: 3,
		Events: []domain.Event{confNoted{Note: "again"}}})
	envs = load(t, ctx, s, confKey)
	if res2.Version != 4 || len(envs) != 4 || !bytes.Equal(envs[3].PrevHash, envs[2].Hash) {
		t.Fatalf("second append: result %+v, %d events", res2, len(envs))
	}
}

func confLoadMissing(t *testing.T, s *eventstore.Store, ctx context.Context) {
	if envs := load(t, ctx, s, confKey); len(envs) != 0 {
		t.Fatalf("loaded %d events from a stream never written", len(envs))
	}
}

func confNoStream(t *testing.T, s *eventstore.Store, ctx context.Context) {
	req := eventstore.AppendRequest{Key: confKey, Expected: eventstore.NoStream, Events: []domain.Event{confOpened{Title: "a"}}}
	appendOK(t, ctx, s, req)
	_, err := s.Append(ctx, req)
	wantConflict(t, err, eventstore.ErrVersionConflict)
	if domain.KindOf(err) != domain.KindConflict {
		t.Errorf("kind %v, want conflict", domain.KindOf(err))
	}
	if n := len(load(t, ctx, s, confKey)); n != 1 {
		t.Fatalf("%d events after a rejected append, want 1", n)
	}
}

func confExactVersion(t *testing.T, s *eventstore.Store, ctx context.Context) {
	ev := []domain.Event{confNoted{Note: "x"}}
	// An exact version on a stream that does not exist is a conflict.
	_, err := s.Append(ctx, eventstore.AppendRequest{Key: confKey, Expected: 1, Events: ev})
	wantConflict(t, err, eventstore.ErrVersionConflict)

	appendOK(t, ctx, s, eventstore.AppendRequest{Key: confKey, Expected: eventstore.NoStream,
		Events: []domain.Event{confOpened{Title: "a"}, confNoted{Note: "b"}}})
	res := appendOK(t, ctx, s, eventstore.AppendRequest{Key: confKey, Expected: 2, Events: ev})
	if res.Version != 3 {
		t.Fatalf("version %d, want 3", res.Version)
	}
	for _, stale := range []eventstore.Version{1, 2, 4, 10} {
		_, err := s.Append(ctx, eventstore.AppendRequest{Key: confKey, Expected: stale, Events: ev})
		wantConflict(t, err, eventstore.ErrVersionConflict)
	}
	envs := load(t, ctx, s, confKey)
	if len(envs) != 3 {
		t.Fatalf("%d events, want 3", len(envs))
	}
}

func confAnyVersion(t *testing.T, s *eventstore.Store, ctx context.Context) {
	for i := 1; i <= 3; i++ {
		res := appendOK(t, ctx, s, eventstore.AppendRequest{Key: confKey, Expected: eventstore.Any,
			Events: []domain.Event{confNoted{Note: fmt.Sprint(i)}}})
		if res.Version != eventstore.Version(i) {
			t.Fatalf("append %d got version %d", i, res.Version)
		}
	}
}

func confScoping(t *testing.T, s *eventstore.Store, ctx context.Context) {
	keys := []eventstore.Key{
		confKey,
		{Tenant: "tenant-b", Type: confKey.Type, ID: confKey.ID},
		{Tenant: confKey.Tenant, Type: "other", ID: confKey.ID},
		{Tenant: confKey.Tenant, Type: confKey.Type, ID: "s-2"},
	}
	for i, k := range keys {
		appendOK(t, ctx, s, eventstore.AppendRequest{Key: k, Expected: eventstore.NoStream,
			Events: []domain.Event{confOpened{Title: fmt.Sprint(i)}}})
	}
	for i, k := range keys {
		envs := load(t, ctx, s, k)
		if len(envs) != 1 || !reflect.DeepEqual(envs[0].Event, confOpened{Title: fmt.Sprint(i)}) {
			t.Fatalf("stream %s: %d events, want only its own", k, len(envs))
		}
	}
}

func confIdempotentRetry(t *testing.T, s *eventstore.Store, ctx context.Context) {
	ids := []string{uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()}
	also := 0
	req := eventstore.AppendRequest{Key: confKey, Expected: eventstore.NoStream, EventIDs: ids,
		Events: []domain.Event{confOpened{Title: "a"}, confNoted{Note: "b"}}}
	first := appendOK(t, ctx, s, req)
	if strings.Join(first.EventIDs, ",") != strings.Join(ids, ",") {
		t.Fatalf("ids %v, want the given %v", first.EventIDs, ids)
	}
	// The stream moves on; retrying the first append still answers its result.
	appendOK(t, ctx, s, eventstore.AppendRequest{Key: confKey, Expected: 2, Events: []domain.Event{confNoted{Note: "c"}}})
	for _, retry := range []eventstore.AppendRequest{
		req,
		{Key: req.Key, Expected: req.Expected, Events: req.Events, EventIDs: []string{strings.ToUpper(ids[0]), ids[1]}},
		{Key: req.Key, Expected: eventstore.Any, Events: req.Events, EventIDs: ids},
		{Key: req.Key, Expected: req.Expected, Events: req.Events, EventIDs: ids,
			Also: func(context.Context, pgx.Tx) error { also++; return nil }},
	} {
		got, err := s.Append(ctx, retry)
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		if got.Version != first.Version || got.Position != first.Position ||
			strings.Join(got.EventIDs, ",") != strings.Join(first.EventIDs, ",") {
			t.Fatalf("retry result %+v, want the original %+v", got, first)
		}
	}
	if also != 0 {
		t.Errorf("Also ran %d times for an idempotent retry", also)
	}
	if n := len(load(t, ctx, s, confKey)); n != 3 {
		t.Fatalf("%d events after retries, want 3", n)
	}
}

func confReusedIDs(t *testing.T, s *eventstore.Store, ctx context.Context) {
	ids := []string{uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()}
	ev2 := []domain.Event{confOpened{Title: "a"}, confNoted{Note: "b"}}
	appendOK(t, ctx, s, eventstore.AppendRequest{Key: confKey, Expected: eventstore.NoStream, EventIDs: ids, Events: ev2})
	other := eventstore.Key{Tenant: confKey.Tenant, Type: confKey.Type, ID: "s-other"}
	fresh := uuid.Must(uuid.NewV7()).String()
	for name, req := range map[string]eventstore.AppendRequest{
		"other stream":   {Key: other, Expected: eventstore.NoStream, EventIDs: ids, Events: ev2},
		"other versions": {Key: confKey, Expected: 2, EventIDs: ids, Events: ev2},
		"only some":      {Key: confKey, Expected: eventstore.NoStream, EventIDs: []string{ids[0], fresh}, Events: ev2},
		"other names":    {Key: confKey, Expected: eventstore.NoStream, EventIDs: ids, Events: []domain.Event{confNoted{}, confNoted{}}},
		"with also": {Key: other, Expected: eventstore.NoStream, EventIDs: ids, Events: ev2,
			Also: func(context.Context, pgx.Tx) error { return nil }},
	} {
		_, err := s.Append(ctx, req)
		if !errors.Is(err, eventstore.ErrDuplicateEventID) {
			t.Errorf("%s: got %v, want ErrDuplicateEventID", name, err)
		}
		if errors.Is(err, eventstore.ErrVersionConflict) {
			t.Errorf("%s: a duplicate id must not look retryable", name)
		}
	}
	if n := len(load(t, ctx, s, other)); n != 0 {
		t.Fatalf("%d events in the other stream", n)
	}
}

// insertRaw stores a row as an older build would have written it.
func insertRaw(t *testing.T, ctx context.Context, s *eventstore.Store, key eventstore.Key, version int64, name string, schema int, payload string) {
	t.Helper()
	_, err := s.Pool().Exec(ctx, `INSERT INTO events (event_id, tenant_id, stream_type, stream_id, version, name,
		schema, payload, metadata, recorded_at, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '{}', now(), $9, $10)`,
		uuid.Must(uuid.NewV7()).String(), string(key.Tenant), key.Type, key.ID, version, name, schema, payload,
		make([]byte, 32), bytes.Repeat([]byte{byte(version)}, 32))
	if err != nil {
		t.Fatalf("insert raw row: %v", err)
	}
}

func confUpcast(t *testing.T, s *eventstore.Store, ctx context.Context) {
	insertRaw(t, ctx, s, confKey, 1, "conformance.renamed", 1, `{"name": "Ada Lovelace"}`)
	envs := load(t, ctx, s, confKey)
	if len(envs) != 1 {
		t.Fatalf("%d events, want 1", len(envs))
	}
	want := confRenamed{FullName: "Ada Lovelace"}
	if envs[0].Event != want || envs[0].Schema != 1 {
		t.Fatalf("loaded %#v at schema %d, want %#v upcast from schema 1", envs[0].Event, envs[0].Schema, want)
	}
	// New events are written at the current schema and need no upcast.
	appendOK(t, ctx, s, eventstore.AppendRequest{Key: confKey, Expected: 1, Events: []domain.Event{confRenamed{FullName: "B"}}})
	envs = load(t, ctx, s, confKey)
	if envs[1].Schema != 2 || envs[1].Event != (confRenamed{FullName: "B"}) {
		t.Fatalf("second event %+v", envs[1])
	}
	if ev, err := s.Codec().Decode("conformance.renamed", 1, []byte(`{"name":"C"}`)); err != nil || ev != (confRenamed{FullName: "C"}) {
		t.Fatalf("Decode schema 1: %#v, %v", ev, err)
	}
	if _, err := s.Codec().Decode("conformance.renamed", 3, []byte(`{}`)); err == nil {
		t.Fatal("Decode accepted a schema newer than the registered one")
	}
}

func confUnknownEvent(t *testing.T, s *eventstore.Store, ctx context.Context) {
	insertRaw(t, ctx, s, confKey, 1, "conformance.from_the_future", 1, `{"x": 1}`)
	appendOK(t, ctx, s, eventstore.AppendRequest{Key: confKey, Expected: 1, Events: []domain.Event{confNoted{Note: "after"}}})
	envs := load(t, ctx, s, confKey)
	if len(envs) != 2 || envs[0].Event != nil || envs[0].Name != "conformance.from_the_future" ||
		string(envs[0].Payload) != `{"x": 1}` || envs[1].Event == nil {
		t.Fatalf("loaded %+v", envs)
	}
	_, err := s.Codec().Decode("conformance.from_the_future", 1, []byte(`{}`))
	var unknown *eventstore.UnknownEventError
	if !errors.As(err, &unknown) || unknown.Name != "conformance.from_the_future" {
		t.Fatalf("Decode error %v, want *UnknownEventError", err)
	}
	if s.Codec().Known("conformance.from_the_future") || !s.Codec().Known("conformance.noted") {
		t.Fatal("Known is wrong")
	}
	all := readAllEventually(t, ctx, s, 2)
	if all[0].Event != nil || all[0].Name != "conformance.from_the_future" {
		t.Fatalf("ReadAll dropped or decoded the unknown event: %+v", all[0])
	}
}

func confAlsoSameTx(t *testing.T, s *eventstore.Store, ctx context.Context) {
	var alsoTx uint64
	res := appendOK(t, ctx, s, eventstore.AppendRequest{Key: confKey, Expected: eventstore.NoStream,
		Events: []domain.Event{confOpened{Title: "a"}},
		Also: func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO relay_checkpoints (name) VALUES ('conformance-also')`); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT pg_current_xact_id()`).Scan(&alsoTx)
		}})
	envs := load(t, ctx, s, confKey)
	if len(envs) != 1 || envs[0].TxID != alsoTx || res.Version != 1 {
		t.Fatalf("event tx %d, Also ran in tx %d", envs[0].TxID, alsoTx)
	}
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM relay_checkpoints WHERE name = 'conformance-also'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("Also's row: count %d, %v", n, err)
	}
}

func confAlsoRollsBack(t *testing.T, s *eventstore.Store, ctx context.Context) {
	boom := errors.New("boom")
	_, err := s.Append(ctx, eventstore.AppendRequest{Key: confKey, Expected: eventstore.NoStream,
		Events: []domain.Event{confOpened{Title: "a"}},
		Also: func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO relay_checkpoints (name) VALUES ('conformance-rollback')`); err != nil {
				return err
			}
			return boom
		}})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want Also's error", err)
	}
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM relay_checkpoints WHERE name = 'conformance-rollback'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("Also's row survived: count %d, %v", n, err)
	}
	if envs := load(t, ctx, s, confKey); len(envs) != 0 {
		t.Fatalf("%d events survived a failed Also", len(envs))
	}
	// The stream is still new: the same append without failure succeeds.
	appendOK(t, ctx, s, eventstore.AppendRequest{Key: confKey, Expected: eventstore.NoStream,
		Events: []domain.Event{confOpened{Title: "a"}},
		Also:   func(context.Context, pgx.Tx) error { return nil }})
}

// readAllEventually reads the whole store through ReadAll in small pages until
// it has want events (other transactions in the cluster can hold readers back
// for a moment).
func readAllEventually(t *testing.T, ctx context.Context, s *eventstore.Store, want int) []eventstore.Envelope {
	t.Helper()
	var all []eventstore.Envelope
	var cp eventstore.Checkpoint
	deadline := time.Now().Add(10 * time.Second)
	for len(all) < want {
		envs, err := s.ReadAll(ctx, cp, 2)
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		all = append(all, envs...)
		cp = eventstore.Next(envs, cp)
		if len(envs) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("ReadAll saw %d of %d events", len(all), want)
			}
			time.Sleep(5 * time.Millisecond) // polling a database, not waiting for a goroutine
		}
	}
	if len(all) != want {
		t.Fatalf("ReadAll returned %d events, want %d", len(all), want)
	}
	return all
}

func confReadAll(t *testing.T, s *eventstore.Store, ctx context.Context) {
	var appended []string
	for i := range 5 {
		k := eventstore.Key{Tenant: confKey.Tenant, Type: confKey.Type, ID: fmt.Sprintf("r-%d", i%2)}
		res := appendOK(t, ctx, s, eventstore.AppendRequest{Key: k, Expected: eventstore.Any,
			Events: []domain.Event{confNoted{Note: fmt.Sprint(i)}, confNoted{Note: fmt.Sprint(i)}}})
		appended = append(appended, res.EventIDs...)
	}
	all := readAllEventually(t, ctx, s, len(appended))
	for i, e := range all {
		if e.EventID != appended[i] {
			t.Fatalf("ReadAll event %d is %s, appended %s", i, e.EventID, appended[i])
		}
		if e.Event == nil {
			t.Fatalf("ReadAll event %d not decoded", i)
		}
	}
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := eventstore.Next(all, eventstore.Checkpoint{}); head != want {
		t.Fatalf("Head %+v, want %+v", head, want)
	}
	if more, err := s.ReadAll(ctx, head, 10); err != nil || len(more) != 0 {
		t.Fatalf("ReadAll after the head: %d events, %v", len(more), err)
	}
}

func confVerifyClean(t *testing.T, s *eventstore.Store, ctx context.Context) {
	for i := range 3 {
		k := eventstore.Key{Tenant: domain.TenantID(fmt.Sprintf("tenant-%d", i%2)), Type: "conformance", ID: fmt.Sprint(i)}
		for v := range 3 {
			appendOK(t, ctx, s, eventstore.AppendRequest{Key: k, Expected: eventstore.Version(v),
				Events: []domain.Event{confNoted{Note: "n", Score: float64(v) / 3}}})
		}
	}
	rep, err := s.Verify(ctx, "")
	if err != nil || !rep.OK() || rep.Streams != 3 || rep.Events != 9 {
		t.Fatalf("Verify: %+v, %v", rep, err)
	}
	rep, err = s.Verify(ctx, "tenant-1")
	if err != nil || !rep.OK() || rep.Streams != 1 || rep.Events != 3 {
		t.Fatalf("Verify tenant-1: %+v, %v", rep, err)
	}
}

type confUnregistered struct{}

func (confUnregistered) EventName() string { return "conformance.unregistered" }

func confInvalid(t *testing.T, s *eventstore.Store, ctx context.Context) {
	ev := []domain.Event{confNoted{}}
	for name, req := range map[string]eventstore.AppendRequest{
		"no events":     {Key: confKey, Expected: eventstore.Any},
		"no tenant":     {Key: eventstore.Key{Type: "x", ID: "y"}, Expected: eventstore.Any, Events: ev},
		"bad expected":  {Key: confKey, Expected: -7, Events: ev},
		"ids count":     {Key: confKey, Expected: eventstore.Any, Events: ev, EventIDs: []string{"a", "b"}},
		"bad id":        {Key: confKey, Expected: eventstore.Any, Events: ev, EventIDs: []string{"not-a-uuid"}},
		"unregistered":  {Key: confKey, Expected: eventstore.Any, Events: []domain.Event{confUnregistered{}}},
		"pointer event": {Key: confKey, Expected: eventstore.Any, Events: []domain.Event{&confNoted{}}},
		"same id twice": {Key: confKey, Expected: eventstore.Any, Events: []domain.Event{confNoted{}, confNoted{}},
			EventIDs: []string{"01890a5d-ac96-774b-bcce-b302099a8057", "01890a5d-ac96-774b-bcce-b302099a8057"}},
	} {
		if _, err := s.Append(ctx, req); err == nil || errors.Is(err, eventstore.ErrVersionConflict) {
			t.Errorf("%s: got %v, want a validation error", name, err)
		}
	}
	if envs := load(t, ctx, s, confKey); len(envs) != 0 {
		t.Fatalf("%d events after invalid appends", len(envs))
	}
}
