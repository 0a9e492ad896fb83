package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"velocicompanion/adapters/velociraptor"
	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/eventstore"
)

// CertificateWarning is how long before its client certificate expires a
// connection is warned about.
const CertificateWarning = 30 * 24 * time.Hour

// DefaultSeenResolution is the Sync's SeenResolution when it has none.
const DefaultSeenResolution = time.Hour

// syncActor is who the host events of a sync are by.
const syncActor = "velociraptor-sync"

// Sync turns each configured tenant's Velociraptor clients into host events,
// so that the hosts read model follows the fleet. A client is one host per
// tenant, found again by its client id; a report that brings no news appends
// nothing, so running the sync again changes nothing.
type Sync struct {
	Cmds  *commands.Velociraptor
	Hosts *commands.Handler
	Conns *Connections
	// Every is the time between two syncs of all tenants.
	Every time.Duration
	// Limit bounds the clients read per tenant and sync.
	Limit int
	// SeenResolution is how much later a client's last check-in must be
	// than its host's recorded last seen to be recorded (default 1 hour):
	// clients check in every minute, and each record is an event.
	SeenResolution time.Duration
	Log            *slog.Logger
}

func (s *Sync) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// Run syncs every configured tenant every Every until ctx ends.
func (s *Sync) Run(ctx context.Context) error {
	every := s.Every
	if every <= 0 {
		every = 5 * time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		tenants, err := s.Cmds.Configured(ctx)
		if err != nil && ctx.Err() == nil {
			s.log().WarnContext(ctx, "velociraptor sync: list tenants", slog.String("error", err.Error()))
		}
		for _, tenant := range tenants {
			res, err := s.Tenant(ctx, tenant)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				s.log().WarnContext(ctx, "velociraptor sync", slog.String("tenant", string(tenant)), slog.String("error", err.Error()))
				continue
			}
			s.log().InfoContext(ctx, "velociraptor sync", slog.String("tenant", string(tenant)),
				slog.Int("clients", res.Clients), slog.Int("discovered", res.Discovered), slog.Int("changed", res.Changed))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// SyncReport says what one sync of a tenant did.
type SyncReport struct {
	Clients    int `json:"clients"`    // clients read from Velociraptor
	Discovered int `json:"discovered"` // hosts recorded for the first time
	Changed    int `json:"changed"`    // known hosts with news
	Skipped    int `json:"skipped"`    // clients whose report was refused (logged)
}

// Tenant syncs one tenant's clients and records the outcome of the check of
// its connection.
func (s *Sync) Tenant(ctx context.Context, tenant domain.TenantID) (SyncReport, error) {
	var rep SyncReport
	org, err := s.Conns.Org(ctx, tenant)
	if err != nil {
		return rep, s.checked(ctx, tenant, err)
	}
	limit := s.Limit
	if limit <= 0 {
		limit = velociraptor.MaxClientsLimit
	}
	clients, err := org.Clients(ctx, "", limit)
	if err != nil {
		return rep, s.checked(ctx, tenant, err)
	}
	if err := s.checked(ctx, tenant, nil); err != nil {
		return rep, err
	}
	rep.Clients = len(clients)
	// Once per certificate, an event says that it expires soon: the audit
	// log and the SIEM destinations carry it to whoever renews it.
	if warned, err := s.Cmds.WarnExpiry(ctx, tenant, CertificateWarning); err != nil {
		return rep, err
	} else if warned {
		s.log().WarnContext(ctx, "velociraptor client certificate expires soon: post a new api_client configuration",
			slog.String("tenant", string(tenant)))
	}
	meta := eventstore.Metadata{Actor: syncActor, ActorType: "system"}
	for _, c := range clients {
		report := HostReport(tenant, c, meta)
		report.SeenResolution = s.SeenResolution
		if report.SeenResolution <= 0 {
			report.SeenResolution = DefaultSeenResolution
		}
		res, err := s.Hosts.SyncHost(ctx, report)
		if err != nil {
			var de *domain.Error
			if errors.As(err, &de) {
				rep.Skipped++
				s.log().WarnContext(ctx, "velociraptor sync: client refused", slog.String("tenant", string(tenant)),
					slog.String("client_id", c.ClientID), slog.String("error", err.Error()))
				continue
			}
			return rep, fmt.Errorf("sync client %s: %w", c.ClientID, err)
		}
		switch {
		case res.Created:
			rep.Discovered++
		case res.Position != 0:
			rep.Changed++
		}
	}
	return rep, nil
}

// checked records the outcome of talking to the tenant's server; a tenant
// without a connection has nothing to record.
func (s *Sync) checked(ctx context.Context, tenant domain.TenantID, err error) error {
	if errors.Is(err, ErrNotConfigured) {
		return err
	}
	text := ""
	if err != nil {
		text = "internal error"
		var de *domain.Error
		if errors.As(err, &de) {
			text = de.Message
		}
	}
	if rerr := s.Cmds.RecordCheck(ctx, tenant, err == nil, text); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// HostReport is what a Velociraptor client says about its host, as a sync
// report.
func HostReport(tenant domain.TenantID, c velociraptor.ClientInfo, meta eventstore.Metadata) commands.SyncHost {
	var ips []string
	if ip := addressOnly(c.LastIP); ip != "" {
		ips = []string{ip}
	}
	labels := c.Labels
	if labels == nil {
		labels = []string{}
	}
	extra := map[string]any{}
	if c.AgentVersion != "" {
		extra["agent_version"] = c.AgentVersion
	}
	if c.Machine != "" {
		extra["machine"] = c.Machine
	}
	if len(c.MACs) > 0 {
		extra["mac_addresses"] = c.MACs
	}
	var metadata json.RawMessage
	if len(extra) > 0 {
		metadata, _ = json.Marshal(map[string]any{"velociraptor": extra})
	}
	hostname := c.Hostname
	if hostname == "" {
		hostname = c.ClientID
	}
	return commands.SyncHost{
		Tenant: tenant,
		Profile: hosts.Profile{Hostname: hostname, FQDN: c.FQDN, OS: c.OS, OSVersion: c.Release,
			IPs: ips, Labels: labels, ClientID: c.ClientID, Metadata: metadata},
		Source:    hosts.SourceVelociraptor,
		FirstSeen: c.FirstSeen, LastSeen: c.LastSeen,
		By: syncActor, Meta: meta,
	}
}

// addressOnly returns the IP address of Velociraptor's last_ip, which may
// carry a port ("192.0.2.7:51234", "[2001:db8::1]:51234"), or "".
func addressOnly(s string) string {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	if ip := net.ParseIP(s); ip != nil {
		return ip.String()
	}
	return ""
}
