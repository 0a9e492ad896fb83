// Package commands decides and appends: one method per command on *Handler
// loads the aggregate's stream, calls the pure decision of its domain package,
// and appends the resulting events at the loaded version, retrying a few times
// on a concurrent write.
//
// Package commands may import eventstore and domain. It must not import
// projections, adapters or cmd; the edges it needs (password hashing) are small
// interfaces declared here.
package commands

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or upgrades the write-side tables of the commands.
func Migrate(ctx context.Context, owner *pgxpool.Pool) error {
	return eventstore.Migrate(ctx, owner, "commands", mustSub(migrations, "migrations"))
}

// PasswordHasher hashes and verifies passwords; adapters/auth implements it.
type PasswordHasher interface {
	Hash(ctx context.Context, password string) (string, error)
	Verify(ctx context.Context, password, encoded string) (bool, error)
	// DummyVerify spends as long as a real verification, so that an unknown
	// user name is not revealed by timing.
	DummyVerify(ctx context.Context, password string) error
}

// Handler executes commands.
type Handler struct {
	store  *eventstore.Store
	pool   *pgxpool.Pool
	hasher PasswordHasher
	now    func() time.Time
	newID  func() string

	mailer  Mailer
	mailLog *slog.Logger

	signIn signInConfig // second factors and sign-in throttling (totp.go)
}

// Option configures a Handler.
type Option func(*Handler)

// WithClock makes the handler read time from now; tests inject a fixed clock.
func WithClock(now func() time.Time) Option { return func(h *Handler) { h.now = now } }

// New returns a Handler appending to store. The store's pool must use the
// application role.
func New(store *eventstore.Store, hasher PasswordHasher, opts ...Option) *Handler {
	h := &Handler{store: store, pool: store.Pool(), hasher: hasher, now: time.Now, newID: newUUID}
	for _, o := range opts {
		o(h)
	}
	return h
}

func newUUID() string { return uuid.Must(uuid.NewV7()).String() }

// Result tells a client where its write landed: the stream's new version and
// the global position of the last event, for read-your-writes queries.
type Result struct {
	ID       string `json:"id"`
	Version  int64  `json:"version"`
	Position int64  `json:"position"`
}

// ErrStale answers a write whose If-Match names a version that is no longer current.
var ErrStale = domain.PreconditionFailed("stale_version", "the resource was changed since you read it; reload and retry")

// maxAttempts bounds the retries of a command that lost a version race. Each
// round of a race has a winner, so n writers racing on one stream need at most
// n attempts; backoff spreads them out so that few need more than two.
const maxAttempts = 12

// backoff waits before retry attempt (1-based) of a command that lost a race:
// a random pause of up to 2^attempt milliseconds (capped at 64 ms), so that
// racing writers stop colliding in lockstep.
func backoff(ctx context.Context, attempt int) error {
	limit := time.Millisecond << min(attempt, 6)
	t := time.NewTimer(rand.N(limit))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// decideFunc decides on a stream's history. It may be called more than once.
type decideFunc func(history []domain.Event) ([]domain.Event, error)

// alsoFunc writes what must commit with the events (credential and uniqueness rows).
type alsoFunc func(ctx context.Context, tx pgx.Tx, events []domain.Event) error

// update loads key's stream, runs decide on it, and appends what it returns at
// the loaded version, together with also's writes. It retries on a version
// conflict. A decision that returns no events appends nothing.
//
// ifMatch, when not zero, is the version the client last saw (If-Match): the
// command is refused with 412 if the stream has moved on since.
func (h *Handler) update(ctx context.Context, key eventstore.Key, meta eventstore.Metadata, ifMatch int64, decide decideFunc, also alsoFunc) (Result, error) {
	var lastErr error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		envs, err := h.store.Load(ctx, key)
		if err != nil {
			return Result{}, fmt.Errorf("load %s: %w", key, err)
		}
		history := make([]domain.Event, 0, len(envs))
		for _, e := range envs {
			if e.Event != nil {
				history = append(history, e.Event)
			}
		}
		current := eventstore.Version(len(envs))
		if ifMatch != 0 && int64(current) != ifMatch {
			if current == 0 {
				return Result{}, domain.ErrNotFound
			}
			return Result{}, ErrStale
		}
		events, err := decide(history)
		if err != nil {
			return Result{}, err
		}
		if len(events) == 0 {
			return Result{ID: key.ID, Version: int64(current)}, nil
		}
		req := eventstore.AppendRequest{Key: key, Expected: current, Events: events, Metadata: meta}
		if also != nil {
			req.Also = func(ctx context.Context, tx pgx.Tx) error { return also(ctx, tx, events) }
		}
		res, err := h.store.Append(ctx, req)
		if errors.Is(err, eventstore.ErrVersionConflict) {
			lastErr = err
			if err := backoff(ctx, attempt+1); err != nil {
				return Result{}, err
			}
			continue
		}
		if err != nil {
			return Result{}, fmt.Errorf("append %s: %w", key, err)
		}
		return Result{ID: key.ID, Version: int64(res.Version), Position: res.Position}, nil
	}
	return Result{}, lastErr
}

// load folds key's stream with evolve.
func load[S any](ctx context.Context, h *Handler, key eventstore.Key, evolve func(S, domain.Event) S) (S, eventstore.Version, error) {
	var s S
	envs, err := h.store.Load(ctx, key)
	if err != nil {
		return s, 0, fmt.Errorf("load %s: %w", key, err)
	}
	for _, e := range envs {
		if e.Event != nil {
			s = evolve(s, e.Event)
		}
	}
	return s, eventstore.Version(len(envs)), nil
}
