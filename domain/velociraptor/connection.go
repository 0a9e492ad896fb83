package velociraptor

import (
	"strings"
	"time"

	"velocicompanion/domain"
	"velocicompanion/domain/users"
)

// Wire names of the connection events.
//
// WARNING: these strings are stored with every event and name it on Kafka and
// in every projection. Never rename or reuse one; the set only grows.
const (
	EventConfigured = "velociraptor.configured"
	EventChecked    = "velociraptor.checked"
	EventRemoved    = "velociraptor.removed"
	// EventCertificateExpiring warns, once per certificate, that the
	// connection's client certificate expires soon.
	EventCertificateExpiring = "velociraptor.certificate_expiring"
)

// Configured records that an administrator gave the tenant a Velociraptor
// connection: the org it works in ("" is the root org) and what identifies the
// api_client identity. The identity's key material is sealed elsewhere.
type Configured struct {
	OrgID string `json:"org_id"`
	Summary
	By domain.UserID `json:"by"`
}

// Checked records the outcome of reaching the server when it differs from
// the last one recorded: now reachable, now failing, or failing differently.
type Checked struct {
	OK    bool      `json:"ok"`
	Error string    `json:"error"`
	At    time.Time `json:"at"`
}

// Removed records that an administrator removed the connection; its key
// material is wiped.
type Removed struct {
	By domain.UserID `json:"by"`
}

// CertificateExpiring records that the connection's client certificate, the
// one with Fingerprint, expires at NotAfter: an administrator should post a
// new api_client configuration before then.
type CertificateExpiring struct {
	Fingerprint string    `json:"fingerprint"`
	NotAfter    time.Time `json:"not_after"`
}

// EventName returns the durable wire name of CertificateExpiring.
func (CertificateExpiring) EventName() string { return EventCertificateExpiring } // WARNING: stored; never rename.

// EventName returns the durable wire name of Configured.
func (Configured) EventName() string { return EventConfigured } // WARNING: stored; never rename.

// EventName returns the durable wire name of Checked.
func (Checked) EventName() string { return EventChecked } // WARNING: stored; never rename.

// EventName returns the durable wire name of Removed.
func (Removed) EventName() string { return EventRemoved } // WARNING: stored; never rename.

// Check is the last recorded outcome of reaching the server.
type Check struct {
	// Known is false until a check was recorded for the current identity.
	Known bool
	OK    bool
	Error string
	At    time.Time
}

// Connection is what decisions about a tenant's connection need;
// EvolveConnection rebuilds it.
type Connection struct {
	Configured bool // configured and not removed since
	OrgID      string
	Summary    Summary
	By         domain.UserID
	Check      Check
	// Warned is the fingerprint of the certificate whose expiry was warned of.
	Warned string
}

// Errors of the connection decisions, besides domain.ErrNotFound for a
// tenant without a connection.
var (
	ErrOrgIDInvalid   = domain.Invalid("org_id_invalid", "org id must be empty (the root org) or a Velociraptor org id: O followed by letters and digits, such as O123ABC")
	ErrSummaryInvalid = domain.Invalid("velociraptor_config_invalid", "the api_client identity lacks its name, address, server name, certificate name, fingerprint or expiry")
	ErrCertExpired    = domain.Invalid("velociraptor_cert_expired", "the api_client certificate has expired; create a new one with velociraptor config api_client")
)

// CheckOrgID returns id normalised if it names a Velociraptor org: "" or
// "root" for the root org (returned as ""), or "O" and 1 to 63 letters and
// digits.
func CheckOrgID(id string) (string, error) {
	id = strings.TrimSpace(id)
	if id == "" || id == "root" {
		return "", nil
	}
	if err := checkPrefixed(id, "O", ErrOrgIDInvalid, isAlnum); err != nil {
		return "", err
	}
	return id, nil
}

// CheckSummary validates the identity summary s at now: every field present,
// the fingerprint 64 lower-case hex digits, the certificate not expired.
func CheckSummary(s Summary, now time.Time) error {
	for _, f := range []string{s.Name, s.Address, s.ServerName, s.CommonName} {
		if strings.TrimSpace(f) == "" || !checkText(f, maxTextField, false) {
			return ErrSummaryInvalid
		}
	}
	if len(s.Fingerprint) != 64 || !allBytes(s.Fingerprint, func(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }) {
		return ErrSummaryInvalid
	}
	switch {
	case s.NotAfter.IsZero():
		return ErrSummaryInvalid
	case !s.NotAfter.After(now):
		return ErrCertExpired
	}
	return nil
}

// Configure decides whether by may give tenant's connection s the org orgID
// and the identity described by sum at now. Configuring exactly what is
// configured records nothing.
func Configure(s Connection, by users.Actor, tenant domain.TenantID, orgID string, sum Summary, now time.Time) ([]domain.Event, error) {
	if err := mayAdmin(by, tenant); err != nil {
		return nil, err
	}
	orgID, err := CheckOrgID(orgID)
	if err != nil {
		return nil, err
	}
	if err := CheckSummary(sum, now); err != nil {
		return nil, err
	}
	sum.NotAfter = sum.NotAfter.UTC()
	if s.Configured && s.OrgID == orgID && sameSummary(s.Summary, sum) {
		return nil, nil
	}
	return []domain.Event{Configured{OrgID: orgID, Summary: sum, By: by.User}}, nil
}

// Remove decides whether by may remove tenant's connection s.
func Remove(s Connection, by users.Actor, tenant domain.TenantID) ([]domain.Event, error) {
	if err := mayAdmin(by, tenant); err != nil {
		return nil, err
	}
	if !s.Configured {
		return nil, domain.ErrNotFound
	}
	return []domain.Event{Removed{By: by.User}}, nil
}

// RecordCheck decides whether reaching the server of s at now, with the
// outcome ok or the error errText, is news: it is when no outcome was
// recorded yet for this identity or when it differs from the last one.
func RecordCheck(s Connection, ok bool, errText string, now time.Time) ([]domain.Event, error) {
	if !s.Configured {
		return nil, domain.ErrNotFound
	}
	if ok {
		errText = ""
	} else {
		errText = CleanError(errText, "the server could not be reached")
	}
	if s.Check.Known && s.Check.OK == ok && s.Check.Error == errText {
		return nil, nil
	}
	return []domain.Event{Checked{OK: ok, Error: errText, At: now.UTC()}}, nil
}

// WarnExpiry decides whether the certificate of s, seen at now, expires
// within the window and was not warned of yet: each certificate is warned
// of once, and a new configuration with a new certificate starts afresh.
func WarnExpiry(s Connection, now time.Time, within time.Duration) ([]domain.Event, error) {
	if !s.Configured {
		return nil, domain.ErrNotFound
	}
	if s.Summary.NotAfter.Sub(now) > within || s.Warned == s.Summary.Fingerprint {
		return nil, nil
	}
	return []domain.Event{CertificateExpiring{Fingerprint: s.Summary.Fingerprint, NotAfter: s.Summary.NotAfter.UTC()}}, nil
}

// EvolveConnection applies one recorded event to s. It never fails.
func EvolveConnection(s Connection, e domain.Event) Connection {
	switch e := e.(type) {
	case Configured:
		s = Connection{Configured: true, OrgID: e.OrgID, Summary: e.Summary, By: e.By}
	case Checked:
		s.Check = Check{Known: true, OK: e.OK, Error: e.Error, At: e.At}
	case CertificateExpiring:
		s.Warned = e.Fingerprint
	case Removed:
		s = Connection{}
	}
	return s
}

func sameSummary(a, b Summary) bool {
	return a.Name == b.Name && a.Address == b.Address && a.ServerName == b.ServerName &&
		a.CommonName == b.CommonName && a.Fingerprint == b.Fingerprint && a.NotAfter.Equal(b.NotAfter)
}
