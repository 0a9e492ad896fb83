package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"velocicompanion/commands"
	"velocicompanion/eventstore"
	"velocicompanion/projections"
)

// prune deletes what expired beyond its retention (commands.Prune,
// projections.PruneSeen) and reports the rows removed per table.
//
// It runs on the owner pool, which the server already holds for migrations,
// rather than on a maintenance role granted DELETE on these tables: a
// second role needs its own login and secret in every deployment, and
// granting the DELETE to vc_app instead would let a compromised application
// erase the refresh-token and MFA records that detect replays. The owner
// deletes only what these functions select.
func prune(ctx context.Context, db database, cfg config, now time.Time) ([]commands.Pruned, error) {
	out, err := commands.Prune(ctx, db.owner, now, commands.Retention{LoginIPWindow: cfg.LoginIPWindow})
	if err != nil {
		return out, err
	}
	n, err := projections.PruneSeen(ctx, db.owner, now, cfg.ProjectorSeenRetention, 0)
	return append(out, commands.Pruned{Table: "projector_seen", Rows: n}), err
}

// maintain is the maintain task: prune once and print what went.
func maintain(ctx context.Context, cfg config, stdout io.Writer) error {
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.close()
	out, err := prune(ctx, db, cfg, time.Now())
	for _, p := range out {
		fmt.Fprintf(stdout, "%-16s %d rows removed\n", p.Table, p.Rows)
	}
	if err != nil {
		return fmt.Errorf("maintain: %w", err)
	}
	return nil
}

// maintenance prunes every cfg.MaintenanceInterval on one replica at a time
// (the "maintenance" leader lock) until ctx ends; a zero interval turns it off.
func maintenance(cfg config, db database, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		if cfg.MaintenanceInterval <= 0 {
			return nil
		}
		eventstore.Lead(ctx, db.owner, "maintenance", 10*time.Second, log, func(ctx context.Context) error {
			t := time.NewTicker(cfg.MaintenanceInterval)
			defer t.Stop()
			for {
				out, err := prune(ctx, db, cfg, time.Now())
				attrs := []any{}
				for _, p := range out {
					attrs = append(attrs, slog.Int64(p.Table, p.Rows))
				}
				if err != nil && ctx.Err() == nil {
					log.Warn("maintenance failed", append(attrs, slog.String("error", err.Error()))...)
				} else if err == nil {
					log.Info("maintenance pruned expired rows", attrs...)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
		})
		return nil
	}
}

// durOrOff parses a setting that is a positive duration, or 0 for off.
func durOrOff(p *time.Duration) func(string) error {
	return func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("must be a duration such as 1h, or 0 for off")
		}
		*p = d
		return nil
	}
}
