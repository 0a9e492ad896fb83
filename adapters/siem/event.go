// Package siem forwards a tenant's events to its security information and
// event management systems. Every event is mapped once to a common shape,
// Event, built on the audit log's redacted description of it
// (projections/auditlog Describe and Summarize), and every format — CEF and
// JSON over syslog (RFC 5424 with RFC 6587 octet counting), Splunk HEC,
// Elastic ECS — is a thin rendering of that shape.
//
// Package siem imports domain, eventstore and projections/auditlog. It must
// not import commands or cmd. It never logs or formats a destination's secret.
package siem

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"velocicompanion/eventstore"
	"velocicompanion/projections/auditlog"
)

// ThreatClass grades how much an event matters to a security analyst. A
// destination's filter forwards only events at or above its minimum class.
//
// WARNING: threat class names are stored in destination settings; never
// rename one.
type ThreatClass string

// The threat classes, from least to most severe.
const (
	ThreatInfo     ThreatClass = "info"
	ThreatLow      ThreatClass = "low"
	ThreatMedium   ThreatClass = "medium"
	ThreatHigh     ThreatClass = "high"
	ThreatCritical ThreatClass = "critical"
)

// Level returns 0 (info) to 4 (critical), so that classes can be compared;
// -1 for an invalid value.
func (c ThreatClass) Level() int {
	switch c {
	case ThreatInfo:
		return 0
	case ThreatLow:
		return 1
	case ThreatMedium:
		return 2
	case ThreatHigh:
		return 3
	case ThreatCritical:
		return 4
	}
	return -1
}

// Valid reports whether c is one of the defined classes.
func (c ThreatClass) Valid() bool { return c.Level() >= 0 }

// The OCSF classes (https://schema.ocsf.io) an event may map to; 0 when none
// fits.
const (
	OCSFAuthentication   = 3002 // Identity & Access Management: Authentication
	OCSFAccountChange    = 3001 // Identity & Access Management: Account Change
	OCSFUserAccess       = 3005 // Identity & Access Management: User Access Management
	OCSFEntityManagement = 3004 // Identity & Access Management: Entity Management
	OCSFIncidentFinding  = 2005 // Findings: Incident Finding
	OCSFAPIActivity      = 6003 // Application Activity: API Activity
	OCSFRemediation      = 7001 // Remediation: Remediation Activity (isolating and restoring a host)
)

// Event is the common shape of one event as it leaves for a SIEM: the audit
// log's redacted entry plus its classification. It never carries a secret:
// Details is the audit log's redacted summary of the payload.
type Event struct {
	auditlog.Entry
	// Category is the ECS event.category: "authentication", "iam",
	// "configuration", "host" or "threat".
	Category string
	// Kind is the ECS event.type: "start", "end", "creation", "change",
	// "deletion", "denied", "error", "info".
	Kind string
	// Threat is the event's threat class.
	Threat ThreatClass
	// TLP is the Traffic Light Protocol marking the event carries in its
	// payload ("clear" … "red"); empty when it carries none.
	TLP string
	// OCSFClass is the OCSF class uid, 0 when none fits.
	OCSFClass int
}

// FromEnvelope maps one stored event to its common shape.
func FromEnvelope(env eventstore.Envelope) Event {
	return FromEntry(auditlog.Describe(env))
}

// FromEntry classifies an audit entry.
func FromEntry(e auditlog.Entry) Event {
	ev := Event{Entry: e}
	ev.Time = ev.Time.UTC()
	var fields struct {
		Severity string `json:"severity"`
		TLP      string `json:"tlp"`
	}
	// Details is a redacted JSON object; a field of another type is ignored.
	dec := json.NewDecoder(bytes.NewReader(e.Details))
	_ = dec.Decode(&fields)
	ev.TLP = strings.ToLower(strings.TrimPrefix(strings.ToUpper(fields.TLP), "TLP:"))

	verb := e.Action[strings.LastIndexByte(e.Action, '.')+1:]
	ev.Kind = kindOf(e.ResourceType, verb, e.Result)
	ev.Category, ev.OCSFClass = categoryOf(e.ResourceType, verb)

	ev.Threat = ThreatInfo
	switch {
	case strings.HasSuffix(verb, "_reused") || strings.HasSuffix(verb, "_replayed"):
		// A replayed one-time code or refresh token suggests a stolen credential.
		ev.Threat = ThreatHigh
	case e.Result == auditlog.ResultFailure:
		ev.Threat = ThreatMedium
	case ThreatClass(strings.ToLower(fields.Severity)).Valid():
		ev.Threat = ThreatClass(strings.ToLower(fields.Severity))
	case strings.Contains(verb, "role") || strings.Contains(verb, "mfa") || strings.Contains(verb, "totp") ||
		strings.Contains(verb, "password") || strings.Contains(verb, "api_key") || strings.Contains(verb, "disabled"),
		// A host's network isolation, and the credentials that let the
		// tenant run queries on every endpoint.
		isQuarantine(e.ResourceType, verb), e.ResourceType == "velociraptor" && verb != "checked":
		ev.Threat = ThreatLow
	}
	return ev
}

// isQuarantine reports whether verb, of a host, is a step of its network
// quarantine or release.
func isQuarantine(resource, verb string) bool {
	return resource == "host" && (strings.HasPrefix(verb, "quarantine") || strings.HasPrefix(verb, "release"))
}

// failedOperations are the resources whose failures are operations that
// went wrong (a collection, a hunt, a Velociraptor connection check) rather
// than a refused attempt.
var failedOperations = map[string]bool{"collection": true, "hunt": true, "velociraptor": true}

func kindOf(resource, verb, result string) string {
	switch {
	case result == auditlog.ResultFailure && (failedOperations[resource] || isQuarantine(resource, verb)):
		return "error"
	case result == auditlog.ResultFailure:
		return "denied"
	case strings.HasSuffix(verb, "_deleted") || strings.HasSuffix(verb, "_removed") || strings.HasSuffix(verb, "_revoked") ||
		verb == "removed":
		return "deletion"
	case verb == "requested" && (resource == "collection" || resource == "hunt"):
		return "creation" // a new collection or hunt
	case verb == "scheduled":
		return "start"
	case verb == "completed" || verb == "stopped" || verb == "cancelled":
		return "end"
	case verb == "configured" || verb == "quarantined" || verb == "released" || strings.HasSuffix(verb, "_requested"):
		return "change"
	case strings.HasSuffix(verb, "_created") || strings.HasSuffix(verb, "_registered") || strings.HasSuffix(verb, "_added") ||
		strings.HasSuffix(verb, "_opened") || verb == "opened" || verb == "created" || verb == "registered" || verb == "added":
		return "creation"
	case strings.Contains(verb, "logged_in") || strings.Contains(verb, "login") || strings.HasSuffix(verb, "_started"):
		return "start"
	case strings.HasSuffix(verb, "_changed") || strings.HasSuffix(verb, "_updated") || strings.HasSuffix(verb, "_set") ||
		verb == "changed" || verb == "updated":
		return "change"
	}
	return "info"
}

func categoryOf(resource, verb string) (string, int) {
	switch {
	case strings.Contains(verb, "login") || strings.Contains(verb, "logged") || strings.Contains(verb, "session") ||
		strings.Contains(verb, "token") || strings.Contains(verb, "mfa") || strings.Contains(verb, "totp"):
		return "authentication", OCSFAuthentication
	case resource == "user" && strings.Contains(verb, "role"):
		return "iam", OCSFUserAccess
	case resource == "user" || resource == "api_key":
		return "iam", OCSFAccountChange
	case resource == "tenant" || resource == "siem_destination" || resource == "velociraptor":
		return "configuration", OCSFEntityManagement
	case isQuarantine(resource, verb):
		return "host", OCSFRemediation
	case resource == "collection" || resource == "hunt":
		// Queries run on endpoints through the Velociraptor API.
		return "host", OCSFAPIActivity
	case resource == "host":
		return "host", OCSFEntityManagement
	case resource == "case" || resource == "artifact":
		return "threat", OCSFIncidentFinding
	}
	return "configuration", OCSFAPIActivity
}

// Filter decides which events a destination receives.
type Filter struct {
	// Types lists the event names to forward; a name ending in ".*" selects
	// every event of that stream type (e.g. "user.*"). Empty forwards every
	// type.
	Types []string
	// MinThreat is the least threat class forwarded; empty forwards every
	// class.
	MinThreat ThreatClass
	// TLPCeiling is the most restricted marking that may leave: an event
	// marked above it is never forwarded. An event without a marking on a
	// case or artifact stream is treated as TLP:RED, since the marking of the
	// case it belongs to is not known here. Empty means "clear".
	TLPCeiling string
}

// tlpLevel returns 0 (clear) to 4 (red), and 4 for anything unknown: an
// unreadable marking is treated as the most restricted.
func tlpLevel(t string) int {
	switch strings.ToLower(t) {
	case "clear", "white":
		return 0
	case "green":
		return 1
	case "amber":
		return 2
	case "amber+strict":
		return 3
	}
	return 4
}

// Allows reports whether f forwards ev.
func (f Filter) Allows(ev Event) bool {
	if len(f.Types) > 0 && !matchType(f.Types, ev.Action) {
		return false
	}
	if f.MinThreat != "" && ev.Threat.Level() < f.MinThreat.Level() {
		return false
	}
	marking := ev.TLP
	if marking == "" {
		switch ev.ResourceType {
		case "case", "artifact":
			marking = "red"
		default:
			marking = "clear"
		}
	}
	ceiling := f.TLPCeiling
	if ceiling == "" {
		ceiling = "clear"
	}
	return tlpLevel(marking) <= tlpLevel(ceiling)
}

func matchType(types []string, name string) bool {
	for _, t := range types {
		if t == name {
			return true
		}
		if prefix, ok := strings.CutSuffix(t, ".*"); ok && strings.HasPrefix(name, prefix+".") {
			return true
		}
	}
	return false
}

// epochMillis returns t in milliseconds since the Unix epoch.
func epochMillis(t time.Time) int64 { return t.UnixMilli() }
