// Package hosts decides what may happen to a host: a machine of one tenant that
// analysts register by hand and the Velociraptor sync discovers, with its names,
// addresses, operating system, labels, Velociraptor client id, when it was seen,
// free-form metadata and its current threat score.
//
// A host's stream lives in the host's tenant with the host id as the stream id.
// Uniqueness within a tenant (of the Velociraptor client id, and of the
// hostname under HostnameKey if wanted) is enforced by the command handler's
// uniqueness table, not here: a decision only sees one host's history. The sync
// looks a known host up by its client id and calls Update, SetLabels and
// RecordSeen for it, and Discover for a host it has not seen before. Every
// event after the first records its Source, so a host's history says which
// facts came from an analyst and which from Velociraptor.
//
// A host's network quarantine (quarantine.go) is recorded on its stream too:
// the request names the Velociraptor collection that performs it, and the
// command handler records the collection's outcome here when it ends.
//
// Package hosts is pure: no I/O, no clock (time comes in as an argument), and it
// imports nothing of ours but package domain.
package hosts

import (
	"bytes"
	"encoding/json"
	"math/big"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"velocicompanion/domain"
)

// Wire names of the host events.
//
// WARNING: these strings are stored with every event and name it on Kafka and
// in every projection. Never rename or reuse one; the set only grows.
const (
	EventRegistered    = "host.registered"
	EventDiscovered    = "host.discovered"
	EventUpdated       = "host.updated"
	EventLabelsChanged = "host.labels_changed"
	EventSeen          = "host.seen"
	EventScoreChanged  = "host.score_changed"
	EventDeleted       = "host.deleted"
)

// Limits on the fields of a host. Lengths of names and addresses are in bytes
// (they are ASCII); lengths of free text are in Unicode code points.
const (
	MaxHostnameLen   = 253
	MaxIPs           = 64
	MaxOSLen         = 128
	MaxOSVersionLen  = 128
	MaxLabels        = 64
	MaxLabelLen      = 64
	MaxMetadataBytes = 64 << 10 // of the canonical (compact) encoding
	MaxReasonLen     = 500
	MaxScore         = 100
	// MaxClockSkew is how far in the future of now a reported sighting may
	// lie; a host with a wrong clock must not pin its last-seen time ahead.
	MaxClockSkew = 5 * time.Minute
)

// maxDNSLabelLen is the longest label of a host name (RFC 1035).
const maxDNSLabelLen = 63

// ID identifies a host within its tenant; it is the host's stream id.
type ID string

// Source says who supplied a fact about a host.
//
// WARNING: source values are stored in events; never rename one.
type Source string

// The sources. The set only grows.
const (
	// SourceAnalyst is a person working through the API.
	SourceAnalyst Source = "analyst"
	// SourceVelociraptor is the Velociraptor sync.
	SourceVelociraptor Source = "velociraptor"
)

// Valid reports whether s is one of the defined sources.
func (s Source) Valid() bool { return s == SourceAnalyst || s == SourceVelociraptor }

// Class is the band a host's threat score falls in. Which score maps to which
// class is the scoring policy's decision (package scoring), not this package's:
// a ScoreChanged records both as the policy computed them.
//
// WARNING: class values are stored in events; never rename one.
type Class string

// The classes, from least to most alarming.
const (
	ClassBenign   Class = "benign"
	ClassLow      Class = "low"
	ClassMedium   Class = "medium"
	ClassHigh     Class = "high"
	ClassCritical Class = "critical"
)

// Valid reports whether c is one of the defined classes.
func (c Class) Valid() bool {
	switch c {
	case ClassBenign, ClassLow, ClassMedium, ClassHigh, ClassCritical:
		return true
	}
	return false
}

// Profile describes a host: what an analyst or the sync says it is. In events
// every field holds its normalised form (see the Check and Normalize
// functions); decisions accept raw input and normalise it.
type Profile struct {
	// Hostname is the host's name as the host reports it, case preserved.
	// Compare hostnames with HostnameKey.
	Hostname string `json:"hostname"`
	// FQDN is the fully qualified domain name, case preserved; may be empty.
	FQDN string `json:"fqdn,omitempty"`
	// IPs holds the host's addresses in canonical form (net/netip), IPv4
	// before IPv6, sorted and without duplicates.
	IPs       []string `json:"ips,omitempty"`
	OS        string   `json:"os,omitempty"`
	OSVersion string   `json:"os_version,omitempty"`
	// Labels are lower-case, sorted and without duplicates.
	Labels []string `json:"labels,omitempty"`
	// ClientID is the Velociraptor client id, "C." and 16 lower-case
	// hexadecimal digits; may be empty.
	ClientID string `json:"client_id,omitempty"`
	// Metadata is a JSON object in canonical form, or nil for none.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// Registered records that an analyst registered a host by hand. Source is
// always SourceAnalyst.
type Registered struct {
	ID ID `json:"id"`
	Profile
	Source Source        `json:"source"`
	By     domain.UserID `json:"by"`
}

// Discovered records that a sync (Velociraptor) found a host it did not know,
// with when the host was first and last seen as the sync reports it.
type Discovered struct {
	ID ID `json:"id"`
	Profile
	Source    Source        `json:"source"`
	FirstSeen time.Time     `json:"first_seen,omitzero"`
	LastSeen  time.Time     `json:"last_seen,omitzero"`
	By        domain.UserID `json:"by"`
}

// Updated records the fields of a host's profile that changed, with their new
// values; a nil field did not change. Labels change through LabelsChanged.
// Cleared IPs are an empty (non-nil) list and cleared metadata is {}, so that
// a cleared field survives the JSON round trip.
type Updated struct {
	Hostname  *string         `json:"hostname,omitempty"`
	FQDN      *string         `json:"fqdn,omitempty"`
	IPs       *[]string       `json:"ips,omitempty"`
	OS        *string         `json:"os,omitempty"`
	OSVersion *string         `json:"os_version,omitempty"`
	ClientID  *string         `json:"client_id,omitempty"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
	Source    Source          `json:"source"`
	By        domain.UserID   `json:"by"`
}

// LabelsChanged records a host's new labels (the whole set) and which were
// added and removed to get there.
type LabelsChanged struct {
	Labels  []string      `json:"labels"`
	Added   []string      `json:"added,omitempty"`
	Removed []string      `json:"removed,omitempty"`
	Source  Source        `json:"source"`
	By      domain.UserID `json:"by"`
}

// Seen records that a host was seen at At. It moves the host's last-seen time
// forward, or its first-seen time back.
type Seen struct {
	At     time.Time     `json:"at"`
	Source Source        `json:"source"`
	By     domain.UserID `json:"by"`
}

// ScoreChanged records a host's new threat score (0 to MaxScore) and class,
// as the scoring policy computed them, and optionally why.
type ScoreChanged struct {
	Score  int           `json:"score"`
	Class  Class         `json:"class"`
	Reason string        `json:"reason,omitempty"`
	By     domain.UserID `json:"by"`
}

// Deleted records that an analyst deleted a host. Deletion is soft and final:
// the history is kept, but the host can no longer be changed and the API
// treats it as not found. The handler frees its client id and hostname.
type Deleted struct {
	By domain.UserID `json:"by"`
}

// EventName returns the durable wire name of Registered.
func (Registered) EventName() string { return EventRegistered } // WARNING: stored; never rename.

// EventName returns the durable wire name of Discovered.
func (Discovered) EventName() string { return EventDiscovered } // WARNING: stored; never rename.

// EventName returns the durable wire name of Updated.
func (Updated) EventName() string { return EventUpdated } // WARNING: stored; never rename.

// EventName returns the durable wire name of LabelsChanged.
func (LabelsChanged) EventName() string { return EventLabelsChanged } // WARNING: stored; never rename.

// EventName returns the durable wire name of Seen.
func (Seen) EventName() string { return EventSeen } // WARNING: stored; never rename.

// EventName returns the durable wire name of ScoreChanged.
func (ScoreChanged) EventName() string { return EventScoreChanged } // WARNING: stored; never rename.

// EventName returns the durable wire name of Deleted.
func (Deleted) EventName() string { return EventDeleted } // WARNING: stored; never rename.

// State is what decisions about one host need; Evolve rebuilds it.
type State struct {
	ID      ID
	Exists  bool
	Deleted bool
	// Origin is the source that registered or discovered the host.
	Origin Source
	Profile
	// FirstSeen and LastSeen are zero until the host was seen.
	FirstSeen time.Time
	LastSeen  time.Time
	// Score and Class are zero until the host was scored.
	Score int
	Class Class
	// Quarantine is the host's network isolation; zero until one was asked for.
	Quarantine Quarantine
}

// Errors returned by the decisions, besides domain.ErrNotFound, which answers
// for a host that does not exist or was deleted. Errors about one value of a
// list name it in their message; they still match these sentinels with
// errors.Is.
var (
	ErrExists             = domain.Conflict("host_exists", "the host already exists")
	ErrIDRequired         = domain.Invalid("host_id_required", "host id must not be empty")
	ErrHostnameRequired   = domain.Invalid("hostname_required", "hostname must not be empty")
	ErrHostnameTooLong    = domain.Invalid("hostname_too_long", "hostname must be at most 253 characters")
	ErrHostnameInvalid    = domain.Invalid("hostname_invalid", "hostname must be dot-separated labels of 1 to 63 letters, digits, hyphens or underscores, not starting or ending with a hyphen, and not an IP address")
	ErrFQDNInvalid        = domain.Invalid("fqdn_invalid", "fqdn must be a host name of at most 253 characters: dot-separated labels of 1 to 63 letters, digits, hyphens or underscores")
	ErrIPInvalid          = domain.Invalid("ip_invalid", "ip addresses must be IPv4 or IPv6 addresses such as 192.0.2.1 or 2001:db8::1")
	ErrTooManyIPs         = domain.Invalid("too_many_ips", "a host has at most 64 ip addresses")
	ErrOSInvalid          = domain.Invalid("os_invalid", "os must be at most 128 printable characters")
	ErrOSVersionInvalid   = domain.Invalid("os_version_invalid", "os version must be at most 128 printable characters")
	ErrClientIDInvalid    = domain.Invalid("client_id_invalid", "Velociraptor client id must be C. followed by 16 hexadecimal digits, such as C.1a2b3c4d5e6f7a8b")
	ErrLabelInvalid       = domain.Invalid("label_invalid", "a label must be 1 to 64 printable characters")
	ErrTooManyLabels      = domain.Invalid("too_many_labels", "a host has at most 64 labels")
	ErrLabelConflict      = domain.Invalid("label_conflict", "a label cannot be both added and removed")
	ErrMetadataInvalid    = domain.Invalid("metadata_invalid", "metadata must be a JSON object of valid UTF-8 text without NUL characters or out-of-range numbers")
	ErrMetadataTooLarge   = domain.Invalid("metadata_too_large", "metadata must be at most 65536 bytes of compact JSON")
	ErrSourceInvalid      = domain.Invalid("source_invalid", "source must be analyst or velociraptor")
	ErrSeenAtRequired     = domain.Invalid("seen_at_required", "the time the host was seen must be given")
	ErrSeenInFuture       = domain.Invalid("seen_in_future", "the time the host was seen must not lie in the future")
	ErrSeenOrder          = domain.Invalid("seen_order", "first seen must not be after last seen")
	ErrScoreInvalid       = domain.Invalid("score_invalid", "score must be an integer from 0 to 100")
	ErrClassInvalid       = domain.Invalid("class_invalid", "class must be one of benign, low, medium, high, critical")
	ErrScoreReasonInvalid = domain.Invalid("score_reason_invalid", "score reason must be at most 500 characters of text")
)

// Changes lists the profile fields an update sets; a nil field is left as it
// is. Metadata is left as it is when nil, and removed when it is {} or null.
type Changes struct {
	Hostname  *string
	FQDN      *string
	IPs       *[]string
	OS        *string
	OSVersion *string
	ClientID  *string
	Metadata  json.RawMessage
}

// Discovery is what a sync reports about a host it found.
type Discovery struct {
	ID ID
	Profile
	// Source is the sync; SourceVelociraptor when empty. It may not be
	// SourceAnalyst: an analyst registers.
	Source Source
	// FirstSeen and LastSeen are optional; when only one is given, the other
	// takes its value.
	FirstSeen time.Time
	LastSeen  time.Time
}

// Register decides whether an analyst may register the host id with profile p
// in the empty stream s. The profile is normalised before it is recorded; a
// hostname is required.
func Register(s State, id ID, p Profile, by domain.UserID) ([]domain.Event, error) {
	if s.Exists {
		return nil, ErrExists
	}
	if strings.TrimSpace(string(id)) == "" {
		return nil, ErrIDRequired
	}
	p, err := NormalizeProfile(p)
	if err != nil {
		return nil, err
	}
	return []domain.Event{Registered{ID: id, Profile: p, Source: SourceAnalyst, By: by}}, nil
}

// Discover decides whether a sync may record the host d in the empty stream s
// at now. A host the sync already knows is changed with Update, SetLabels and
// RecordSeen instead.
func Discover(s State, d Discovery, now time.Time, by domain.UserID) ([]domain.Event, error) {
	if s.Exists {
		return nil, ErrExists
	}
	if strings.TrimSpace(string(d.ID)) == "" {
		return nil, ErrIDRequired
	}
	if d.Source == "" {
		d.Source = SourceVelociraptor
	}
	if !d.Source.Valid() || d.Source == SourceAnalyst {
		return nil, ErrSourceInvalid
	}
	p, err := NormalizeProfile(d.Profile)
	if err != nil {
		return nil, err
	}
	first, last := d.FirstSeen, d.LastSeen
	switch {
	case first.IsZero():
		first = last
	case last.IsZero():
		last = first
	}
	switch {
	case first.After(last):
		return nil, ErrSeenOrder
	case last.After(now.Add(MaxClockSkew)):
		return nil, ErrSeenInFuture
	}
	return []domain.Event{Discovered{
		ID: d.ID, Profile: p, Source: d.Source, FirstSeen: utc(first), LastSeen: utc(last), By: by,
	}}, nil
}

// Update decides whether the host s may take the profile changes ch reported
// by src. Only the fields that really change are recorded; an update that
// changes nothing records nothing. Changing only the letter case of the
// hostname is a change.
func Update(s State, ch Changes, src Source, by domain.UserID) ([]domain.Event, error) {
	if err := live(s, src); err != nil {
		return nil, err
	}
	var e Updated
	changed := false
	if ch.Hostname != nil {
		v, err := CheckHostname(*ch.Hostname)
		if err != nil {
			return nil, err
		}
		if v != s.Hostname {
			e.Hostname, changed = &v, true
		}
	}
	if ch.FQDN != nil {
		v, err := CheckFQDN(*ch.FQDN)
		if err != nil {
			return nil, err
		}
		if v != s.FQDN {
			e.FQDN, changed = &v, true
		}
	}
	if ch.IPs != nil {
		v, err := NormalizeIPs(*ch.IPs)
		if err != nil {
			return nil, err
		}
		if !slices.Equal(v, s.IPs) {
			if v == nil {
				v = []string{}
			}
			e.IPs, changed = &v, true
		}
	}
	if ch.OS != nil {
		v, err := checkText(*ch.OS, MaxOSLen, ErrOSInvalid)
		if err != nil {
			return nil, err
		}
		if v != s.OS {
			e.OS, changed = &v, true
		}
	}
	if ch.OSVersion != nil {
		v, err := checkText(*ch.OSVersion, MaxOSVersionLen, ErrOSVersionInvalid)
		if err != nil {
			return nil, err
		}
		if v != s.OSVersion {
			e.OSVersion, changed = &v, true
		}
	}
	if ch.ClientID != nil {
		v, err := CheckClientID(*ch.ClientID)
		if err != nil {
			return nil, err
		}
		if v != s.ClientID {
			e.ClientID, changed = &v, true
		}
	}
	if ch.Metadata != nil {
		v, err := CheckMetadata(ch.Metadata)
		if err != nil {
			return nil, err
		}
		if !SameMetadata(v, s.Metadata) {
			if v == nil {
				v = json.RawMessage(`{}`)
			}
			e.Metadata, changed = v, true
		}
	}
	if !changed {
		return nil, nil
	}
	e.Source, e.By = src, by
	return []domain.Event{e}, nil
}

// SetLabels decides whether the host s may carry exactly labels, as src says.
// Setting the labels it already has records nothing.
func SetLabels(s State, labels []string, src Source, by domain.UserID) ([]domain.Event, error) {
	if err := live(s, src); err != nil {
		return nil, err
	}
	next, err := NormalizeLabels(labels)
	if err != nil {
		return nil, err
	}
	return labelsChanged(s, next, src, by), nil
}

// ChangeLabels decides whether the host s may gain the labels add and lose the
// labels remove, as src says. Adding a label it has or removing one it lacks
// is not an error; a change that changes nothing records nothing.
func ChangeLabels(s State, add, remove []string, src Source, by domain.UserID) ([]domain.Event, error) {
	if err := live(s, src); err != nil {
		return nil, err
	}
	add, err := normalizeLabelList(add)
	if err != nil {
		return nil, err
	}
	remove, err = normalizeLabelList(remove)
	if err != nil {
		return nil, err
	}
	for _, l := range add {
		if _, found := slices.BinarySearch(remove, l); found {
			return nil, ErrLabelConflict
		}
	}
	var next []string
	for _, l := range union(s.Labels, add) {
		if _, found := slices.BinarySearch(remove, l); !found {
			next = append(next, l)
		}
	}
	if len(next) > MaxLabels {
		return nil, ErrTooManyLabels
	}
	return labelsChanged(s, next, src, by), nil
}

func labelsChanged(s State, next []string, src Source, by domain.UserID) []domain.Event {
	added, removed := diff(s.Labels, next)
	if added == nil && removed == nil {
		return nil
	}
	return []domain.Event{LabelsChanged{Labels: next, Added: added, Removed: removed, Source: src, By: by}}
}

// RecordSeen decides whether src seeing the host s at at, reported at now, is
// news: it is when at lies after the last-seen time or before the first-seen
// time. Last seen only ever moves forward; a sighting in between records
// nothing. at may lie at most MaxClockSkew after now.
func RecordSeen(s State, at, now time.Time, src Source, by domain.UserID) ([]domain.Event, error) {
	if err := live(s, src); err != nil {
		return nil, err
	}
	switch {
	case at.IsZero():
		return nil, ErrSeenAtRequired
	case at.After(now.Add(MaxClockSkew)):
		return nil, ErrSeenInFuture
	}
	if !s.FirstSeen.IsZero() && !at.Before(s.FirstSeen) && !at.After(s.LastSeen) {
		return nil, nil
	}
	return []domain.Event{Seen{At: utc(at), Source: src, By: by}}, nil
}

// ChangeScore decides whether the host s may take the threat score (0 to
// MaxScore) and class the scoring policy computed, with an optional reason.
// The same score and class again record nothing, whatever the reason.
func ChangeScore(s State, score int, class Class, reason string, by domain.UserID) ([]domain.Event, error) {
	if !s.Exists || s.Deleted {
		return nil, domain.ErrNotFound
	}
	if score < 0 || score > MaxScore {
		return nil, ErrScoreInvalid
	}
	if !class.Valid() {
		return nil, ErrClassInvalid
	}
	reason = strings.TrimSpace(reason)
	if utf8.RuneCountInString(reason) > MaxReasonLen || !utf8.ValidString(reason) || strings.IndexFunc(reason, notText) >= 0 {
		return nil, ErrScoreReasonInvalid
	}
	if score == s.Score && class == s.Class {
		return nil, nil
	}
	return []domain.Event{ScoreChanged{Score: score, Class: class, Reason: reason, By: by}}, nil
}

// Delete decides whether the host s may be deleted. Deleting a deleted host
// records nothing.
func Delete(s State, by domain.UserID) ([]domain.Event, error) {
	switch {
	case !s.Exists:
		return nil, domain.ErrNotFound
	case s.Deleted:
		return nil, nil
	}
	return []domain.Event{Deleted{By: by}}, nil
}

// Evolve applies one recorded event to s. It never fails; events of other
// aggregates leave s unchanged.
func Evolve(s State, e domain.Event) State {
	switch e := e.(type) {
	case Registered:
		s = State{ID: e.ID, Exists: true, Origin: e.Source, Profile: e.Profile.clone()}
	case Discovered:
		s = State{ID: e.ID, Exists: true, Origin: e.Source, Profile: e.Profile.clone(),
			FirstSeen: e.FirstSeen, LastSeen: e.LastSeen}
	case Updated:
		if e.Hostname != nil {
			s.Hostname = *e.Hostname
		}
		if e.FQDN != nil {
			s.FQDN = *e.FQDN
		}
		if e.IPs != nil {
			s.IPs = nilIfEmpty(slices.Clone(*e.IPs))
		}
		if e.OS != nil {
			s.OS = *e.OS
		}
		if e.OSVersion != nil {
			s.OSVersion = *e.OSVersion
		}
		if e.ClientID != nil {
			s.ClientID = *e.ClientID
		}
		if e.Metadata != nil {
			s.Metadata = nil
			if !isEmptyObject(e.Metadata) {
				s.Metadata = slices.Clone(e.Metadata)
			}
		}
	case LabelsChanged:
		s.Labels = nilIfEmpty(slices.Clone(e.Labels))
	case Seen:
		if s.FirstSeen.IsZero() || e.At.Before(s.FirstSeen) {
			s.FirstSeen = e.At
		}
		if e.At.After(s.LastSeen) {
			s.LastSeen = e.At
		}
	case ScoreChanged:
		s.Score, s.Class = e.Score, e.Class
	case Deleted:
		s.Deleted = true
	case QuarantineRequested, Quarantined, QuarantineFailed, ReleaseRequested, Released:
		s.Quarantine = evolveQuarantine(s.Quarantine, e)
	}
	return s
}

// live reports whether s may be changed by src.
func live(s State, src Source) error {
	if !s.Exists || s.Deleted {
		return domain.ErrNotFound
	}
	if !src.Valid() {
		return ErrSourceInvalid
	}
	return nil
}

// NormalizeProfile returns p with every field checked and normalised as the
// Check and Normalize functions of this package say. The hostname is required.
func NormalizeProfile(p Profile) (Profile, error) {
	var err error
	if p.Hostname, err = CheckHostname(p.Hostname); err != nil {
		return Profile{}, err
	}
	if p.FQDN, err = CheckFQDN(p.FQDN); err != nil {
		return Profile{}, err
	}
	if p.IPs, err = NormalizeIPs(p.IPs); err != nil {
		return Profile{}, err
	}
	if p.OS, err = checkText(p.OS, MaxOSLen, ErrOSInvalid); err != nil {
		return Profile{}, err
	}
	if p.OSVersion, err = checkText(p.OSVersion, MaxOSVersionLen, ErrOSVersionInvalid); err != nil {
		return Profile{}, err
	}
	if p.Labels, err = NormalizeLabels(p.Labels); err != nil {
		return Profile{}, err
	}
	if p.ClientID, err = CheckClientID(p.ClientID); err != nil {
		return Profile{}, err
	}
	if p.Metadata, err = CheckMetadata(p.Metadata); err != nil {
		return Profile{}, err
	}
	return p, nil
}

func (p Profile) clone() Profile {
	p.IPs = slices.Clone(p.IPs)
	p.Labels = slices.Clone(p.Labels)
	p.Metadata = slices.Clone(p.Metadata)
	return p
}

// CheckHostname returns hostname without surrounding white space and without
// one trailing dot if it is a valid host name: at most MaxHostnameLen bytes of
// dot-separated labels, each 1 to 63 ASCII letters, digits, hyphens or
// underscores and not starting or ending with a hyphen (RFC 1123, with the
// underscore that Windows names carry), and not an IP address. The letter case
// is kept; compare hostnames with HostnameKey.
func CheckHostname(hostname string) (string, error) {
	hostname = strings.TrimSuffix(strings.TrimSpace(hostname), ".")
	switch {
	case hostname == "":
		return "", ErrHostnameRequired
	case len(hostname) > MaxHostnameLen:
		return "", ErrHostnameTooLong
	case !isHostName(hostname):
		return "", ErrHostnameInvalid
	}
	return hostname, nil
}

// CheckFQDN returns fqdn normalised as CheckHostname does if it is empty or a
// valid host name.
func CheckFQDN(fqdn string) (string, error) {
	fqdn = strings.TrimSuffix(strings.TrimSpace(fqdn), ".")
	if fqdn == "" {
		return "", nil
	}
	if len(fqdn) > MaxHostnameLen || !isHostName(fqdn) {
		return "", ErrFQDNInvalid
	}
	return fqdn, nil
}

// HostnameKey returns the form under which hostnames are compared and looked
// up: "WS-0042" and "ws-0042" name the same host.
func HostnameKey(hostname string) string { return strings.ToLower(hostname) }

// isHostName reports whether name is dot-separated host-name labels and does
// not read as an IP address.
func isHostName(name string) bool {
	if _, err := netip.ParseAddr(name); err == nil {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) == 0 || len(label) > maxDNSLabelLen || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			switch c := label[i]; {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}

// NormalizeIPs returns the addresses in ips in canonical form: parsed with
// net/netip, IPv4-mapped IPv6 addresses unmapped to IPv4, zones dropped (they
// only mean something on the host itself), sorted with IPv4 first, and without
// duplicates. It returns nil for no addresses, and an error matching
// ErrIPInvalid that names the first bad value.
func NormalizeIPs(ips []string) ([]string, error) {
	addrs := make([]netip.Addr, 0, len(ips))
	for _, raw := range ips {
		a, err := netip.ParseAddr(strings.TrimSpace(raw))
		if err != nil {
			return nil, domain.Invalid(ErrIPInvalid.Code, "%q is not an IP address; give IPv4 or IPv6 addresses such as 192.0.2.1 or 2001:db8::1", raw)
		}
		addrs = append(addrs, a.Unmap().WithZone(""))
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	if len(addrs) > MaxIPs {
		return nil, ErrTooManyIPs
	}
	if len(addrs) == 0 {
		return nil, nil
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out, nil
}

// CheckClientID returns id without surrounding white space and with its hex
// digits in lower case if it is empty or a Velociraptor client id: "C." and 16
// hexadecimal digits.
func CheckClientID(id string) (string, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return "", nil
	}
	if len(id) != 18 || !strings.HasPrefix(id, "C.") {
		return "", ErrClientIDInvalid
	}
	for i := 2; i < len(id); i++ {
		switch c := id[i]; {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return "", ErrClientIDInvalid
		}
	}
	return "C." + strings.ToLower(id[2:]), nil
}

// NormalizeLabels returns labels trimmed, in lower case, sorted and without
// duplicates, or nil for none. Each label is 1 to MaxLabelLen printable
// characters, and there are at most MaxLabels.
func NormalizeLabels(labels []string) ([]string, error) {
	out, err := normalizeLabelList(labels)
	if err != nil {
		return nil, err
	}
	if len(out) > MaxLabels {
		return nil, ErrTooManyLabels
	}
	return out, nil
}

// normalizeLabelList is NormalizeLabels without the limit on their number.
func normalizeLabelList(labels []string) ([]string, error) {
	return domain.NormalizeWords(labels, MaxLabelLen, ErrLabelInvalid.Code, "label")
}

// CheckMetadata returns raw in canonical form if it is a JSON object: compact,
// with object keys sorted and duplicates dropped (the last one wins, as when
// decoding), numbers as written, and strings escaped as encoding/json escapes
// them. It returns nil for empty input, null and {}: no metadata. The object
// must be valid UTF-8, hold no NUL character (PostgreSQL's jsonb cannot store
// one) and no number beyond the range of a float64, and its canonical form may
// be at most MaxMetadataBytes long.
//
// Stored events come back from jsonb with its own key order and spacing, so
// compare metadata with SameMetadata, never byte by byte.
func CheckMetadata(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' || !utf8.Valid(raw) {
		return nil, ErrMetadataInvalid
	}
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, ErrMetadataInvalid
	}
	obj, ok := v.(map[string]any)
	if !ok || !storable(obj) {
		return nil, ErrMetadataInvalid
	}
	if len(obj) == 0 {
		return nil, nil
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, ErrMetadataInvalid
	}
	if len(out) > MaxMetadataBytes {
		return nil, ErrMetadataTooLarge
	}
	return out, nil
}

// SameMetadata reports whether a and b hold the same JSON value, whatever
// their spacing, key order and number notation (1e2 equals 100). nil, null and
// {} are the same: no metadata.
func SameMetadata(a, b json.RawMessage) bool {
	if isEmptyObject(a) && isEmptyObject(b) {
		return true
	}
	va, err := decodeJSON(a)
	if err != nil {
		return false
	}
	vb, err := decodeJSON(b)
	if err != nil {
		return false
	}
	return sameJSON(va, vb)
}

// isEmptyObject reports whether raw means "no metadata".
func isEmptyObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return true
	}
	if len(raw) < 2 || raw[0] != '{' || raw[len(raw)-1] != '}' {
		return false
	}
	return len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0
}

// decodeJSON decodes exactly one JSON value, keeping numbers as written.
func decodeJSON(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err == nil {
		return nil, ErrMetadataInvalid // trailing data
	}
	return v, nil
}

// storable reports whether v holds no NUL character and no number that
// PostgreSQL's numeric or a float64 reader could not take.
func storable(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.IndexByte(v, 0) < 0
	case json.Number:
		_, err := strconv.ParseFloat(string(v), 64)
		return err == nil
	case []any:
		for _, x := range v {
			if !storable(x) {
				return false
			}
		}
	case map[string]any:
		for k, x := range v {
			if strings.IndexByte(k, 0) >= 0 || !storable(x) {
				return false
			}
		}
	}
	return true
}

// sameJSON reports whether two decoded JSON values are equal, comparing
// numbers by value.
func sameJSON(a, b any) bool {
	switch a := a.(type) {
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		if a == b {
			return true
		}
		ra, oka := new(big.Rat).SetString(string(a))
		rb, okb := new(big.Rat).SetString(string(b))
		return oka && okb && ra.Cmp(rb) == 0
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameJSON(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			vb, ok := b[k]
			if !ok || !sameJSON(va, vb) {
				return false
			}
		}
		return true
	}
	return a == b // string, bool, nil
}

// checkText returns s without surrounding white space if it is at most max
// printable code points; otherwise it returns bad.
func checkText(s string, max int, bad error) (string, error) {
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > max || !utf8.ValidString(s) || strings.IndexFunc(s, notPrintable) >= 0 {
		return "", bad
	}
	return s, nil
}

// union returns the sorted union of the sorted sets a and b.
func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// diff returns what was added to and removed from the sorted set from to make
// the sorted set to.
func diff(from, to []string) (added, removed []string) {
	for _, x := range to {
		if _, found := slices.BinarySearch(from, x); !found {
			added = append(added, x)
		}
	}
	for _, x := range from {
		if _, found := slices.BinarySearch(to, x); !found {
			removed = append(removed, x)
		}
	}
	return added, removed
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// utc returns t in UTC without a monotonic clock reading, or the zero time.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// notPrintable reports whether r is not printable; of the spaces only U+0020
// counts as printable.
func notPrintable(r rune) bool { return !unicode.IsPrint(r) }

// notText reports whether r may not appear in free text.
func notText(r rune) bool { return r != '\n' && r != '\r' && r != '\t' && !unicode.IsPrint(r) }
