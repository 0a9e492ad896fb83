package hostsearch

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/projections/readmodel"
)

// Host is one row of the read model.
type Host struct {
	ID        hosts.ID
	Tenant    domain.TenantID
	Hostname  string
	FQDN      string
	IPs       []string // canonical, IPv4 first
	OS        string
	OSVersion string
	Labels    []string
	ClientID  string
	Metadata  json.RawMessage // nil for none
	FirstSeen *time.Time      // nil until seen
	LastSeen  *time.Time
	Score     int
	Class     hosts.Class // "" until scored
	Source    hosts.Source
	CreatedAt time.Time
	UpdatedAt time.Time
	Version   int64
	// Quarantine is the host's network isolation; its zero value is a host
	// never quarantined.
	Quarantine Quarantine
}

// Quarantine is where a host's network isolation stands.
type Quarantine struct {
	Status     hosts.QuarantineStatus // hosts.StatusNotQuarantined ("") for never asked
	Collection string                 // the collection of the latest request
	UpdatedAt  *time.Time             // when Status last changed; nil for never
}

// Errors of the query parameters.
var (
	ErrBadSort           = domain.Invalid("invalid_sort", "sort must be one of hostname, fqdn, os, last_seen, first_seen, score, created_at")
	ErrBadOrder          = domain.Invalid("invalid_order", "order must be asc or desc")
	ErrCursorSort        = domain.Invalid("cursor_sort_mismatch", "the cursor belongs to another sort order; start again without a cursor")
	ErrBadIPFilter       = domain.Invalid("invalid_ip_filter", "ip must be an IPv4 or IPv6 address or network, such as 10.0.0.5, 10.0.0.0/8 or 2001:db8::/32")
	ErrBadHostnameFilter = domain.Invalid("invalid_hostname_filter", "a hostname filter is at most 253 characters")
)

// Sort is a sort order: an allow-listed field, ascending or descending. Ties
// are broken by host id in the same direction.
type Sort struct {
	Field string
	Desc  bool
}

// DefaultSort is hostname, ascending.
var DefaultSort = Sort{Field: "hostname"}

// colKind is the SQL type of a sort column.
type colKind int

const (
	kindText colKind = iota
	kindTime
	kindInt
)

type sortColumn struct {
	col  string // a column of host_search; never user input
	kind colKind
}

// sortColumns is the allow-list of sort fields.
var sortColumns = map[string]sortColumn{
	"hostname":   {"hostname_key", kindText},
	"fqdn":       {"fqdn_key", kindText},
	"os":         {"os_key", kindText},
	"last_seen":  {"last_seen", kindTime},
	"first_seen": {"first_seen", kindTime},
	"score":      {"threat_score", kindInt},
	"created_at": {"created_at", kindTime},
}

// ParseSort parses a sort field and an order ("asc" or "desc", any case). An
// empty field is DefaultSort's; an empty order is ascending. "threat_score"
// names the score.
func ParseSort(field, order string) (Sort, error) {
	s := DefaultSort
	if field = strings.ToLower(strings.TrimSpace(field)); field != "" {
		if field == "threat_score" {
			field = "score"
		}
		if _, ok := sortColumns[field]; !ok {
			return Sort{}, ErrBadSort
		}
		s.Field = field
	}
	switch strings.ToLower(strings.TrimSpace(order)) {
	case "", "asc":
	case "desc":
		s.Desc = true
	default:
		return Sort{}, ErrBadOrder
	}
	return s, nil
}

// String returns the sort as "field.asc" or "field.desc"; cursors carry it.
func (s Sort) String() string {
	if s.Desc {
		return s.Field + ".desc"
	}
	return s.Field + ".asc"
}

// ParseIP parses an address ("10.0.0.5", "2001:db8::1") or a network
// ("10.0.0.0/8", "2001:db8::/32"; host bits are ignored) into a prefix; an
// address is a prefix of one address. IPv4-mapped IPv6 forms are taken as
// IPv4, as host addresses are stored.
func ParseIP(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, ErrBadIPFilter
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, ErrBadIPFilter
		}
		a = a.WithZone("")
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			// ::ffff:0:0/95 and wider reach beyond the mapped range.
			return p.Masked(), nil
		}
		p = netip.PrefixFrom(a.Unmap(), bits)
	}
	return p.Masked(), nil
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Filter selects hosts; zero fields select everything.
type Filter struct {
	// Hostname is a case-insensitive substring of the hostname; % and _ are
	// taken literally.
	Hostname string
	// HostnamePrefix is a case-insensitive prefix of the hostname.
	HostnamePrefix string
	// IP selects hosts with an address in the prefix (ParseIP); a prefix of
	// one address matches it exactly.
	IP netip.Prefix
	// OS is the operating system, case-insensitive, exactly.
	OS string
	// Label is one label the host carries (labels are lower case).
	Label string
	// LastSeenBefore and LastSeenAfter bound the last-seen time (exclusive);
	// either excludes hosts never seen.
	LastSeenBefore, LastSeenAfter time.Time
	// ScoreMin, when not nil, is the lowest threat score selected.
	ScoreMin *int
	// Quarantined, when not nil, selects the hosts that are quarantined
	// (status quarantined) or, when false, all the others.
	Quarantined *bool
}

// check refuses filter values that no host could match for being too long.
func (f Filter) check() error {
	if len(f.Hostname) > hosts.MaxHostnameLen || len(f.HostnamePrefix) > hosts.MaxHostnameLen {
		return ErrBadHostnameFilter
	}
	return nil
}

// Query is one page of a filtered, sorted list.
type Query struct {
	Filter
	Sort  Sort
	Limit int
	// Cursor is the decoded cursor of the previous page (readmodel.DecodeCursor).
	Cursor []string
}

const columns = `h.tenant_id, h.host_id, h.hostname, h.fqdn, h.ip_addresses, h.os, h.os_version, h.labels, h.client_id,
	h.metadata, NULLIF(h.first_seen, '-infinity'), NULLIF(h.last_seen, '-infinity'), h.threat_score, h.threat_class,
	h.source, h.created_at, h.updated_at, h.version, h.quarantine_status, h.quarantine_collection, h.quarantine_updated_at`

func scan(row pgx.Row) (Host, error) {
	var h Host
	var tenant, id, class, src, quarantine string
	var meta []byte
	err := row.Scan(&tenant, &id, &h.Hostname, &h.FQDN, &h.IPs, &h.OS, &h.OSVersion, &h.Labels, &h.ClientID,
		&meta, &h.FirstSeen, &h.LastSeen, &h.Score, &class, &src, &h.CreatedAt, &h.UpdatedAt, &h.Version,
		&quarantine, &h.Quarantine.Collection, &h.Quarantine.UpdatedAt)
	h.Tenant, h.ID, h.Class, h.Source = domain.TenantID(tenant), hosts.ID(id), hosts.Class(class), hosts.Source(src)
	h.Quarantine.Status = hosts.QuarantineStatus(quarantine)
	if len(meta) > 0 {
		h.Metadata = meta
	}
	return h, err
}

// Get returns host id of tenant, or domain.ErrNotFound. Deleted hosts are not found.
func Get(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, id hosts.ID) (Host, error) {
	if !isUUID(string(tenant)) || !isUUID(string(id)) {
		return Host{}, domain.ErrNotFound // no host has such an id
	}
	var h Host
	err := readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		var err error
		h, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM host_search h
			WHERE h.tenant_id = $1 AND h.host_id = $2 AND NOT h.deleted`, string(tenant), string(id)))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Host{}, domain.ErrNotFound
	}
	return h, err
}

// List returns one page of tenant's hosts that q selects, in q's order, and the
// cursor of the next page ("" on the last page). A cursor made for another
// sort is ErrCursorSort.
func List(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, q Query) ([]Host, string, error) {
	sql, args, err := listSQL(tenant, q)
	if err != nil || sql == "" || !isUUID(string(tenant)) {
		return nil, "", err
	}
	var out []Host
	err = readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		if err := steer(ctx, tx, q.Filter); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Host, error) { return scan(r) })
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if len(out) <= q.Limit {
		return out, "", nil
	}
	out = out[:q.Limit]
	return out, Cursor(q.Sort, out[len(out)-1]), nil
}

// Count returns how many of tenant's hosts f selects.
func Count(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, f Filter) (int64, error) {
	if err := f.check(); err != nil {
		return 0, err
	}
	var b builder
	b.args = []any{string(tenant)}
	if !b.filter(f) || !isUUID(string(tenant)) {
		return 0, nil
	}
	var n int64
	err := readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		if err := steer(ctx, tx, f); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM host_search h WHERE `+b.where(), b.args...).Scan(&n)
	})
	return n, err
}

// steer keeps the planner off a sequential scan when f has a hostname
// substring. It cannot estimate how many hosts LIKE '%x%' selects; when it
// guesses "few", it reads every row of the table and sorts the matches, which
// costs about three times a walk of the tenant's entries of a sort index, where
// the filter is tested on the index entries alone.
func steer(ctx context.Context, tx pgx.Tx, f Filter) error {
	if f.Hostname == "" {
		return nil
	}
	_, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`)
	return err
}

// Cursor returns the cursor of the page after h in sort order s.
func Cursor(s Sort, h Host) string {
	var v string
	switch s.Field {
	case "hostname":
		v = hosts.HostnameKey(h.Hostname)
	case "fqdn":
		v = strings.ToLower(h.FQDN)
	case "os":
		v = strings.ToLower(h.OS)
	case "last_seen":
		v = timeKey(h.LastSeen)
	case "first_seen":
		v = timeKey(h.FirstSeen)
	case "score":
		v = strconv.Itoa(h.Score)
	case "created_at":
		v = timeKey(&h.CreatedAt)
	}
	return readmodel.EncodeCursor(s.String(), v, string(h.ID))
}

// timeKey renders a sort time as the cursor carries it.
func timeKey(t *time.Time) string {
	if t == nil {
		return "-infinity"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// listSQL builds the page query of q. It returns "" when q cannot select
// anything (a hostname prefix no host name can start with).
func listSQL(tenant domain.TenantID, q Query) (string, []any, error) {
	if q.Sort.Field == "" {
		q.Sort = DefaultSort
	}
	sc, ok := sortColumns[q.Sort.Field]
	if !ok {
		return "", nil, ErrBadSort
	}
	if err := q.Filter.check(); err != nil {
		return "", nil, err
	}
	var b builder
	b.args = []any{string(tenant)}
	if !b.filter(q.Filter) {
		return "", nil, nil
	}
	col := "h." + sc.col
	dir, cmp := "ASC", ">"
	if q.Sort.Desc {
		dir, cmp = "DESC", "<"
	}
	if q.Cursor != nil {
		if len(q.Cursor) != 3 {
			return "", nil, readmodel.ErrBadCursor
		}
		if q.Cursor[0] != q.Sort.String() {
			return "", nil, ErrCursorSort
		}
		v, err := cursorValue(sc.kind, q.Cursor[1])
		if err != nil {
			return "", nil, err
		}
		if !isUUID(q.Cursor[2]) {
			return "", nil, readmodel.ErrBadCursor
		}
		b.and("(" + col + ", h.host_id) " + cmp + " (" + b.arg(v) + castOf(sc.kind) + ", " + b.arg(q.Cursor[2]) + ")")
	}
	// The page's keys come from one sort index alone when the filters only
	// need the columns it carries (an index-only scan); then only the page's
	// rows are read from the table.
	order := func(k, id string) string { return ` ORDER BY ` + k + ` ` + dir + `, ` + id + ` ` + dir }
	page := `SELECT h.host_id, ` + col + ` AS sort_key FROM host_search h WHERE ` + b.where() +
		order(col, "h.host_id") + ` LIMIT ` + b.arg(max(q.Limit, 1)+1)
	return `SELECT ` + columns + ` FROM (` + page + `) p JOIN host_search h ON h.tenant_id = $1 AND h.host_id = p.host_id` +
		order("p.sort_key", "p.host_id"), b.args, nil
}

func castOf(k colKind) string {
	switch k {
	case kindTime:
		return "::timestamptz"
	case kindInt:
		return "::integer"
	}
	return ""
}

// cursorValue checks a cursor's sort value and returns it as a query argument.
func cursorValue(k colKind, v string) (any, error) {
	switch k {
	case kindTime:
		if v == "-infinity" {
			return v, nil
		}
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			return nil, readmodel.ErrBadCursor
		}
	case kindInt:
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, readmodel.ErrBadCursor
		}
		return n, nil
	}
	return v, nil
}

// builder collects the conditions of a query and their arguments; $1 is the
// tenant. Only fixed SQL text is ever added; values go into args.
type builder struct {
	conds []string
	args  []any
}

func (b *builder) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + itoa(len(b.args))
}

func (b *builder) and(cond string) { b.conds = append(b.conds, cond) }

func (b *builder) where() string {
	return strings.Join(append([]string{"h.tenant_id = $1", "NOT h.deleted"}, b.conds...), " AND ")
}

// filter adds f's conditions. It returns false when f can select nothing.
func (b *builder) filter(f Filter) bool {
	if f.Hostname != "" {
		b.and("h.hostname_key LIKE " + b.arg("%"+escapeLike(strings.ToLower(f.Hostname))+"%"))
	}
	if f.HostnamePrefix != "" {
		lo, hi, ok := prefixRange(strings.ToLower(f.HostnamePrefix))
		if !ok {
			return false
		}
		b.and("h.hostname_key >= " + b.arg(lo) + " AND h.hostname_key < " + b.arg(hi))
	}
	if f.IP.IsValid() {
		var ip string
		if f.IP.IsSingleIP() {
			ip = "i.ip = " + b.arg(f.IP.Addr().String()) + "::inet"
		} else {
			ip = "i.ip >= " + b.arg(f.IP.Addr().String()) + "::inet AND i.ip <= " + b.arg(lastAddr(f.IP).String()) + "::inet"
		}
		b.and("EXISTS (SELECT 1 FROM host_search_ip i WHERE i.tenant_id = $1 AND i.host_id = h.host_id AND " + ip + ")")
	}
	if f.OS != "" {
		b.and("h.os_key = " + b.arg(strings.ToLower(strings.TrimSpace(f.OS))))
	}
	if f.Label != "" {
		b.and("EXISTS (SELECT 1 FROM host_search_label l WHERE l.tenant_id = $1 AND l.host_id = h.host_id AND l.label = " +
			b.arg(strings.ToLower(strings.TrimSpace(f.Label))) + ")")
	}
	if !f.LastSeenBefore.IsZero() {
		b.and("h.last_seen < " + b.arg(f.LastSeenBefore) + " AND h.last_seen > '-infinity'")
	}
	if !f.LastSeenAfter.IsZero() {
		b.and("h.last_seen > " + b.arg(f.LastSeenAfter))
	}
	if f.ScoreMin != nil {
		b.and("h.threat_score >= " + b.arg(*f.ScoreMin))
	}
	if f.Quarantined != nil {
		op := " <> "
		if *f.Quarantined {
			op = " = "
		}
		b.and("h.quarantine_status" + op + b.arg(string(hosts.StatusQuarantined)))
	}
	return true
}

// escapeLike escapes the LIKE wildcards % and _ and the escape character, so
// that s matches itself only.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// prefixRange returns the byte range [lo, hi) of the strings that start with
// p, or false when no host name can start with p (host names are ASCII).
func prefixRange(p string) (lo, hi string, ok bool) {
	for i := 0; i < len(p); i++ {
		if p[i] >= 0x7f || p[i] < 0x20 {
			return "", "", false
		}
	}
	return p, p[:len(p)-1] + string(p[len(p)-1]+1), true
}

func itoa(n int) string { return strconv.Itoa(n) }

// isUUID reports whether s is a UUID in its canonical form, as tenant and
// host ids are; the read model stores them as uuid.
func isUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == strings.ToLower(s)
}

// timeOrNil returns t as a query argument, nil for the zero time.
func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}
