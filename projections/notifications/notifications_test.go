package notifications_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/velociraptor"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
	"velocicompanion/projections"
	"velocicompanion/projections/notifications"
	"velocicompanion/projections/readmodel"
)

// testCodec knows the case events, as the server's codec does.
func testCodec() *eventstore.Codec {
	c := eventstore.NewCodec()
	eventstore.Register[cases.Opened](c, 1)
	eventstore.Register[cases.Updated](c, 1)
	eventstore.Register[cases.StatusChanged](c, 1)
	eventstore.Register[cases.Assigned](c, 1)
	eventstore.Register[cases.Closed](c, 1)
	eventstore.Register[cases.Reopened](c, 1)
	eventstore.Register[cases.TaskAdded](c, 1)
	eventstore.Register[cases.TaskUpdated](c, 1)
	eventstore.Register[cases.CommentAdded](c, 1)
	eventstore.Register[hosts.Registered](c, 1)
	eventstore.Register[hosts.Updated](c, 1)
	eventstore.Register[hosts.QuarantineRequested](c, 1)
	eventstore.Register[hosts.Quarantined](c, 1)
	eventstore.Register[hosts.QuarantineFailed](c, 1)
	eventstore.Register[hosts.ReleaseRequested](c, 1)
	eventstore.Register[hosts.Released](c, 1)
	eventstore.Register[velociraptor.CollectionRequested](c, 1)
	eventstore.Register[velociraptor.CollectionScheduled](c, 1)
	eventstore.Register[velociraptor.CollectionCompleted](c, 1)
	eventstore.Register[velociraptor.CollectionFailed](c, 1)
	eventstore.Register[velociraptor.HuntRequested](c, 1)
	eventstore.Register[velociraptor.HuntStopRequested](c, 1)
	eventstore.Register[velociraptor.HuntStopped](c, 1)
	eventstore.Register[velociraptor.HuntFailed](c, 1)
	return c
}

type fixture struct {
	db    *pgtest.DB
	store *eventstore.Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := pgtest.New(t)
	if err := projections.Migrate(context.Background(), db.Owner, notifications.Projector{}); err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, store: eventstore.NewStore(db.App, testCodec())}
}

// appendCase appends events to case id of tenant.
func (f *fixture) appendCase(t *testing.T, tenant domain.TenantID, id string, events ...domain.Event) {
	t.Helper()
	f.appendTo(t, tenant, "case", id, events...)
}

// appendTo appends events to the stream of type typ and id of tenant.
func (f *fixture) appendTo(t *testing.T, tenant domain.TenantID, typ, id string, events ...domain.Event) {
	t.Helper()
	_, err := f.store.Append(context.Background(), eventstore.AppendRequest{
		Key: eventstore.Key{Tenant: tenant, Type: typ, ID: id}, Expected: eventstore.Any, Events: events,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// project applies every stored event the way the runner does: as vc_app,
// scoped to the event's tenant, recording its position in projector_seen in
// the same transaction. With force it applies events again that projector_seen
// already has, to show that Apply itself is idempotent.
func (f *fixture) project(t *testing.T, force bool) []eventstore.Envelope {
	t.Helper()
	ctx := context.Background()
	var envs []eventstore.Envelope
	for start := time.Now(); ; {
		var err error
		envs, err = f.store.ReadAll(ctx, eventstore.Checkpoint{}, 10_000)
		if err != nil {
			t.Fatal(err)
		}
		var stored int
		if err := f.db.Owner.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if len(envs) == stored {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("only %d of %d events readable", len(envs), stored)
		}
		<-time.After(10 * time.Millisecond) // other tests' transactions hold the horizon back
	}
	p := notifications.Projector{}
	for _, env := range envs {
		err := pgx.BeginFunc(ctx, f.db.App, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, string(env.Tenant)); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `INSERT INTO projector_seen (projector, position, event_id, tenant_id)
				VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, p.Name(), env.Position, env.EventID, string(env.Tenant))
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 && !force {
				return nil
			}
			return p.Apply(ctx, tx, env)
		})
		if err != nil {
			t.Fatalf("apply %s at %d: %v", env.Name, env.Position, err)
		}
	}
	return envs
}

// dump returns every notification row, as the owner sees them, in key order.
func (f *fixture) dump(t *testing.T) []string {
	t.Helper()
	rows, err := f.db.Owner.Query(context.Background(), `SELECT tenant_id, id, user_id, kind, notification_type, title,
		message, link, created_at, source_event_id, source_position FROM notifications ORDER BY tenant_id, id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(vals...))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func inbox(t *testing.T, f *fixture, tenant domain.TenantID, user domain.UserID, filter notifications.Filter) []notifications.Notification {
	t.Helper()
	ns, err := notifications.List(context.Background(), f.db.App, tenant, user, filter, readmodel.Page{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func kinds(ns []notifications.Notification) []notifications.Kind {
	out := make([]notifications.Kind, len(ns))
	for i, n := range ns {
		out[i] = n.Kind
	}
	return out
}

// story appends the life of one case in tenant: opened for bob by alice, a
// few changes by alice and bob, reassigned to carol, closed and reopened.
func (f *fixture) story(t *testing.T, tenant domain.TenantID, id string) {
	t.Helper()
	f.appendCase(t, tenant, id, cases.Opened{ID: cases.ID(id), Title: "Beacon", Severity: cases.SeverityHigh,
		TLP: cases.TLPAmber, PAP: cases.PAPAmber, Assignee: bob, By: alice})
	f.appendCase(t, tenant, id,
		cases.StatusChanged{From: cases.StatusOpen, To: cases.StatusInvestigating, By: alice},    // bob
		cases.StatusChanged{From: cases.StatusInvestigating, To: cases.StatusContained, By: bob}, // nobody
		cases.Updated{Title: ptr("Beacon on ws-042"), By: alice},
		cases.TaskAdded{Task: "t1", Title: "Pull memory", Status: cases.TaskTodo, Assignee: alice, By: bob}, // alice
		cases.CommentAdded{Comment: "c1", Body: "on it", By: bob},
	)
	f.appendCase(t, tenant, id,
		cases.Assigned{From: bob, To: carol, By: alice},                                                                        // carol, bob
		cases.TaskUpdated{Task: "t1", Assignee: ptr(carol), By: alice},                                                         // carol
		cases.Closed{From: cases.StatusContained, ResolutionType: cases.ResolutionBenign, Resolution: "admin tool", By: alice}, // carol
		cases.Reopened{To: cases.StatusInvestigating, By: carol},                                                               // nobody
	)
}

func TestProjector(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.story(t, "tenant-a", "case-1")
	f.project(t, false)

	K := notifications.KindCaseAssigned
	for _, tc := range []struct {
		user domain.UserID
		want []notifications.Kind
	}{
		{alice, []notifications.Kind{notifications.KindTaskAssigned}},
		{bob, []notifications.Kind{notifications.KindCaseUnassigned, notifications.KindCaseStatusChanged, K}},
		{carol, []notifications.Kind{notifications.KindCaseClosed, notifications.KindTaskAssigned, K}},
	} {
		got := inbox(t, f, "tenant-a", tc.user, notifications.Filter{})
		if !slices.Equal(kinds(got), tc.want) {
			t.Errorf("%s's inbox (newest first): %v, want %v", tc.user, kinds(got), tc.want)
		}
	}
	// The messages use what the helper tables knew: the renamed title and
	// the task's title, which the task update did not carry.
	carols := inbox(t, f, "tenant-a", carol, notifications.Filter{})
	if m := carols[1].Message; m != `Task "Pull memory" of case "Beacon on ws-042" was assigned to you.` {
		t.Errorf("task message %q", m)
	}
	if n := carols[0]; n.Type != notifications.TypeSuccess || n.Link != "/cases/case-1" || n.Read || n.ReadAt != nil {
		t.Errorf("closed notification %+v", n)
	}
}

func TestProjectorIsIdempotent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.story(t, "tenant-a", "case-1")
	f.project(t, false)
	once := f.dump(t)
	if len(once) != 7 {
		t.Fatalf("%d notifications, want 7:\n%v", len(once), once)
	}
	// A user reads one; applying every event again (as a redelivery that
	// slipped past projector_seen would) adds nothing and keeps the flag.
	bobs := inbox(t, f, "tenant-a", bob, notifications.Filter{})
	if _, err := notifications.MarkRead(context.Background(), f.db.App, "tenant-a", bob, bobs[0].ID, true, time.Now()); err != nil {
		t.Fatal(err)
	}
	f.project(t, true)
	if twice := f.dump(t); !slices.Equal(twice, once) {
		t.Fatalf("applying again changed the rows:\n%v\nwant\n%v", twice, once)
	}
	if got := inbox(t, f, "tenant-a", bob, notifications.Filter{Read: ptr(true)}); len(got) != 1 || got[0].ID != bobs[0].ID {
		t.Fatalf("read flag after reapplying: %+v", got)
	}
	// A rebuild from the store makes the same rows, with the same ids.
	if err := projections.Rebuild(context.Background(), f.db.Owner, f.store, notifications.Projector{}, nil); err != nil {
		t.Fatal(err)
	}
	if rebuilt := f.dump(t); !slices.Equal(rebuilt, once) {
		t.Fatalf("rebuild made other rows:\n%v\nwant\n%v", rebuilt, once)
	}
}

func TestRowLevelSecurity(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.story(t, "tenant-a", "case-1")
	f.story(t, "tenant-b", "case-1") // the same ids in another tenant
	f.project(t, false)
	ctx := context.Background()
	a := inbox(t, f, "tenant-a", carol, notifications.Filter{})
	b := inbox(t, f, "tenant-b", carol, notifications.Filter{})
	if len(a) != 3 || len(b) != 3 || a[0].ID == b[0].ID || a[0].Tenant != "tenant-a" || b[0].Tenant != "tenant-b" {
		t.Fatalf("inboxes of the two tenants: %+v / %+v", a, b)
	}
	// Another tenant's notification, by id: not found, and nothing changes.
	if _, err := notifications.Get(ctx, f.db.App, "tenant-b", carol, a[0].ID); !errors.Is(err, notifications.ErrNotFound) {
		t.Fatalf("get across tenants: %v", err)
	}
	if _, err := notifications.MarkRead(ctx, f.db.App, "tenant-b", carol, a[0].ID, true, time.Now()); !errors.Is(err, notifications.ErrNotFound) {
		t.Fatalf("mark across tenants: %v", err)
	}
	// Under row-level security, vc_app without a tenant sees nothing, and
	// scoped to tenant-b sees only its rows even without a tenant filter.
	for tenant, want := range map[string]int{"": 0, "tenant-b": 7} {
		var n int
		err := pgx.BeginFunc(ctx, f.db.App, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, tenant); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT count(*) FROM notifications`).Scan(&n)
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("tenant %q sees %d notifications, want %d", tenant, n, want)
		}
	}
	for _, table := range []string{"case_assignees", "case_task_assignees"} {
		var n int
		if err := f.db.App.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n != 0 {
			t.Errorf("vc_app without a tenant sees %d rows of %s (%v)", n, table, err)
		}
	}
	// Marking another tenant's notifications does not touch them.
	if n, err := notifications.MarkAllRead(ctx, f.db.App, "tenant-b", carol, time.Now()); err != nil || n != 3 {
		t.Fatalf("mark all read in tenant-b: %d, %v", n, err)
	}
	if got := inbox(t, f, "tenant-a", carol, notifications.Filter{Read: ptr(false)}); len(got) != 3 {
		t.Fatalf("tenant-a has %d unread after tenant-b read everything, want 3", len(got))
	}
}

func TestReadFlags(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	for i := range 5 {
		f.story(t, "tenant-a", fmt.Sprintf("case-%d", i))
	}
	f.project(t, false)
	all := inbox(t, f, "tenant-a", carol, notifications.Filter{})
	if len(all) != 15 {
		t.Fatalf("carol has %d notifications, want 15", len(all))
	}
	// Someone else's notification: not found, and unchanged.
	if _, err := notifications.MarkRead(ctx, f.db.App, "tenant-a", bob, all[0].ID, true, time.Now()); !errors.Is(err, notifications.ErrNotFound) {
		t.Fatalf("bob marks carol's: %v", err)
	}
	for _, id := range []string{"not-a-uuid", "", notifications.ID("x", carol, notifications.KindCaseAssigned)} {
		if _, err := notifications.MarkRead(ctx, f.db.App, "tenant-a", carol, id, true, time.Now()); !errors.Is(err, notifications.ErrNotFound) {
			t.Fatalf("mark %q: %v", id, err)
		}
	}
	at := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	n, err := notifications.MarkRead(ctx, f.db.App, "tenant-a", carol, all[3].ID, true, at)
	if err != nil || !n.Read || n.ReadAt == nil || !n.ReadAt.Equal(at) {
		t.Fatalf("mark read: %+v, %v", n, err)
	}
	// Marking again keeps the first reading; unmarking clears it.
	n, _ = notifications.MarkRead(ctx, f.db.App, "tenant-a", carol, all[3].ID, true, at.Add(time.Hour))
	if !n.ReadAt.Equal(at) {
		t.Fatalf("read_at moved to %v", n.ReadAt)
	}
	n, _ = notifications.MarkRead(ctx, f.db.App, "tenant-a", carol, all[3].ID, false, at)
	if n.Read || n.ReadAt != nil {
		t.Fatalf("unmarked: %+v", n)
	}
	notifications.MarkRead(ctx, f.db.App, "tenant-a", carol, all[5].ID, true, at)
	if got := inbox(t, f, "tenant-a", carol, notifications.Filter{Read: ptr(false)}); len(got) != 14 {
		t.Fatalf("%d unread, want 14", len(got))
	}
	// Mark all: counts only the unread ones, and only the caller's.
	if n, err := notifications.MarkAllRead(ctx, f.db.App, "tenant-a", carol, at); err != nil || n != 14 {
		t.Fatalf("mark all read: %d, %v", n, err)
	}
	if n, _ := notifications.MarkAllRead(ctx, f.db.App, "tenant-a", carol, at); n != 0 {
		t.Fatalf("mark all read again: %d", n)
	}
	if got := inbox(t, f, "tenant-a", bob, notifications.Filter{Read: ptr(false)}); len(got) != 15 {
		t.Fatalf("bob has %d unread after carol read hers, want 15", len(got))
	}
	// Keyset pages, newest first, cover the inbox exactly once.
	var paged []string
	page := readmodel.Page{Limit: 4}
	for {
		ns, err := notifications.List(ctx, f.db.App, "tenant-a", bob, notifications.Filter{}, page)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			paged = append(paged, n.ID)
		}
		if len(ns) < page.Limit {
			break
		}
		if page.Cursor, err = readmodel.DecodeCursor(notifications.Cursor(ns[len(ns)-1])); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for _, n := range inbox(t, f, "tenant-a", bob, notifications.Filter{}) {
		want = append(want, n.ID)
	}
	if !slices.Equal(paged, want) {
		t.Fatalf("pages %v, want %v", paged, want)
	}
	if _, err := notifications.List(ctx, f.db.App, "tenant-a", bob, notifications.Filter{},
		readmodel.Page{Limit: 4, Cursor: []string{"yesterday", "x"}}); !errors.Is(err, readmodel.ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
}

func TestDelivered(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.story(t, "tenant-a", "case-1")
	envs := f.project(t, false)
	f.appendCase(t, "tenant-a", "case-1", cases.Assigned{From: carol, To: bob, By: alice}) // not projected
	positions := []int64{}
	byName := map[string]int64{}
	for _, env := range envs {
		positions = append(positions, env.Position)
		byName[env.Name] = env.Position
	}
	positions = append(positions, positions[len(positions)-1]+1000)
	applied, rows, err := notifications.Delivered(ctx, f.db.App, "tenant-a", positions)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(applied, positions[:len(positions)-1]) {
		t.Fatalf("applied %v, want %v", applied, positions[:len(positions)-1])
	}
	if len(rows) != 7 {
		t.Fatalf("%d rows, want 7", len(rows))
	}
	for i, n := range rows {
		if i > 0 && rows[i-1].SourcePosition > n.SourcePosition {
			t.Fatal("rows are not in position order")
		}
	}
	// Another tenant learns nothing about these positions.
	applied, rows, err = notifications.Delivered(ctx, f.db.App, "tenant-b", positions)
	if err != nil || len(applied) != 0 || len(rows) != 0 {
		t.Fatalf("tenant-b: %v %v %v", applied, rows, err)
	}
	if _, rows, _ := notifications.Delivered(ctx, f.db.App, "tenant-a", []int64{byName[cases.EventClosed]}); len(rows) != 1 ||
		rows[0].User != carol || rows[0].Kind != notifications.KindCaseClosed {
		t.Fatalf("rows of the closing: %+v", rows)
	}
}

// TestVelociraptorRequesters follows collections, hunts and a host's
// quarantine and release: each requester hears how what they asked for
// ended, the collections of a quarantine tell only through the host, and
// applying again or rebuilding writes the same rows.
func TestVelociraptorRequesters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const tenant = "tenant-a"
	f.appendTo(t, tenant, "host", "h1", hosts.Registered{ID: "h1", Profile: hosts.Profile{Hostname: "ws-0042", ClientID: "C.1234567890abcdef"}})
	f.appendTo(t, tenant, "collection", "col-1",
		velociraptor.CollectionRequested{ID: "col-1", ClientID: "C.1234567890abcdef", HostID: "h1",
			Artifacts: []string{"Windows.System.Pslist"}, Purpose: velociraptor.PurposeCollect, By: alice},
		velociraptor.CollectionScheduled{FlowID: "F.1"}, velociraptor.CollectionCompleted{Rows: 3})
	f.appendTo(t, tenant, "collection", "col-2",
		velociraptor.CollectionRequested{ID: "col-2", ClientID: "C.1234567890abcdef", Artifacts: []string{"Generic.Client.Info"},
			Purpose: velociraptor.PurposeCollect, By: bob},
		velociraptor.CollectionFailed{Error: "VQL Error: boom"})
	// The quarantine: its collection ends, then the host records it.
	f.appendTo(t, tenant, "host", "h1", hosts.QuarantineRequested{Collection: "q-1", Message: "isolated", By: alice})
	f.appendTo(t, tenant, "collection", "q-1",
		velociraptor.CollectionRequested{ID: "q-1", ClientID: "C.1234567890abcdef", HostID: "h1",
			Artifacts: []string{velociraptor.ArtifactQuarantineWindows}, Purpose: velociraptor.PurposeQuarantine, By: alice},
		velociraptor.CollectionCompleted{Rows: 1})
	f.appendTo(t, tenant, "host", "h1", hosts.Quarantined{Collection: "q-1", FlowID: "F.2"},
		hosts.Updated{Hostname: ptr("WS-0042-renamed")},
		hosts.ReleaseRequested{Collection: "q-2", By: bob}, hosts.QuarantineFailed{Collection: "q-2", Error: "flow timed out"})
	f.appendTo(t, tenant, "hunt", "hunt-1", velociraptor.HuntRequested{ID: "hunt-1", Description: "who is logged on",
		Artifacts: []string{"Generic.Client.Info"}, By: carol}, velociraptor.HuntStopRequested{By: alice}, velociraptor.HuntStopped{})
	f.appendTo(t, tenant, "hunt", "hunt-2", velociraptor.HuntRequested{ID: "hunt-2", Artifacts: []string{"Generic.Client.Info"}, By: carol},
		velociraptor.HuntFailed{Error: "PermissionDenied"})
	// A collection whose request the projector never saw notifies nobody.
	f.appendTo(t, tenant, "collection", "col-x", velociraptor.CollectionCompleted{Rows: 1})
	f.project(t, false)

	byKind := func(user domain.UserID) map[notifications.Kind]notifications.Notification {
		out := map[notifications.Kind]notifications.Notification{}
		for _, n := range inbox(t, f, tenant, user, notifications.Filter{}) {
			if _, dup := out[n.Kind]; dup {
				t.Errorf("%s has two %s notifications", user, n.Kind)
			}
			out[n.Kind] = n
		}
		return out
	}
	for _, tc := range []struct {
		user    domain.UserID
		kind    notifications.Kind
		link    string
		message string
	}{
		{alice, notifications.KindCollectionCompleted, "/api/velociraptor/collections/col-1",
			`Collection "Windows.System.Pslist on C.1234567890abcdef" completed with 3 rows.`},
		{alice, notifications.KindHostQuarantined, "/api/hosts/h1", `Host "ws-0042" is isolated from the network.`},
		{bob, notifications.KindCollectionFailed, "/api/velociraptor/collections/col-2",
			`Collection "Generic.Client.Info on C.1234567890abcdef" failed: VQL Error: boom.`},
		{bob, notifications.KindQuarantineFailed, "/api/hosts/h1",
			`The release of host "WS-0042-renamed" failed, so whether it is isolated is unknown: flow timed out.`},
		{carol, notifications.KindHuntStopped, "/api/velociraptor/hunts/hunt-1", `Hunt "who is logged on" stopped; its results are stored.`},
		{carol, notifications.KindHuntFailed, "/api/velociraptor/hunts/hunt-2", `Hunt "Generic.Client.Info" failed: PermissionDenied.`},
	} {
		n, ok := byKind(tc.user)[tc.kind]
		if !ok || n.Link != tc.link || n.Message != tc.message {
			t.Errorf("%s's %s notification: %+v (found %v), want link %s message %q", tc.user, tc.kind, n, ok, tc.link, tc.message)
		}
	}
	for user, want := range map[domain.UserID]int{alice: 2, bob: 2, carol: 2} {
		if got := len(inbox(t, f, tenant, user, notifications.Filter{})); got != want {
			t.Errorf("%s has %d notifications, want %d", user, got, want)
		}
	}

	once := f.dump(t)
	f.project(t, true)
	if twice := f.dump(t); !slices.Equal(twice, once) {
		t.Fatalf("applying again changed the rows:\n%v\nwant\n%v", twice, once)
	}
	if err := projections.Rebuild(context.Background(), f.db.Owner, f.store, notifications.Projector{}, nil); err != nil {
		t.Fatal(err)
	}
	if rebuilt := f.dump(t); !slices.Equal(rebuilt, once) {
		t.Fatalf("rebuild made other rows:\n%v\nwant\n%v", rebuilt, once)
	}
	// The helper tables are the tenant's alone.
	var n int
	err := readmodel.Read(context.Background(), f.db.App, readmodel.Scope{Tenant: "tenant-b"}, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM velociraptor_requests) + (SELECT count(*) FROM host_names)`).Scan(&n)
	})
	if err != nil || n != 0 {
		t.Fatalf("tenant-b sees %d helper rows of tenant-a (%v)", n, err)
	}
}
