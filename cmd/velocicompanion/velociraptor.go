package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/adapters/httpapi"
	"velocicompanion/adapters/kafka"
	"velocicompanion/adapters/realtime"
	atrest "velocicompanion/adapters/secrets"
	"velocicompanion/adapters/siem"
	"velocicompanion/adapters/velociraptor"
	"velocicompanion/adapters/velociraptor/jobs"
	"velocicompanion/commands"
	"velocicompanion/eventstore"
)

// vrEdge is the Velociraptor integration of one server process.
type vrEdge struct {
	cmds  *commands.Velociraptor
	conns *jobs.Connections
}

// newVelociraptor returns the integration, or a zero one without a master
// key (no configuration can be stored then, and the routes answer 503).
func newVelociraptor(cfg config, handler *commands.Handler, keyring *atrest.Keyring) vrEdge {
	if keyring == nil {
		return vrEdge{}
	}
	cmds := commands.NewVelociraptor(handler, keyring)
	policy := siem.NetPolicy{Allowed: cfg.VRAllowedNetworks}
	return vrEdge{cmds: cmds, conns: jobs.NewConnections(cmds, velociraptor.WithControl(policy.Control))}
}

// deps are the HTTP routes' collaborators.
func (e vrEdge) deps() httpapi.VelociraptorDeps {
	if e.cmds == nil {
		return httpapi.VelociraptorDeps{}
	}
	return httpapi.VelociraptorDeps{Commands: e.cmds, Org: e.conns.Org, Dial: e.conns.Dial}
}

// run leads the process manager and the client sync in one replica of the
// deployment at a time. The leader also reads the events topic live, so that
// a request wakes the process manager at once instead of at its next poll.
func (e vrEdge) run(cfg config, pool *pgxpool.Pool, handler *commands.Handler, kcfg kafka.Config, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		if e.cmds == nil || !cfg.VRJobs {
			return nil
		}
		defer e.conns.Close()
		log = log.With("component", "velociraptor")
		worker := &jobs.Worker{Cmds: e.cmds, Conns: e.conns, Poll: cfg.VRPoll, Log: log}
		sync := &jobs.Sync{Cmds: e.cmds, Hosts: handler, Conns: e.conns, Every: cfg.VRSyncInterval, Log: log}
		eventstore.Lead(ctx, pool, "velociraptor-jobs", 5*time.Second, log, func(ctx context.Context) error {
			errc := make(chan error, 2)
			go func() { errc <- worker.Run(ctx) }()
			go func() { errc <- sync.Run(ctx) }()
			go wakeOnRequests(ctx, kcfg, worker, log)
			return <-errc
		})
		return nil
	}
}

// wakeOnRequests wakes worker at every event that asks it for work, until
// ctx ends. Without Kafka the worker still polls: a failed subscription is
// tried again after a pause.
func wakeOnRequests(ctx context.Context, kcfg kafka.Config, worker *jobs.Worker, log *slog.Logger) {
	for ctx.Err() == nil {
		sub, err := realtime.NewLiveSubscriber(kcfg, log)
		if err == nil {
			err = jobs.Wakes(ctx, sub, kcfg.Topic, worker.Wake)
			_ = sub.Close()
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("velociraptor wake-ups from Kafka stopped; polling meanwhile", slog.String("error", err.Error()))
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
	}
}
