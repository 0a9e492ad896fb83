package commands_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"velocicompanion/adapters/auth"
	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/tenants"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

type fixture struct {
	db  *pgtest.DB
	h   *commands.Handler
	st  *eventstore.Store
	now time.Time
	mu  sync.Mutex
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := pgtest.New(t)
	if err := commands.Migrate(context.Background(), db.Owner); err != nil {
		t.Fatal(err)
	}
	hasher, err := auth.NewHasher(auth.HasherOptions{Params: auth.MinimumParams})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f.st = eventstore.NewStore(db.App, commands.NewCodec())
	f.h = commands.New(f.st, hasher, commands.WithClock(f.clock))
	if err := f.h.EnsurePlatformTenant(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

var platform = users.Actor{User: "root", Tenant: domain.PlatformTenant, Role: users.RolePlatformAdmin}

func (f *fixture) tenant(t *testing.T, name string) domain.TenantID {
	t.Helper()
	res, err := f.h.CreateTenant(context.Background(), commands.CreateTenant{Name: name, By: platform.User})
	if err != nil {
		t.Fatal(err)
	}
	return domain.TenantID(res.ID)
}

func (f *fixture) user(t *testing.T, tenant domain.TenantID, name string, role users.Role) domain.UserID {
	t.Helper()
	res, err := f.h.RegisterUser(context.Background(), commands.RegisterUser{
		Tenant: tenant, Username: name, Password: "password of " + name, Role: role, By: platform})
	if err != nil {
		t.Fatal(err)
	}
	return domain.UserID(res.ID)
}

func TestTenantNamesAreUnique(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.tenant(t, "Acme")
	_, err := f.h.CreateTenant(ctx, commands.CreateTenant{Name: " ACME ", By: platform.User})
	if !errors.Is(err, commands.ErrTenantNameTaken) {
		t.Fatalf("err = %v, want tenant_name_taken", err)
	}
	// The refused command left no event behind.
	var n int
	if err := f.db.Owner.QueryRow(ctx, `SELECT count(*) FROM events WHERE name = 'tenant.created'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 { // the platform tenant and Acme
		t.Fatalf("%d tenant.created events, want 2", n)
	}
	// EnsurePlatformTenant is idempotent.
	if err := f.h.EnsurePlatformTenant(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateTenantIsAtomic(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	f.tenant(t, "Globex")
	name, off := "Globex", false
	// Renaming to a taken name fails, and the deactivation in the same request is not applied.
	_, err := f.h.UpdateTenant(ctx, commands.UpdateTenant{Tenant: a, Name: &name, Active: &off, By: platform.User})
	if !errors.Is(err, commands.ErrTenantNameTaken) {
		t.Fatalf("err = %v", err)
	}
	v, err := f.h.TenantView(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if !v.State.Active || v.State.Name != "Acme" || v.Version != 1 {
		t.Fatalf("tenant after refused update: %+v", v)
	}
	// A stale If-Match is refused with 412 and changes nothing.
	newName := "Acme Corp"
	_, err = f.h.UpdateTenant(ctx, commands.UpdateTenant{Tenant: a, Name: &newName, IfMatch: 7, By: platform.User})
	if domain.KindOf(err) != domain.KindPrecondition {
		t.Fatalf("stale If-Match: %v", err)
	}
	res, err := f.h.UpdateTenant(ctx, commands.UpdateTenant{Tenant: a, Name: &newName, Active: &off, IfMatch: 1, By: platform.User})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 3 || res.Position == 0 {
		t.Fatalf("result %+v, want version 3 with a position", res)
	}
	active, err := f.h.TenantActive(ctx, a)
	if err != nil || active {
		t.Fatalf("tenant still active (%v)", err)
	}
	// Another tenant's id is simply not found.
	_, err = f.h.UpdateTenant(ctx, commands.UpdateTenant{Tenant: "no-such-tenant", Name: &newName, By: platform.User})
	if !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("unknown tenant: %v", err)
	}
	_ = tenants.ErrExists
}

func TestLogin(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	alice := f.user(t, a, "Alice", users.RoleAdmin)

	id, res, err := f.h.Login(ctx, commands.Login{Username: "alice", Password: "password of Alice"})
	if err != nil {
		t.Fatal(err)
	}
	if id.User != alice || id.Tenant != a || id.Role != users.RoleAdmin || res.Position == 0 {
		t.Fatalf("login gave %+v %+v", id, res)
	}
	_, _, errWrong := f.h.Login(ctx, commands.Login{Username: "alice", Password: "wrong password!"})
	_, _, errUnknown := f.h.Login(ctx, commands.Login{Username: "nobody", Password: "wrong password!"})
	if !errors.Is(errWrong, commands.ErrBadCredentials) || !errors.Is(errUnknown, commands.ErrBadCredentials) {
		t.Fatalf("wrong password: %v; unknown user: %v", errWrong, errUnknown)
	}

	// Repeated failures throttle the account for a while, never for good.
	for i := 0; i < users.FreeLoginFailures; i++ {
		_, _, _ = f.h.Login(ctx, commands.Login{Username: "alice", Password: "wrong password!"})
	}
	_, _, err = f.h.Login(ctx, commands.Login{Username: "alice", Password: "password of Alice"})
	if !errors.Is(err, users.ErrLoginThrottled) {
		t.Fatalf("after many failures: %v, want throttled", err)
	}
	f.advance(users.MaxLoginDelay)
	if _, _, err := f.h.Login(ctx, commands.Login{Username: "alice", Password: "password of Alice"}); err != nil {
		t.Fatalf("after the delay: %v", err)
	}

	// Every attempt on a known account is an event; none carries the password.
	envs, err := f.st.Load(ctx, eventstore.Key{Tenant: a, Type: "user", ID: string(alice)})
	if err != nil {
		t.Fatal(err)
	}
	var failed, throttled, logged int
	for _, e := range envs {
		if strings.Contains(string(e.Payload), "password of") || strings.Contains(string(e.Payload), "wrong password") {
			t.Fatalf("%s carries a password: %s", e.Name, e.Payload)
		}
		switch ev := e.Event.(type) {
		case users.LoginFailed:
			failed++
			if ev.Reason == users.ReasonThrottled {
				throttled++
			}
		case users.LoggedIn:
			logged++
		}
	}
	// FreeLoginFailures wrong passwords are checked; the next wrong one and the
	// right one that follows are both refused unchecked while throttled.
	if logged != 2 || throttled != 2 || failed != users.FreeLoginFailures+2 {
		t.Fatalf("logged %d, failed %d (throttled %d)", logged, failed, throttled)
	}
}

func TestLoginRefusedForDisabledUserAndInactiveTenant(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	admin := f.user(t, a, "admin1", users.RoleAdmin)
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	by := users.Actor{User: admin, Tenant: a, Role: users.RoleAdmin}

	before, err := f.h.LookupIdentity(ctx, carol)
	if err != nil {
		t.Fatal(err)
	}
	off := false
	if _, err := f.h.UpdateUser(ctx, commands.UpdateUser{Tenant: a, User: carol, Active: &off, By: by}); err != nil {
		t.Fatal(err)
	}
	after, err := f.h.LookupIdentity(ctx, carol)
	if err != nil {
		t.Fatal(err)
	}
	if after.Usable() || after.Epoch == before.Epoch {
		t.Fatalf("disabled identity %+v (before %+v)", after, before)
	}
	_, _, err = f.h.Login(ctx, commands.Login{Username: "carol", Password: "password of carol"})
	if !errors.Is(err, users.ErrDisabled) {
		t.Fatalf("disabled user login: %v", err)
	}
	if _, err := f.h.UpdateTenant(ctx, commands.UpdateTenant{Tenant: a, Active: &off, By: platform.User}); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.h.Login(ctx, commands.Login{Username: "admin1", Password: "password of admin1"})
	if !errors.Is(err, users.ErrDisabled) {
		t.Fatalf("inactive tenant login: %v", err)
	}
	// No user can be created in an inactive tenant.
	_, err = f.h.RegisterUser(ctx, commands.RegisterUser{Tenant: a, Username: "dave", Password: "password of dave",
		Role: users.RoleViewer, By: platform})
	if !errors.Is(err, commands.ErrTenantInactive) {
		t.Fatalf("register in inactive tenant: %v", err)
	}
}

func TestUpdateUserIsAllOrNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	admin := f.user(t, a, "admin1", users.RoleAdmin)
	f.user(t, a, "taken", users.RoleViewer)
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	by := users.Actor{User: admin, Tenant: a, Role: users.RoleAdmin}

	taken, viewer := "taken", users.RoleViewer
	_, err := f.h.UpdateUser(ctx, commands.UpdateUser{Tenant: a, User: carol, Username: &taken, Role: &viewer, By: by})
	if !errors.Is(err, commands.ErrUsernameTaken) {
		t.Fatalf("rename to a taken name: %v", err)
	}
	v, err := f.h.UserView(ctx, a, carol)
	if err != nil {
		t.Fatal(err)
	}
	if v.State.Username != "carol" || v.State.Role != users.RoleAnalyst {
		t.Fatalf("refused update changed the user: %+v", v.State)
	}
	// Password changes replace the hash: the old password stops working.
	pw := "a brand new password"
	if _, err := f.h.UpdateUser(ctx, commands.UpdateUser{Tenant: a, User: carol, Password: &pw, By: by}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.h.Login(ctx, commands.Login{Username: "carol", Password: "password of carol"}); !errors.Is(err, commands.ErrBadCredentials) {
		t.Fatalf("old password: %v", err)
	}
	if _, _, err := f.h.Login(ctx, commands.Login{Username: "carol", Password: pw}); err != nil {
		t.Fatalf("new password: %v", err)
	}
	// An administrator of another tenant cannot touch carol: not found.
	b := f.tenant(t, "Globex")
	other := users.Actor{User: f.user(t, b, "bob", users.RoleAdmin), Tenant: b, Role: users.RoleAdmin}
	_, err = f.h.UpdateUser(ctx, commands.UpdateUser{Tenant: a, User: carol, Role: &viewer, By: other})
	if !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("cross-tenant update: %v", err)
	}
	// Looking carol up under another tenant's key finds nothing either.
	if _, err := f.h.UserView(ctx, b, carol); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("cross-tenant view: %v", err)
	}
}

func TestConcurrentUpdatesRetry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	admin := f.user(t, a, "admin1", users.RoleAdmin)
	by := users.Actor{User: admin, Tenant: a, Role: users.RoleAdmin}
	var ids []domain.UserID
	for i := 0; i < 4; i++ {
		ids = append(ids, f.user(t, a, "user"+string(rune('a'+i)), users.RoleViewer))
	}
	// Several writers change the same tenant concurrently: each lands exactly once.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			desc := "description " + string(rune('a'+i))
			_, err := f.h.UpdateTenant(ctx, commands.UpdateTenant{Tenant: a, Description: &desc, By: platform.User})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	var ok, conflicts int
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, eventstore.ErrVersionConflict):
			conflicts++
		default:
			t.Fatal(err)
		}
	}
	v, err := f.h.TenantView(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if int64(ok) != v.Version-1 {
		t.Fatalf("%d updates succeeded but the stream has version %d", ok, v.Version)
	}
	_ = ids
	_ = by
}
