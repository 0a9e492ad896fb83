package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"velocicompanion/adapters/velociraptor"
	"velocicompanion/commands"
	"velocicompanion/domain"
	dvr "velocicompanion/domain/velociraptor"
)

// jobTimeout bounds one step of one job; tenantBudget is how long a tenant's
// jobs may keep starting within one Step.
const (
	jobTimeout   = 5 * time.Minute
	tenantBudget = 30 * time.Second
)

// QuarantineLabel is the client label that marks a quarantined host in
// Velociraptor, as its own console sets it.
const QuarantineLabel = "Quarantine"

// Worker is the process manager of collections and hunts: it takes the open
// jobs that the commands recorded with their events, does the next step of
// each against the tenant's Velociraptor server, and records the outcome as
// events. Every step is safe to repeat: a collection or hunt is looked up by
// what identifies it in Velociraptor (a hunt by the mark of our id in its
// description, a collection by its artifacts, parameters, creator and time)
// before it is started, so a crash between starting it and recording that it
// started neither loses nor duplicates it.
//
// One worker runs per deployment (the caller holds the leader lock).
type Worker struct {
	Cmds  *commands.Velociraptor
	Conns *Connections
	// Poll is how often open jobs are looked at, and how long a running
	// collection or hunt waits between two looks at its progress.
	Poll time.Duration
	// MaxAttempts bounds the retries of a step that keeps failing for a
	// reason that may pass (the server unreachable); then the job fails.
	MaxAttempts int
	// Parallel is how many tenants' jobs run at once (default 8).
	Parallel int
	// MaxRows bounds the rows kept per artifact source of one collection or
	// hunt flow; what is beyond it is counted in the logs, not stored.
	MaxRows int
	Log     *slog.Logger
	Now     func() time.Time

	mu   sync.Mutex
	busy map[domain.TenantID]bool // tenants whose jobs are running
	wake chan struct{}            // Wake's signal to Run
}

func (w *Worker) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Worker) poll() time.Duration {
	if w.Poll > 0 {
		return w.Poll
	}
	return 5 * time.Second
}

func (w *Worker) log() *slog.Logger {
	if w.Log != nil {
		return w.Log
	}
	return slog.Default()
}

// Run does the due jobs every Poll until ctx ends. A tenant whose jobs are
// still running (its server slow or hanging) is skipped until they are done;
// the other tenants' jobs go on meanwhile.
func (w *Worker) Run(ctx context.Context) error {
	t := time.NewTicker(w.poll())
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	report := func(err error) {
		if ctx.Err() == nil {
			w.log().WarnContext(ctx, "velociraptor jobs", slog.String("error", err.Error()))
		}
	}
	for {
		if _, err := w.dispatch(ctx, &wg, report); err != nil {
			report(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-w.wakeC():
		}
	}
}

// Step does the next step of every due job, waits for them, and returns
// how many it looked at.
func (w *Worker) Step(ctx context.Context) (int, error) {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	n, err := w.dispatch(ctx, &wg, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	})
	wg.Wait()
	if err != nil {
		return n, err
	}
	if ctx.Err() != nil {
		return n, ctx.Err()
	}
	return n, errors.Join(errs...)
}

// dispatch starts the due jobs of each tenant that has none running, up to
// Parallel tenants at once: a tenant's jobs one after another, in a goroutine
// counted by wg, starting no more of them after tenantBudget. Failures go to
// report. It returns how many due jobs it saw.
func (w *Worker) dispatch(ctx context.Context, wg *sync.WaitGroup, report func(error)) (int, error) {
	due, err := w.Cmds.DueJobs(ctx, w.now(), 100)
	if err != nil {
		return 0, err
	}
	var order []domain.TenantID
	byTenant := map[domain.TenantID][]commands.Job{}
	for _, job := range due {
		if _, ok := byTenant[job.Tenant]; !ok {
			order = append(order, job.Tenant)
		}
		byTenant[job.Tenant] = append(byTenant[job.Tenant], job)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.busy == nil {
		w.busy = map[domain.TenantID]bool{}
	}
	for _, tenant := range order {
		if w.busy[tenant] || len(w.busy) >= w.parallel() {
			continue
		}
		w.busy[tenant] = true
		wg.Add(1)
		go func(tenant domain.TenantID, jobs []commands.Job) {
			defer wg.Done()
			defer func() {
				w.mu.Lock()
				delete(w.busy, tenant)
				w.mu.Unlock()
			}()
			budget := time.Now().Add(tenantBudget)
			for _, job := range jobs {
				if ctx.Err() != nil || time.Now().After(budget) {
					return
				}
				jctx, cancel := context.WithTimeout(ctx, jobTimeout)
				err := w.do(jctx, job)
				cancel()
				if err != nil && ctx.Err() == nil {
					report(fmt.Errorf("%s %s of tenant %s: %w", job.Kind, job.ID, job.Tenant, err))
				}
			}
		}(tenant, byTenant[tenant])
	}
	return len(due), nil
}

func (w *Worker) parallel() int {
	if w.Parallel > 0 {
		return w.Parallel
	}
	return 8
}

func (w *Worker) do(ctx context.Context, job commands.Job) error {
	org, err := w.Conns.Org(ctx, job.Tenant)
	if err == nil {
		switch job.Kind {
		case commands.JobCollection:
			err = w.collection(ctx, org, job)
		case commands.JobHunt:
			err = w.hunt(ctx, org, job)
		default:
			return fmt.Errorf("unknown job kind %q", job.Kind)
		}
	}
	if err == nil {
		return nil
	}
	if !lasting(err) && job.Attempts+1 < w.maxAttempts() {
		// Try again later, waiting longer each time (2 s, 4 s, … 5 min).
		wait := min(time.Duration(1<<min(job.Attempts+1, 9))*time.Second, 5*time.Minute)
		w.log().InfoContext(ctx, "velociraptor job deferred", slog.String("job", job.ID), slog.String("kind", job.Kind),
			slog.Int("attempts", job.Attempts+1), slog.String("error", err.Error()))
		return w.Cmds.DeferJob(ctx, job, w.now().Add(wait))
	}
	return w.fail(ctx, job, err)
}

func (w *Worker) maxAttempts() int {
	if w.MaxAttempts > 0 {
		return w.MaxAttempts
	}
	return 12
}

func (w *Worker) maxRows() int {
	if w.MaxRows > 0 {
		return w.MaxRows
	}
	return 100_000
}

// fail ends job with err's message: a client-safe message for our own
// errors and for what Velociraptor answered, a generic one for the rest.
func (w *Worker) fail(ctx context.Context, job commands.Job, err error) error {
	msg := "internal error"
	var de *domain.Error
	if errors.As(err, &de) {
		msg = de.Message
	} else {
		w.log().ErrorContext(ctx, "velociraptor job failed", slog.String("job", job.ID), slog.String("error", err.Error()))
	}
	switch job.Kind {
	case commands.JobCollection:
		w.unmarkQuarantine(ctx, job)
		return w.Cmds.FailCollection(ctx, job.Tenant, job.ID, msg, nil)
	case commands.JobHunt:
		return w.Cmds.FailHunt(ctx, job.Tenant, job.ID, msg)
	}
	return err
}

// unmarkQuarantine takes the quarantine label off the client of a failing
// quarantine collection, if the server can be reached: a host that is not
// isolated must not look so. It is best effort; the failure is recorded
// either way.
func (w *Worker) unmarkQuarantine(ctx context.Context, job commands.Job) {
	c, err := w.Cmds.Collection(ctx, job.Tenant, job.ID)
	if err != nil || c.Purpose != dvr.PurposeQuarantine {
		return
	}
	org, err := w.Conns.Org(ctx, job.Tenant)
	if err == nil {
		err = org.Label(ctx, c.ClientID, []string{QuarantineLabel}, "remove")
	}
	if err != nil {
		w.log().WarnContext(ctx, "velociraptor: cannot take the quarantine label off a client whose quarantine failed",
			slog.String("collection", c.ID), slog.String("client_id", c.ClientID), slog.String("error", err.Error()))
	}
}

// lasting reports whether err will not pass by trying again: the request or
// the configuration is wrong, or Velociraptor refused the query itself.
func lasting(err error) bool {
	var de *domain.Error
	if !errors.As(err, &de) {
		return false
	}
	switch de.Kind {
	case domain.KindInvalid, domain.KindUnprocessable, domain.KindNotFound, domain.KindForbidden, domain.KindConflict:
		return true
	case domain.KindUpstream:
		return de.Code != "velociraptor_refused"
	}
	return false
}

// collection does the next step of a collection: start it, or look at its
// progress and record its results once it has finished. A collection asked
// to be cancelled is not started: its flow, if a crash left one started, is
// recorded and then cancelled.
func (w *Worker) collection(ctx context.Context, org velociraptor.Org, job commands.Job) error {
	c, err := w.Cmds.Collection(ctx, job.Tenant, job.ID)
	if err != nil {
		return err
	}
	cancelling := job.State == commands.JobCancelling || c.CancelRequested
	if c.FlowID == "" {
		// Velociraptor keeps no id of ours with a flow: a flow that a crash
		// left unrecorded is recognised by what it collects, by whom and since
		// when (see velociraptor.FlowMatch).
		taken, err := w.Cmds.RecordedFlows(ctx, job.Tenant, c.ClientID)
		if err != nil {
			return err
		}
		flowID, found, err := org.FindFlow(ctx, c.ClientID, velociraptor.FlowMatch{
			Artifacts: c.Artifacts, Params: c.Parameters, Since: c.CreatedAt, Taken: taken,
		})
		if err != nil {
			return err
		}
		if !found && cancelling {
			return w.Cmds.RecordCollectionCancelled(ctx, job.Tenant, c.ID) // never started: nothing to stop
		}
		if !found {
			if c.Purpose == dvr.PurposeQuarantine {
				// Velociraptor's own mark of a quarantined client, set first
				// so that its console shows the host as isolated.
				if err := org.Label(ctx, c.ClientID, []string{QuarantineLabel}, "set"); err != nil {
					return err
				}
			}
			if flowID, err = org.Collect(ctx, c.ClientID, c.Artifacts, c.Parameters); err != nil {
				return err
			}
		}
		return w.Cmds.ScheduleCollection(ctx, job.Tenant, c.ID, flowID)
	}
	flow, err := org.Flow(ctx, c.ClientID, c.FlowID)
	if err != nil {
		return err
	}
	// A flow that finished before the cancel reached it completes as usual;
	// one that ended otherwise was cancelled (by us, before a crash).
	if cancelling && flow.State != "FINISHED" {
		if !flow.Done() {
			if err := org.CancelFlow(ctx, c.ClientID, c.FlowID); err != nil {
				return err
			}
		}
		return w.Cmds.RecordCollectionCancelled(ctx, job.Tenant, c.ID)
	}
	if !flow.Done() {
		return w.Cmds.WaitJob(ctx, job, w.now().Add(w.poll()))
	}
	logs, err := org.FlowLogs(ctx, c.ClientID, c.FlowID, 50)
	if err != nil {
		return err
	}
	if flow.State != "FINISHED" {
		reason := flow.Status
		if reason == "" {
			reason = "the collection ended in state " + flow.State
		}
		if c.Purpose == dvr.PurposeQuarantine {
			// The host is not isolated: it must not look so.
			if err := org.Label(ctx, c.ClientID, []string{QuarantineLabel}, "remove"); err != nil {
				return err
			}
		}
		return w.Cmds.FailCollection(ctx, job.Tenant, c.ID, reason, logs)
	}
	if c.Purpose == dvr.PurposeRelease {
		if err := org.Label(ctx, c.ClientID, []string{QuarantineLabel}, "remove"); err != nil {
			return err
		}
	}
	var results []commands.SourceRows
	for _, source := range flow.Sources {
		rows, err := org.FlowResults(ctx, c.ClientID, c.FlowID, source)
		if err != nil {
			return err
		}
		if len(rows) > w.maxRows() {
			logs = append(logs, fmt.Sprintf("VelociCompanion kept the first %d of %d rows of %s", w.maxRows(), len(rows), source))
			rows = rows[:w.maxRows()]
		}
		results = append(results, commands.SourceRows{Source: source, Rows: rows})
	}
	return w.Cmds.CompleteCollection(ctx, job.Tenant, c.ID, results, logs)
}

// hunt does the next step of a hunt: start it, stop it when asked, or record
// its progress and the results that arrived since the last look.
func (w *Worker) hunt(ctx context.Context, org velociraptor.Org, job commands.Job) error {
	h, err := w.Cmds.Hunt(ctx, job.Tenant, job.ID)
	if err != nil {
		return err
	}
	if h.HuntID == "" {
		huntID, found, err := org.FindHunt(ctx, h.ID)
		if err != nil {
			return err
		}
		if !found {
			huntID, err = org.CreateHunt(ctx, velociraptor.HuntSpec{
				Description: h.Description, Artifacts: h.Artifacts, Params: h.Parameters,
				IncludeLabels: h.IncludeLabels, ExcludeLabels: h.ExcludeLabels, OS: h.OS, Expires: h.Expires, Marker: h.ID,
			})
			if err != nil {
				return err
			}
		}
		return w.Cmds.ScheduleHunt(ctx, job.Tenant, h.ID, huntID)
	}
	if h.StopRequested {
		if err := org.StopHunt(ctx, h.HuntID); err != nil {
			return err
		}
	}
	vr, err := org.Hunt(ctx, h.HuntID)
	if err != nil {
		return err
	}
	if err := w.Cmds.RecordHuntProgress(ctx, job.Tenant, h.ID, commands.HuntProgress{
		State: vr.State, Scheduled: vr.Stats.Scheduled, Completed: vr.Stats.Completed,
		WithResults: vr.Stats.WithResults, Errors: vr.Stats.Errors,
	}); err != nil {
		return err
	}
	ended := vr.State == "STOPPED" || vr.State == "ARCHIVED" || (!h.Expires.IsZero() && w.now().After(h.Expires))
	// Results are read again only when the client counts moved, and once
	// more at the end: a large hunt is not re-read on every look.
	if vrStats := (dvr.HuntStats{Scheduled: vr.Stats.Scheduled, Completed: vr.Stats.Completed, WithResults: vr.Stats.WithResults,
		Errors: vr.Stats.Errors}); vrStats != h.Stats || ended || h.StopRequested {
		if err := w.huntResults(ctx, org, job, h, vr); err != nil {
			return err
		}
	}
	if ended || h.StopRequested {
		return w.Cmds.RecordHuntStopped(ctx, job.Tenant, h.ID)
	}
	return w.Cmds.WaitJob(ctx, job, w.now().Add(w.poll()))
}

// huntResults stores the rows of every flow of the hunt, grouped by flow and
// artifact source; what was stored before is stored again as nothing.
func (w *Worker) huntResults(ctx context.Context, org velociraptor.Org, job commands.Job, h commands.Hunt, vr velociraptor.Hunt) error {
	sources := vr.Artifacts
	if len(sources) == 0 {
		sources = h.Artifacts
	}
	for _, source := range sources {
		rows, err := org.HuntResults(ctx, h.HuntID, source)
		if err != nil {
			return err
		}
		// Each row names the client and flow it came from.
		type flowKey struct{ client, flow string }
		var order []flowKey
		byFlow := map[flowKey][]json.RawMessage{}
		for _, raw := range rows {
			var from struct {
				ClientID string `json:"ClientId"`
				FlowID   string `json:"FlowId"`
			}
			if err := json.Unmarshal(raw, &from); err != nil || velociraptor.CheckClientID(from.ClientID) != nil ||
				velociraptor.CheckFlowID(from.FlowID) != nil {
				continue // not a row of a client's flow: nothing to file it under
			}
			k := flowKey{from.ClientID, from.FlowID}
			if _, ok := byFlow[k]; !ok {
				order = append(order, k)
			}
			byFlow[k] = append(byFlow[k], raw)
		}
		for _, k := range order {
			flowRows := byFlow[k]
			if len(flowRows) > w.maxRows() {
				flowRows = flowRows[:w.maxRows()]
			}
			if err := w.Cmds.StoreHuntResults(ctx, job.Tenant, h.ID, k.client, k.flow, source, flowRows); err != nil {
				return err
			}
		}
	}
	return nil
}
