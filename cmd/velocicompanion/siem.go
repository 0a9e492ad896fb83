package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"
	"velocicompanion/domain"

	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/adapters/httpapi"
	"velocicompanion/adapters/kafka"
	atrest "velocicompanion/adapters/secrets"
	"velocicompanion/adapters/siem"
	"velocicompanion/commands"
	dsiem "velocicompanion/domain/siem"
	"velocicompanion/projections/auditlog"
)

// siemDeps wires the SIEM destination routes: the destination commands, whose
// secrets the master keyring seals, and the test delivery. Without a master
// key the routes answer 503.
func siemDeps(handler *commands.Handler, keyring *atrest.Keyring, policy siem.NetPolicy) httpapi.SIEMDeps {
	if keyring == nil {
		return httpapi.SIEMDeps{}
	}
	return httpapi.SIEMDeps{Destinations: commands.NewSIEM(handler, keyring), Test: testSIEMDestination(policy)}
}

// testSIEMDestination delivers one synthetic event, siem_destination.tested,
// to d.
func testSIEMDestination(policy siem.NetPolicy) func(ctx context.Context, d commands.SIEMDestination, secret string) error {
	return func(ctx context.Context, d commands.SIEMDestination, secret string) error {
		err := testDelivery(ctx, d, secret, policy)
		if errors.Is(err, siem.ErrAddressNotAllowed) {
			return errDestinationNotAllowed
		}
		return err
	}
}

func testDelivery(ctx context.Context, d commands.SIEMDestination, secret string, policy siem.NetPolicy) error {
	sender, render, err := siemSender(d, secret, policy)
	if err != nil {
		return err
	}
	defer sender.Close()
	ev := siem.FromEntry(auditlog.Entry{
		ID: "test-" + strconv.FormatInt(time.Now().UnixNano(), 36), Tenant: d.Tenant, Time: time.Now().UTC(),
		Actor: "system", ActorType: auditlog.ActorSystem, Action: "siem_destination.tested",
		ResourceType: dsiem.StreamType, ResourceID: string(d.ID), Result: auditlog.ResultSuccess,
		Details: json.RawMessage(`{"test":true}`),
	})
	msg, err := render(ev)
	if err != nil {
		return err
	}
	return sender.Send(ctx, msg)
}

// siemSender returns the sender and the rendering of destination d.
// siemSender builds d's sender; policy vets every address it connects to.
func siemSender(d commands.SIEMDestination, secret string, policy siem.NetPolicy) (siem.Sender, siem.Render, error) {
	c := d.Settings.Config
	host, _ := os.Hostname()
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify} // the administrator's choice, for labs
	switch c.Kind {
	case dsiem.KindSyslog:
		sender, err := siem.NewSyslogSender(siem.SyslogConfig{Transport: c.Transport, Addr: c.Address, TLS: tlsConfig,
			DialTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, Control: policy.Control})
		if err != nil {
			return nil, nil, err
		}
		return sender, siem.SyslogRender(siem.SyslogHeader{Facility: siem.FacilityAudit, Hostname: host,
			AppName: siem.DefaultProduct.Name, ProcID: strconv.Itoa(os.Getpid())}, siem.Body(c.Body), siem.DefaultProduct), nil
	case dsiem.KindSplunk:
		sender, err := siem.NewHECSender(siem.HECConfig{URL: c.URL, Token: secret, Ack: c.Ack, TLS: tlsConfig, Control: policy.Control})
		if err != nil {
			return nil, nil, err
		}
		return sender, siem.HECRender(siem.HECMeta{Host: host, Index: c.Index}), nil
	case dsiem.KindElastic:
		sender, err := siem.NewElasticSender(siem.ElasticConfig{URL: c.URL, APIKey: secret, DataStream: c.Index, TLS: tlsConfig, Control: policy.Control})
		if err != nil {
			return nil, nil, err
		}
		return sender, siem.ECSRender(), nil
	}
	return nil, nil, fmt.Errorf("%s destinations cannot forward yet", c.Kind)
}

// siemForwarders runs one forwarder per enabled destination, each its own
// Kafka consumer (group siem.v1.<id>), and picks up added, changed and
// removed destinations every refresh interval. A destination that cannot
// forward (a bad configuration) is logged once and skipped.
type siemForwarders struct {
	policy  siem.NetPolicy
	dests   *commands.SIEM
	kcfg    kafka.Config
	log     *slog.Logger
	metrics *siem.Metrics
	dead    siem.DeadLetter
	retry   siem.Backoff
	refresh time.Duration

	running map[string]*siemRun // by tenant/id
	skipped map[string]bool
}

type siemRun struct {
	version int64
	cancel  context.CancelFunc
	done    chan struct{}
}

// runSIEMForwarders returns the background task that supervises the SIEM
// forwarders until its context ends.
func runSIEMForwarders(cfg config, handler *commands.Handler, keyring *atrest.Keyring, kcfg kafka.Config,
	log *slog.Logger, reg prometheus.Registerer) func(context.Context) error {
	return func(ctx context.Context) error {
		m, err := newSIEMForwarders(cfg, handler, keyring, kcfg, log, reg)
		if err != nil {
			return err
		}
		return m.Run(ctx)
	}
}

// newSIEMForwarders returns the forwarders' supervisor, or nil without a
// master key (no destination can exist then).
func newSIEMForwarders(cfg config, handler *commands.Handler, keyring *atrest.Keyring, kcfg kafka.Config,
	log *slog.Logger, reg prometheus.Registerer) (*siemForwarders, error) {
	if keyring == nil || !cfg.SIEMForward {
		return nil, nil
	}
	deadTopic := cfg.SIEMDeadLetterTopic
	if deadTopic == "" {
		deadTopic = kcfg.PoisonTopic
		if deadTopic == "" {
			deadTopic = kafka.PoisonTopic(kcfg.Topic)
		}
	}
	pub, err := kafka.NewMessagePublisher(kcfg, log)
	if err != nil {
		return nil, err
	}
	retry := siem.DefaultBackoff
	retry.Attempts = cfg.SIEMAttempts
	return &siemForwarders{policy: siemPolicy(cfg), dests: commands.NewSIEM(handler, keyring), kcfg: kcfg, log: log.With("component", "siem"),
		metrics: siem.NewMetrics(reg), dead: siem.KafkaDeadLetter(pub, deadTopic), retry: retry,
		refresh: cfg.SIEMRefresh, running: map[string]*siemRun{}, skipped: map[string]bool{}}, nil
}

// Run supervises the forwarders until ctx ends.
func (m *siemForwarders) Run(ctx context.Context) error {
	if m == nil {
		return nil
	}
	defer m.stopAll()
	t := time.NewTicker(m.refresh)
	defer t.Stop()
	for {
		if err := m.reconcile(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("siem destinations not refreshed", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *siemForwarders) reconcile(ctx context.Context) error {
	live, err := m.dests.Live(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, d := range live {
		key := string(d.Tenant) + "/" + string(d.ID)
		seen[key] = true
		if r, ok := m.running[key]; ok && r.version == d.Version && !r.stopped() {
			continue
		}
		m.stop(key)
		if err := m.start(ctx, key, d); err != nil {
			m.log.Warn("siem forwarder not started", slog.String("destination", key), slog.String("error", err.Error()))
		}
	}
	for key := range m.running {
		if !seen[key] {
			m.stop(key)
		}
	}
	return nil
}

func (m *siemForwarders) start(ctx context.Context, key string, d commands.SIEMDestination) error {
	secret, err := m.dests.Secret(ctx, d.Tenant, d.ID)
	if err != nil {
		return err
	}
	sender, render, err := siemSender(d, secret, m.policy)
	if err != nil {
		if !m.skipped[key] {
			m.skipped[key] = true
			m.log.Warn("siem destination cannot forward", slog.String("destination", key), slog.String("error", err.Error()))
		}
		return nil
	}
	sub, err := kafka.NewBatchSubscriber(m.kcfg, siem.Group(string(d.ID)), kafka.BatchOptions{}, m.log)
	if err != nil {
		_ = sender.Close()
		return err
	}
	f := &siem.Forwarder{ID: string(d.ID), Tenant: d.Tenant, Sender: sender, Dead: m.dead, Retry: m.retry, Metrics: m.metrics,
		Filter: siem.Filter{Types: d.Settings.Filter.Types, MinThreat: siem.ThreatClass(d.Settings.Filter.MinThreat),
			TLPCeiling: d.Settings.TLPCeiling},
		Render: render}
	runCtx, cancel := context.WithCancel(ctx)
	r := &siemRun{version: d.Version, cancel: cancel, done: make(chan struct{})}
	m.running[key] = r
	go func() {
		defer close(r.done)
		defer sender.Close()
		if err := siem.Consume(runCtx, sub, m.kcfg.Topic, f); err != nil && runCtx.Err() == nil {
			m.log.Warn("siem forwarder stopped", slog.String("destination", key), slog.String("error", err.Error()))
		}
	}()
	return nil
}

// stopped reports whether the run's consumer gave up (the broker was
// unreachable, say), so that the next refresh starts it again.
func (r *siemRun) stopped() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (m *siemForwarders) stop(key string) {
	if r, ok := m.running[key]; ok {
		r.cancel()
		<-r.done
		delete(m.running, key)
	}
}

func (m *siemForwarders) stopAll() {
	for key := range m.running {
		m.stop(key)
	}
}

// errDestinationNotAllowed answers a destination whose address the network
// policy refuses, without saying whether anything listens there.
var errDestinationNotAllowed = domain.Unprocessable("destination_not_allowed",
	"the destination resolves to an internal address; an operator must allow its network (VC_SIEM_ALLOWED_NETWORKS)")

// siemPolicy is the network policy of SIEM destinations: public addresses,
// plus the configured private ranges.
func siemPolicy(cfg config) siem.NetPolicy { return siem.NetPolicy{Allowed: cfg.SIEMAllowedNetworks} }
