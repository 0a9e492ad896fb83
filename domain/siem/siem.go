// Package siem decides what may happen to a SIEM destination: where a
// tenant's events are forwarded (syslog, Splunk HEC or Elastic), which of them
// (an event filter and a TLP ceiling), and whether forwarding is on.
//
// A destination's stream lives in its tenant with the destination id as the
// stream id. Its secret (a HEC token, an Elastic API key) never appears here:
// the command handler seals it into its credential table in the same
// transaction as the event that says a secret was set.
//
// Package siem is pure: no I/O, no clock, and it imports nothing of ours but
// package domain and package users (for actors and roles).
package siem

import (
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"velocicompanion/domain"
	"velocicompanion/domain/users"
)

// Wire names of the destination events.
//
// WARNING: these strings are stored with every event and name it on Kafka and
// in every projection. Never rename or reuse one; the set only grows.
const (
	EventCreated = "siem_destination.created"
	EventUpdated = "siem_destination.updated"
	EventDeleted = "siem_destination.deleted"
)

// StreamType is the stream type of a destination.
const StreamType = "siem_destination"

// Kind is where a destination delivers.
//
// WARNING: stored in events; never rename one.
type Kind string

// The destination kinds.
const (
	KindSyslog  Kind = "syslog"     // RFC 5424 over TCP or TLS, CEF or JSON body
	KindSplunk  Kind = "splunk_hec" // Splunk HTTP Event Collector
	KindElastic Kind = "elastic"    // Elasticsearch _bulk into a data stream, ECS documents
)

// Limits.
const (
	MaxNameLen  = 100
	MaxTypes    = 100
	MaxTypeLen  = 100
	MaxSecret   = 4096
	MaxIndexLen = 100
)

// Config says how to reach a destination. Which fields apply depends on Kind.
type Config struct {
	Kind Kind `json:"kind"`
	// Address is a syslog receiver's host:port.
	Address string `json:"address,omitempty"`
	// Transport is "tcp" or "tls" (syslog).
	Transport string `json:"transport,omitempty"`
	// Body is "cef" or "json" (syslog).
	Body string `json:"body,omitempty"`
	// URL is the base URL of a Splunk HEC or an Elasticsearch endpoint.
	URL string `json:"url,omitempty"`
	// Index is the Splunk index or the Elastic data stream.
	Index string `json:"index,omitempty"`
	// Ack asks Splunk HEC for indexer acknowledgement.
	Ack bool `json:"ack,omitempty"`
	// InsecureSkipVerify turns off TLS certificate checks (tests, labs).
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// Filter selects the events a destination receives.
type Filter struct {
	// Types are event names, or "<stream type>.*"; empty selects all.
	Types []string `json:"types,omitempty"`
	// MinThreat is the least threat class forwarded: info, low, medium, high
	// or critical; empty forwards all.
	MinThreat string `json:"min_threat,omitempty"`
}

// Settings is everything about a destination but its secret.
type Settings struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
	Config  Config `json:"config"`
	Filter  Filter `json:"filter"`
	// TLPCeiling is the most restricted TLP marking that may leave: clear,
	// green, amber, amber+strict or red.
	TLPCeiling string `json:"tlp_ceiling"`
}

// ID identifies a destination.
type ID string

// Created records that an administrator added a destination. HasSecret says
// whether a secret was stored with it; the secret itself never is here.
type Created struct {
	ID     ID              `json:"id"`
	Tenant domain.TenantID `json:"tenant"`
	Settings
	HasSecret bool          `json:"has_secret"`
	By        domain.UserID `json:"by"`
	At        time.Time     `json:"at"`
}

// Updated records a destination's new settings; SecretChanged says whether
// its secret was replaced (or removed, when HasSecret is false).
type Updated struct {
	Settings
	SecretChanged bool          `json:"secret_changed,omitempty"`
	HasSecret     bool          `json:"has_secret"`
	By            domain.UserID `json:"by"`
	At            time.Time     `json:"at"`
}

// Deleted records that an administrator removed a destination; nothing is
// forwarded to it any more.
type Deleted struct {
	By domain.UserID `json:"by"`
	At time.Time     `json:"at"`
}

// EventName returns the durable wire name of Created.
func (Created) EventName() string { return EventCreated } // WARNING: stored; never rename.

// EventName returns the durable wire name of Updated.
func (Updated) EventName() string { return EventUpdated } // WARNING: stored; never rename.

// EventName returns the durable wire name of Deleted.
func (Deleted) EventName() string { return EventDeleted } // WARNING: stored; never rename.

// State is what decisions about one destination need; Evolve rebuilds it.
type State struct {
	ID        ID
	Tenant    domain.TenantID
	Exists    bool
	Deleted   bool
	Settings  Settings
	HasSecret bool
}

// Errors returned by the decisions, besides domain.ErrNotFound.
var (
	ErrExists         = domain.Conflict("siem_destination_exists", "the destination already exists")
	ErrNotAllowed     = domain.Forbidden("not_allowed", "only an administrator of the tenant may manage its SIEM destinations")
	ErrNameRequired   = domain.Invalid("name_required", "name must not be empty")
	ErrNameInvalid    = domain.Invalid("name_invalid", "name must be 1 to 100 printable characters")
	ErrKindInvalid    = domain.Invalid("kind_invalid", "config.kind must be one of syslog, splunk_hec, elastic")
	ErrAddressInvalid = domain.Invalid("address_invalid", "config.address must be host:port")
	ErrTransport      = domain.Invalid("transport_invalid", "config.transport must be tcp or tls")
	ErrBody           = domain.Invalid("body_invalid", "config.body must be cef or json")
	ErrURLInvalid     = domain.Invalid("url_invalid", "config.url must be an absolute http or https URL without credentials, query or fragment")
	ErrIndexInvalid   = domain.Invalid("index_invalid", "config.index must be at most 100 characters of letters, digits, '-', '_' and '.'")
	ErrNotApplicable  = domain.Invalid("config_not_applicable", "config has a field that does not apply to its kind")
	ErrSecretRequired = domain.Unprocessable("secret_required", "a splunk_hec destination needs its token as secret")
	ErrSecretInvalid  = domain.Invalid("secret_invalid", "secret must be at most 4096 printable characters")
	ErrTypesInvalid   = domain.Invalid("types_invalid", "filter.types must be at most 100 event names like case.opened or user.*")
	ErrThreatInvalid  = domain.Invalid("min_threat_invalid", "filter.min_threat must be one of info, low, medium, high, critical")
	ErrTLPInvalid     = domain.Invalid("tlp_ceiling_invalid", "tlp_ceiling must be one of clear, green, amber, amber+strict, red")
)

// ThreatClasses are the valid minimum threat classes, least severe first.
var ThreatClasses = []string{"info", "low", "medium", "high", "critical"}

// TLPMarkings are the valid TLP ceilings, least restricted first.
var TLPMarkings = []string{"clear", "green", "amber", "amber+strict", "red"}

// SecretChange says what a command does to a destination's secret.
type SecretChange int

// The secret changes.
const (
	SecretKeep   SecretChange = iota // leave it as it is
	SecretSet                        // replace it with the command's secret
	SecretRemove                     // remove it
)

// Create decides whether by may add destination id with settings to the empty
// stream s. hasSecret says whether a secret comes with it.
func Create(s State, by users.Actor, tenant domain.TenantID, id ID, st Settings, hasSecret bool, now time.Time) ([]domain.Event, error) {
	if s.Exists {
		return nil, ErrExists
	}
	if err := mayManage(by, tenant); err != nil {
		return nil, err
	}
	st, err := Check(st, hasSecret)
	if err != nil {
		return nil, err
	}
	return []domain.Event{Created{ID: id, Tenant: tenant, Settings: st, HasSecret: hasSecret, By: by.User, At: now}}, nil
}

// Update decides whether by may give s the settings st and apply secret to
// its secret. Nothing changing records nothing.
func Update(s State, by users.Actor, st Settings, secret SecretChange, now time.Time) ([]domain.Event, error) {
	if !s.Exists || s.Deleted {
		return nil, domain.ErrNotFound
	}
	if err := mayManage(by, s.Tenant); err != nil {
		return nil, err
	}
	has := s.HasSecret
	switch secret {
	case SecretSet:
		has = true
	case SecretRemove:
		has = false
	}
	st, err := Check(st, has)
	if err != nil {
		return nil, err
	}
	changed := secret == SecretSet || (secret == SecretRemove && s.HasSecret)
	if !changed && equalSettings(st, s.Settings) {
		return nil, nil
	}
	return []domain.Event{Updated{Settings: st, SecretChanged: changed, HasSecret: has, By: by.User, At: now}}, nil
}

// Delete decides whether by may remove s. Removing twice records nothing.
func Delete(s State, by users.Actor, now time.Time) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	if err := mayManage(by, s.Tenant); err != nil {
		return nil, err
	}
	if s.Deleted {
		return nil, domain.ErrNotFound
	}
	return []domain.Event{Deleted{By: by.User, At: now}}, nil
}

// Evolve applies one recorded event to s. It never fails.
func Evolve(s State, e domain.Event) State {
	switch e := e.(type) {
	case Created:
		s = State{ID: e.ID, Tenant: e.Tenant, Exists: true, Settings: e.Settings, HasSecret: e.HasSecret}
	case Updated:
		s.Settings, s.HasSecret = e.Settings, e.HasSecret
	case Deleted:
		s.Deleted = true
	}
	return s
}

func equalSettings(a, b Settings) bool {
	return a.Name == b.Name && a.Enabled == b.Enabled && a.Config == b.Config && a.TLPCeiling == b.TLPCeiling &&
		a.Filter.MinThreat == b.Filter.MinThreat && slices.Equal(a.Filter.Types, b.Filter.Types)
}

// Check validates st and returns it normalised: the name trimmed, defaults
// filled in (syslog over TLS with a CEF body; the TLP ceiling "clear"), the
// event types sorted without duplicates.
func Check(st Settings, hasSecret bool) (Settings, error) {
	st.Name = strings.TrimSpace(st.Name)
	switch {
	case st.Name == "":
		return st, ErrNameRequired
	case !utf8.ValidString(st.Name) || utf8.RuneCountInString(st.Name) > MaxNameLen ||
		strings.IndexFunc(st.Name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return st, ErrNameInvalid
	}
	c := &st.Config
	switch c.Kind {
	case KindSyslog:
		if c.URL != "" || c.Index != "" || c.Ack {
			return st, ErrNotApplicable
		}
		host, port, err := net.SplitHostPort(c.Address)
		if err != nil || host == "" || port == "" || strings.ContainsAny(c.Address, " /@") {
			return st, ErrAddressInvalid
		}
		if c.Transport == "" {
			c.Transport = "tls"
		}
		if c.Transport != "tcp" && c.Transport != "tls" {
			return st, ErrTransport
		}
		if c.Body == "" {
			c.Body = "cef"
		}
		if c.Body != "cef" && c.Body != "json" {
			return st, ErrBody
		}
	case KindSplunk, KindElastic:
		if c.Address != "" || c.Transport != "" || c.Body != "" || (c.Kind == KindElastic && c.Ack) {
			return st, ErrNotApplicable
		}
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			return st, ErrURLInvalid
		}
		if !validIndex(c.Index) {
			return st, ErrIndexInvalid
		}
		if c.Kind == KindSplunk && !hasSecret {
			return st, ErrSecretRequired
		}
	default:
		return st, ErrKindInvalid
	}
	if len(st.Filter.Types) > MaxTypes {
		return st, ErrTypesInvalid
	}
	types := make([]string, 0, len(st.Filter.Types))
	for _, t := range st.Filter.Types {
		if !validType(t) {
			return st, ErrTypesInvalid
		}
		types = append(types, t)
	}
	slices.Sort(types)
	st.Filter.Types = slices.Compact(types)
	if len(st.Filter.Types) == 0 {
		st.Filter.Types = nil
	}
	if st.Filter.MinThreat != "" && !slices.Contains(ThreatClasses, st.Filter.MinThreat) {
		return st, ErrThreatInvalid
	}
	if st.TLPCeiling == "" {
		st.TLPCeiling = "clear"
	}
	if !slices.Contains(TLPMarkings, st.TLPCeiling) {
		return st, ErrTLPInvalid
	}
	return st, nil
}

// CheckSecret validates a secret: 1 to MaxSecret printable ASCII characters.
func CheckSecret(secret string) error {
	if secret == "" || len(secret) > MaxSecret {
		return ErrSecretInvalid
	}
	for i := 0; i < len(secret); i++ {
		if secret[i] < 0x21 || secret[i] > 0x7e {
			return ErrSecretInvalid
		}
	}
	return nil
}

func validIndex(s string) bool {
	if len(s) > MaxIndexLen {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// validType accepts "stream.event_name" and "stream.*".
func validType(t string) bool {
	stream, name, ok := strings.Cut(t, ".")
	if !ok || len(t) > MaxTypeLen || stream == "" || name == "" {
		return false
	}
	if name == "*" {
		name = "x"
	}
	for _, r := range stream + name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// mayManage reports whether by administers the SIEM destinations of tenant:
// an administrator of that tenant. Another tenant answers ErrNotFound.
func mayManage(by users.Actor, tenant domain.TenantID) error {
	switch {
	case by.Tenant != tenant:
		return domain.ErrNotFound
	case by.Role != users.RoleAdmin:
		return ErrNotAllowed
	}
	return nil
}
