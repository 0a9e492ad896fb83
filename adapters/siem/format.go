package siem

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Product identifies this system in every format.
type Product struct {
	Vendor  string // CEF Device Vendor, e.g. "VelociCompanion"
	Name    string // CEF Device Product and syslog APP-NAME, e.g. "velocicompanion"
	Version string // CEF Device Version
}

// DefaultProduct is the product every format names unless told otherwise.
var DefaultProduct = Product{Vendor: "VelociCompanion", Name: "velocicompanion", Version: "1"}

// cefSeverity maps a threat class to CEF's 0–10 severity.
func cefSeverity(c ThreatClass) int {
	switch c {
	case ThreatLow:
		return 3
	case ThreatMedium:
		return 5
	case ThreatHigh:
		return 8
	case ThreatCritical:
		return 10
	}
	return 1
}

// cefHeader escapes a CEF header field: a backslash and a pipe are escaped
// with a backslash. Line breaks may not appear in a header and become spaces.
var cefHeader = strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\r\n", " ", "\r", " ", "\n", " ")

// cefValue escapes a CEF extension value: a backslash and an equals sign are
// escaped with a backslash, and line breaks are written as \n and \r. A pipe
// needs no escaping in the extension.
var cefValue = strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\r\n", `\n`, "\n", `\n`, "\r", `\r`)

// CEF renders ev as one ArcSight Common Event Format line (CEF:0), without a
// syslog header:
//
//	CEF:0|Vendor|Product|Version|Signature ID|Name|Severity|Extension
//
// The signature id is the event's name; the extension uses the dictionary's
// keys where one fits (rt, act, outcome, suser, spriv, src, requestClientApplication,
// externalId, cat, msg) and labelled custom strings for the rest.
func CEF(p Product, ev Event) string {
	var b strings.Builder
	b.WriteString("CEF:0|")
	for _, h := range []string{p.Vendor, p.Name, p.Version, ev.Action, title(ev.Action)} {
		b.WriteString(cefHeader.Replace(h))
		b.WriteByte('|')
	}
	b.WriteString(strconv.Itoa(cefSeverity(ev.Threat)))
	b.WriteByte('|')

	first := true
	ext := func(k, v string) {
		if v == "" {
			return
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(cefValue.Replace(v))
	}
	ext("rt", strconv.FormatInt(epochMillis(ev.Time), 10))
	ext("externalId", ev.ID)
	ext("act", ev.Action)
	ext("cat", ev.Category)
	ext("outcome", ev.Result)
	ext("suser", ev.Actor)
	ext("spriv", ev.Role)
	if ip, err := netip.ParseAddr(ev.SourceIP); err == nil {
		if ip.Unmap().Is4() {
			ext("src", ip.Unmap().String())
		} else {
			ext("c6a2", ip.String())
			ext("c6a2Label", "Source IPv6 Address")
		}
	}
	ext("requestClientApplication", ev.UserAgent)
	labelled := func(k, v, label string) {
		if v != "" {
			ext(k, v)
			ext(k+"Label", label)
		}
	}
	labelled("cs1", string(ev.Tenant), "tenant")
	labelled("cs2", ev.ResourceType, "resourceType")
	labelled("cs3", ev.ResourceID, "resourceId")
	labelled("cs4", ev.RequestID, "requestId")
	labelled("cs5", ev.CorrelationID, "correlationId")
	labelled("cs6", ev.TLP, "tlp")
	labelled("cn1", strconv.FormatInt(ev.Position, 10), "position")
	if len(ev.Details) > 0 && string(ev.Details) != "{}" {
		ext("msg", string(ev.Details))
	}
	return b.String()
}

// title turns an event name into a readable one: "user.role_changed" becomes
// "user role changed".
func title(name string) string {
	return strings.NewReplacer(".", " ", "_", " ").Replace(name)
}

// JSON is the JSON rendering of the common shape, the body of a syslog
// message in JSON and of a Splunk HEC event.
type JSON struct {
	ID            string          `json:"id"`
	Time          time.Time       `json:"time"`
	Tenant        string          `json:"tenant"`
	Action        string          `json:"action"`
	Category      string          `json:"category"`
	Type          string          `json:"type"`
	Result        string          `json:"result"`
	Threat        ThreatClass     `json:"threat_class"`
	TLP           string          `json:"tlp,omitempty"`
	OCSFClass     int             `json:"ocsf_class_uid,omitempty"`
	Actor         string          `json:"actor,omitempty"`
	ActorType     string          `json:"actor_type,omitempty"`
	Role          string          `json:"role,omitempty"`
	ResourceType  string          `json:"resource_type"`
	ResourceID    string          `json:"resource_id"`
	SourceIP      string          `json:"source_ip,omitempty"`
	UserAgent     string          `json:"user_agent,omitempty"`
	RequestID     string          `json:"request_id,omitempty"`
	CorrelationID string          `json:"correlation_id,omitempty"`
	Position      int64           `json:"position"`
	Details       json.RawMessage `json:"details,omitempty"`
}

// ToJSON returns the JSON rendering of ev.
func ToJSON(ev Event) JSON {
	j := JSON{
		ID: ev.ID, Time: ev.Time.UTC(), Tenant: string(ev.Tenant), Action: ev.Action, Category: ev.Category,
		Type: ev.Kind, Result: ev.Result, Threat: ev.Threat, TLP: ev.TLP, OCSFClass: ev.OCSFClass,
		Actor: ev.Actor, ActorType: ev.ActorType, Role: ev.Role, ResourceType: ev.ResourceType,
		ResourceID: ev.ResourceID, SourceIP: ev.SourceIP, UserAgent: ev.UserAgent, RequestID: ev.RequestID,
		CorrelationID: ev.CorrelationID, Position: ev.Position,
	}
	if json.Valid(ev.Details) {
		j.Details = ev.Details
	}
	return j
}

// Syslog facilities (RFC 5424 section 6.2.1) a destination may choose.
const (
	FacilityUser     = 1
	FacilityAuthPriv = 10
	FacilityAudit    = 13
	FacilityLocal0   = 16
)

// Body is the format of a syslog message's MSG part.
type Body string

// The syslog bodies.
const (
	BodyCEF  Body = "cef"
	BodyJSON Body = "json"
)

// SyslogHeader is what an RFC 5424 message says about its origin.
type SyslogHeader struct {
	Facility int    // 0–23
	Hostname string // HOSTNAME; "-" when empty
	AppName  string // APP-NAME; "-" when empty
	ProcID   string // PROCID; "-" when empty
	// EnterpriseID is the private enterprise number of the structured data
	// element's SD-ID ("vc@<EnterpriseID>"); 32473, the number RFC 5612
	// reserves for documentation, when empty.
	EnterpriseID string
}

// syslogSeverity maps a threat class to a syslog severity (RFC 5424 table 2).
func syslogSeverity(c ThreatClass) int {
	switch c {
	case ThreatLow:
		return 5 // notice
	case ThreatMedium:
		return 4 // warning
	case ThreatHigh:
		return 3 // error
	case ThreatCritical:
		return 2 // critical
	}
	return 6 // informational
}

// header field limits of RFC 5424 section 6.
const (
	maxHostname = 255
	maxAppName  = 48
	maxProcID   = 128
	maxMsgID    = 32
)

// headerField keeps the printable US-ASCII characters of s (PRINTUSASCII,
// 33–126) up to n of them, or returns the NILVALUE "-" for an empty result.
func headerField(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if c := s[i]; c >= 33 && c <= 126 {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// sdName keeps the characters an SD-NAME may hold: printable US-ASCII except
// '=', ' ', ']' and '"', at most 32.
func sdName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 32; i++ {
		if c := s[i]; c >= 33 && c <= 126 && c != '=' && c != ']' && c != '"' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// sdValue escapes a PARAM-VALUE (RFC 5424 section 6.3.3): '"', '\' and ']'
// are escaped with a backslash.
var sdValue = strings.NewReplacer(`"`, `\"`, `\`, `\\`, `]`, `\]`)

// RFC5424 renders ev as one RFC 5424 syslog message with body as its MSG:
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [vc@PEN …] MSG
//
// PRI combines h.Facility with the severity of the event's threat class,
// MSGID is the event's name, and the structured data element carries the
// tenant, event id, resource and position so that a receiver can route and
// deduplicate without parsing the body. The message has no trailing newline;
// framing is the transport's (see OctetCount).
func RFC5424(h SyslogHeader, body Body, p Product, ev Event) ([]byte, error) {
	facility := h.Facility
	if facility < 0 || facility > 23 {
		facility = FacilityAudit
	}
	pen := h.EnterpriseID
	if pen == "" {
		pen = "32473"
	}
	var msg string
	switch body {
	case BodyJSON:
		raw, err := json.Marshal(ToJSON(ev))
		if err != nil {
			return nil, err
		}
		msg = string(raw)
	default:
		msg = CEF(p, ev)
	}
	msg = strings.ToValidUTF8(msg, "\uFFFD")

	var b strings.Builder
	b.Grow(len(msg) + 256)
	b.WriteByte('<')
	b.WriteString(strconv.Itoa(facility*8 + syslogSeverity(ev.Threat)))
	b.WriteString(">1 ")
	b.WriteString(ev.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
	for _, f := range []string{headerField(h.Hostname, maxHostname), headerField(h.AppName, maxAppName),
		headerField(h.ProcID, maxProcID), headerField(ev.Action, maxMsgID)} {
		b.WriteByte(' ')
		b.WriteString(f)
	}
	b.WriteString(" [")
	b.WriteString(sdName("vc@" + pen))
	for _, kv := range [][2]string{{"tenant", string(ev.Tenant)}, {"event_id", ev.ID},
		{"resource_type", ev.ResourceType}, {"resource_id", ev.ResourceID},
		{"position", strconv.FormatInt(ev.Position, 10)}} {
		if kv[1] == "" {
			continue
		}
		b.WriteByte(' ')
		b.WriteString(kv[0])
		b.WriteString(`="`)
		b.WriteString(sdValue.Replace(strings.ToValidUTF8(kv[1], "\uFFFD")))
		b.WriteByte('"')
	}
	b.WriteString("] ")
	b.WriteString(msg)
	return []byte(b.String()), nil
}

// OctetCount frames one syslog message for a stream transport with RFC 6587
// octet counting: MSG-LEN SP SYSLOG-MSG, the length in octets, in decimal.
func OctetCount(dst, msg []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(msg)), 10)
	dst = append(dst, ' ')
	return append(dst, msg...)
}
