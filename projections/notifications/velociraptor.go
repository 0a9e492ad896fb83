package notifications

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/velociraptor"
	"velocicompanion/eventstore"
)

// The kinds of velociraptor_requests rows.
const (
	requestCollection = "collection"
	requestHunt       = "hunt"
	requestQuarantine = "quarantine" // keyed by the collection that quarantines or releases a host
)

// applyVelociraptor handles the events of collections, hunts and host
// quarantines: requests are remembered in velociraptor_requests (and host
// names in host_names), and the events that end one notify its requester.
// Every statement is idempotent: requests are written once, a host's name
// only by a newer event, and notification ids derive from the event.
func applyVelociraptor(ctx context.Context, tx pgx.Tx, env eventstore.Envelope) error {
	switch e := env.Event.(type) {
	case velociraptor.CollectionRequested:
		return remember(ctx, tx, env, requestCollection, env.StreamID, e.By, e.Purpose, collectionSubject(e))
	case velociraptor.HuntRequested:
		return remember(ctx, tx, env, requestHunt, env.StreamID, e.By, "", huntSubject(e))
	case hosts.QuarantineRequested:
		return remember(ctx, tx, env, requestQuarantine, e.Collection, e.By, velociraptor.PurposeQuarantine, "")
	case hosts.ReleaseRequested:
		return remember(ctx, tx, env, requestQuarantine, e.Collection, e.By, velociraptor.PurposeRelease, "")
	case hosts.Registered:
		return rememberHost(ctx, tx, env, e.Profile.Hostname)
	case hosts.Discovered:
		return rememberHost(ctx, tx, env, e.Profile.Hostname)
	case hosts.Updated:
		if e.Hostname == nil {
			return nil
		}
		return rememberHost(ctx, tx, env, *e.Hostname)
	case velociraptor.CollectionCompleted, velociraptor.CollectionFailed, velociraptor.CollectionCancelled:
		return notifyRequester(ctx, tx, env, requestCollection, env.StreamID)
	case velociraptor.HuntStopped, velociraptor.HuntFailed:
		return notifyRequester(ctx, tx, env, requestHunt, env.StreamID)
	case hosts.Quarantined:
		return notifyRequester(ctx, tx, env, requestQuarantine, e.Collection)
	case hosts.Released:
		return notifyRequester(ctx, tx, env, requestQuarantine, e.Collection)
	case hosts.QuarantineFailed:
		return notifyRequester(ctx, tx, env, requestQuarantine, e.Collection)
	}
	return nil // not an event this projector follows, or one the codec does not know
}

// remember records who asked for the collection, hunt or quarantine id of
// kind, why and what about; the first record stays.
func remember(ctx context.Context, tx pgx.Tx, env eventstore.Envelope, kind, id string, by domain.UserID, purpose velociraptor.Purpose, subject string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO velociraptor_requests (tenant_id, kind, id, requester, purpose, subject)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, kind, id) DO NOTHING`,
		string(env.Tenant), kind, id, string(by), string(purpose), subject); err != nil {
		return fmt.Errorf("record %s request %s: %w", kind, id, err)
	}
	return nil
}

// rememberHost records the name of env's host as of env.
func rememberHost(ctx context.Context, tx pgx.Tx, env eventstore.Envelope, hostname string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO host_names AS h (tenant_id, host_id, hostname, version) VALUES ($1, $2, $3, $4)
		ON CONFLICT (tenant_id, host_id) DO UPDATE SET hostname = $3, version = $4 WHERE h.version < $4`,
		string(env.Tenant), env.StreamID, hostname, int64(env.Version)); err != nil {
		return fmt.Errorf("record host %s: %w", env.StreamID, err)
	}
	return nil
}

// notifyRequester loads what Notify needs about the request of kind and id
// (and, for a quarantine, the host's name) and records the notifications.
// A request the projector never saw (recorded before it followed them)
// notifies nobody.
func notifyRequester(ctx context.Context, tx pgx.Tx, env eventstore.Envelope, kind, id string) error {
	var f Facts
	var requester, purpose string
	err := tx.QueryRow(ctx, `SELECT requester, purpose, subject FROM velociraptor_requests
		WHERE tenant_id = $1 AND kind = $2 AND id = $3`, string(env.Tenant), kind, id).Scan(&requester, &purpose, &f.Subject)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("load %s request %s: %w", kind, id, err)
	}
	f.Requester, f.Purpose = domain.UserID(requester), velociraptor.Purpose(purpose)
	if kind == requestQuarantine {
		err := tx.QueryRow(ctx, `SELECT hostname FROM host_names WHERE tenant_id = $1 AND host_id = $2`,
			string(env.Tenant), env.StreamID).Scan(&f.Hostname)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("load host %s: %w", env.StreamID, err)
		}
	}
	return insert(ctx, tx, Notify(env, f))
}

// collectionSubject is what a collection's notifications call it: its
// artifacts and client.
func collectionSubject(e velociraptor.CollectionRequested) string {
	return strings.Join(e.Artifacts, ", ") + " on " + e.ClientID
}

// huntSubject is what a hunt's notifications call it: its description, or
// its artifacts when it has none.
func huntSubject(e velociraptor.HuntRequested) string {
	if d := strings.TrimSpace(e.Description); d != "" {
		return d
	}
	return strings.Join(e.Artifacts, ", ")
}
