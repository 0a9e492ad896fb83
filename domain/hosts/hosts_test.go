package hosts_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"velocicompanion/domain/domaintest"

	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
)

const (
	hostID hosts.ID      = "0190c7a4-6a38-7f1e-9a49-00000000h001"
	alice  domain.UserID = "0190c7a4-6a38-7f1e-9a49-0000000a11ce"
	syncer domain.UserID = "system:velociraptor"
)

var (
	now = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)

	profile = hosts.Profile{
		Hostname:  "WS-0042",
		FQDN:      "WS-0042.corp.example",
		IPs:       []string{"10.0.0.5", "2001:db8::5"},
		OS:        "windows",
		OSVersion: "10.0.19045",
		Labels:    []string{"finance"},
		ClientID:  "C.1a2b3c4d5e6f7a8b",
	}
	registered = hosts.Registered{ID: hostID, Profile: profile, Source: hosts.SourceAnalyst, By: alice}
	deleted    = hosts.Deleted{By: alice}
)

type scenario struct {
	name    string
	given   []domain.Event
	when    func(hosts.State) ([]domain.Event, error)
	want    []domain.Event
	wantErr error
}

func run(t *testing.T, cases []scenario) {
	t.Helper()
	for _, tc := range cases {
		domaintest.Check(t, tc.name, hosts.Evolve, tc.given, tc.when, tc.want, tc.wantErr)
	}
}

func events(es ...domain.Event) []domain.Event { return es }

func ptr[T any](v T) *T { return &v }

func TestRegister(t *testing.T) {
	register := func(edit func(*hosts.Profile)) func(hosts.State) ([]domain.Event, error) {
		return func(s hosts.State) ([]domain.Event, error) {
			p := profile
			if edit != nil {
				edit(&p)
			}
			return hosts.Register(s, hostID, p, alice)
		}
	}
	run(t, []scenario{
		{name: "records_registered", when: register(nil), want: events(registered)},
		{name: "hostname_alone_suffices", when: register(func(p *hosts.Profile) { *p = hosts.Profile{Hostname: "db01"} }),
			want: events(hosts.Registered{ID: hostID, Profile: hosts.Profile{Hostname: "db01"}, Source: hosts.SourceAnalyst, By: alice})},
		{name: "normalises_every_field", when: register(func(p *hosts.Profile) {
			*p = hosts.Profile{
				Hostname:  "  WS-0042. ",
				FQDN:      "WS-0042.corp.example.",
				IPs:       []string{"2001:DB8:0:0:0:0:0:5", " ::ffff:10.0.0.5 ", "10.0.0.5", "fe80::1%eth0"},
				OS:        " windows ",
				OSVersion: "10.0.19045\t",
				Labels:    []string{"Finance", " finance ", "VIP"},
				ClientID:  " C.1A2B3C4D5E6F7A8B ",
				Metadata:  json.RawMessage(`{ "b": [1, 2], "a": "x" }`),
			}
		}), want: events(hosts.Registered{ID: hostID, Profile: hosts.Profile{
			Hostname: "WS-0042", FQDN: "WS-0042.corp.example", IPs: []string{"10.0.0.5", "2001:db8::5", "fe80::1"},
			OS: "windows", OSVersion: "10.0.19045", Labels: []string{"finance", "vip"}, ClientID: "C.1a2b3c4d5e6f7a8b",
			Metadata: json.RawMessage(`{"a":"x","b":[1,2]}`),
		}, Source: hosts.SourceAnalyst, By: alice})},
		{name: "empty_metadata_is_none", when: register(func(p *hosts.Profile) { *p = hosts.Profile{Hostname: "db01", Metadata: json.RawMessage(`{}`)} }),
			want: events(hosts.Registered{ID: hostID, Profile: hosts.Profile{Hostname: "db01"}, Source: hosts.SourceAnalyst, By: alice})},
		{name: "existing_host_is_conflict", given: events(registered), when: register(nil), wantErr: hosts.ErrExists},
		{name: "deleted_host_is_conflict", given: events(registered, deleted), when: register(nil), wantErr: hosts.ErrExists},
		{name: "empty_id_is_invalid", when: func(s hosts.State) ([]domain.Event, error) { return hosts.Register(s, " ", profile, alice) },
			wantErr: hosts.ErrIDRequired},
		{name: "missing_hostname_is_invalid", when: register(func(p *hosts.Profile) { p.Hostname = "" }), wantErr: hosts.ErrHostnameRequired},
		{name: "bad_hostname_is_invalid", when: register(func(p *hosts.Profile) { p.Hostname = "ws 42" }), wantErr: hosts.ErrHostnameInvalid},
		{name: "bad_fqdn_is_invalid", when: register(func(p *hosts.Profile) { p.FQDN = "ws-42..corp" }), wantErr: hosts.ErrFQDNInvalid},
		{name: "bad_ip_is_invalid", when: register(func(p *hosts.Profile) { p.IPs = []string{"10.0.0.256"} }), wantErr: hosts.ErrIPInvalid},
		{name: "long_os_is_invalid", when: register(func(p *hosts.Profile) { p.OS = strings.Repeat("w", 129) }), wantErr: hosts.ErrOSInvalid},
		{name: "os_with_line_break_is_invalid", when: register(func(p *hosts.Profile) { p.OS = "windows\nlinux" }), wantErr: hosts.ErrOSInvalid},
		{name: "long_os_version_is_invalid", when: register(func(p *hosts.Profile) { p.OSVersion = strings.Repeat("1", 129) }), wantErr: hosts.ErrOSVersionInvalid},
		{name: "bad_client_id_is_invalid", when: register(func(p *hosts.Profile) { p.ClientID = "C.123" }), wantErr: hosts.ErrClientIDInvalid},
		{name: "bad_label_is_invalid", when: register(func(p *hosts.Profile) { p.Labels = []string{" "} }), wantErr: hosts.ErrLabelInvalid},
		{name: "array_metadata_is_invalid", when: register(func(p *hosts.Profile) { p.Metadata = json.RawMessage(`[1]`) }), wantErr: hosts.ErrMetadataInvalid},
	})
}

func TestDiscover(t *testing.T) {
	first, last := now.Add(-72*time.Hour), now.Add(-time.Minute)
	discovery := hosts.Discovery{ID: hostID, Profile: profile, FirstSeen: first, LastSeen: last}
	discover := func(edit func(*hosts.Discovery)) func(hosts.State) ([]domain.Event, error) {
		return func(s hosts.State) ([]domain.Event, error) {
			d := discovery
			if edit != nil {
				edit(&d)
			}
			return hosts.Discover(s, d, now, syncer)
		}
	}
	discovered := hosts.Discovered{ID: hostID, Profile: profile, Source: hosts.SourceVelociraptor, FirstSeen: first, LastSeen: last, By: syncer}
	run(t, []scenario{
		{name: "records_discovered_from_velociraptor", when: discover(nil), want: events(discovered)},
		{name: "explicit_velociraptor_source", when: discover(func(d *hosts.Discovery) { d.Source = hosts.SourceVelociraptor }), want: events(discovered)},
		{name: "only_last_seen_sets_both", when: discover(func(d *hosts.Discovery) { d.FirstSeen = time.Time{} }),
			want: events(hosts.Discovered{ID: hostID, Profile: profile, Source: hosts.SourceVelociraptor, FirstSeen: last, LastSeen: last, By: syncer})},
		{name: "only_first_seen_sets_both", when: discover(func(d *hosts.Discovery) { d.LastSeen = time.Time{} }),
			want: events(hosts.Discovered{ID: hostID, Profile: profile, Source: hosts.SourceVelociraptor, FirstSeen: first, LastSeen: first, By: syncer})},
		{name: "never_seen_records_zero_times", when: discover(func(d *hosts.Discovery) { d.FirstSeen, d.LastSeen = time.Time{}, time.Time{} }),
			want: events(hosts.Discovered{ID: hostID, Profile: profile, Source: hosts.SourceVelociraptor, By: syncer})},
		{name: "times_are_recorded_in_utc", when: discover(func(d *hosts.Discovery) {
			d.FirstSeen, d.LastSeen = first.In(time.FixedZone("CET", 3600)), last.In(time.FixedZone("CET", 3600))
		}), want: events(discovered)},
		{name: "last_seen_within_clock_skew", when: discover(func(d *hosts.Discovery) { d.LastSeen = now.Add(hosts.MaxClockSkew) }),
			want: events(hosts.Discovered{ID: hostID, Profile: profile, Source: hosts.SourceVelociraptor, FirstSeen: first, LastSeen: now.Add(hosts.MaxClockSkew), By: syncer})},
		{name: "last_seen_in_future_is_invalid", when: discover(func(d *hosts.Discovery) { d.LastSeen = now.Add(hosts.MaxClockSkew + time.Second) }),
			wantErr: hosts.ErrSeenInFuture},
		{name: "first_after_last_is_invalid", when: discover(func(d *hosts.Discovery) { d.FirstSeen, d.LastSeen = last, first }), wantErr: hosts.ErrSeenOrder},
		{name: "analyst_source_is_invalid", when: discover(func(d *hosts.Discovery) { d.Source = hosts.SourceAnalyst }), wantErr: hosts.ErrSourceInvalid},
		{name: "unknown_source_is_invalid", when: discover(func(d *hosts.Discovery) { d.Source = "edr" }), wantErr: hosts.ErrSourceInvalid},
		{name: "existing_host_is_conflict", given: events(registered), when: discover(nil), wantErr: hosts.ErrExists},
		{name: "empty_id_is_invalid", when: discover(func(d *hosts.Discovery) { d.ID = "" }), wantErr: hosts.ErrIDRequired},
		{name: "bad_profile_is_invalid", when: discover(func(d *hosts.Discovery) { d.ClientID = "server" }), wantErr: hosts.ErrClientIDInvalid},
	})
}

func TestUpdate(t *testing.T) {
	update := func(ch hosts.Changes) func(hosts.State) ([]domain.Event, error) {
		return func(s hosts.State) ([]domain.Event, error) { return hosts.Update(s, ch, hosts.SourceAnalyst, alice) }
	}
	withMeta := hosts.Registered{ID: hostID, Profile: hosts.Profile{Hostname: "db01", Metadata: json.RawMessage(`{"a":1,"b":"x"}`)},
		Source: hosts.SourceAnalyst, By: alice}
	run(t, []scenario{
		{name: "records_only_changed_fields", given: events(registered),
			when: update(hosts.Changes{Hostname: ptr("WS-0042"), OS: ptr("linux"), OSVersion: ptr("10.0.19045")}),
			want: events(hosts.Updated{OS: ptr("linux"), Source: hosts.SourceAnalyst, By: alice})},
		{name: "renames", given: events(registered), when: update(hosts.Changes{Hostname: ptr(" WS-0043. ")}),
			want: events(hosts.Updated{Hostname: ptr("WS-0043"), Source: hosts.SourceAnalyst, By: alice})},
		{name: "letter_case_of_hostname_is_a_change", given: events(registered), when: update(hosts.Changes{Hostname: ptr("ws-0042")}),
			want: events(hosts.Updated{Hostname: ptr("ws-0042"), Source: hosts.SourceAnalyst, By: alice})},
		{name: "clears_fqdn", given: events(registered), when: update(hosts.Changes{FQDN: ptr("")}),
			want: events(hosts.Updated{FQDN: ptr(""), Source: hosts.SourceAnalyst, By: alice})},
		{name: "replaces_ips_in_canonical_form", given: events(registered), when: update(hosts.Changes{IPs: ptr([]string{"::ffff:10.0.0.6"})}),
			want: events(hosts.Updated{IPs: ptr([]string{"10.0.0.6"}), Source: hosts.SourceAnalyst, By: alice})},
		{name: "clears_ips_as_empty_list", given: events(registered), when: update(hosts.Changes{IPs: ptr([]string(nil))}),
			want: events(hosts.Updated{IPs: ptr([]string{}), Source: hosts.SourceAnalyst, By: alice})},
		{name: "same_ips_in_other_order_record_nothing", given: events(registered),
			when: update(hosts.Changes{IPs: ptr([]string{"2001:DB8::5", "10.0.0.5", "10.0.0.5"})})},
		{name: "sets_client_id", given: events(registered), when: update(hosts.Changes{ClientID: ptr("C.FFFFFFFFFFFFFFFF")}),
			want: events(hosts.Updated{ClientID: ptr("C.ffffffffffffffff"), Source: hosts.SourceAnalyst, By: alice})},
		{name: "sets_metadata", given: events(registered), when: update(hosts.Changes{Metadata: json.RawMessage(`{"owner": "finance"}`)}),
			want: events(hosts.Updated{Metadata: json.RawMessage(`{"owner":"finance"}`), Source: hosts.SourceAnalyst, By: alice})},
		{name: "same_metadata_as_jsonb_returns_it_records_nothing", given: events(withMeta),
			when: update(hosts.Changes{Metadata: json.RawMessage(`{"b": "x", "a": 1.0}`)})},
		{name: "metadata_stored_by_jsonb_compares_by_value", given: events(hosts.Registered{ID: hostID,
			Profile: hosts.Profile{Hostname: "db01", Metadata: json.RawMessage(`{"a": 100, "b": "x"}`)}, Source: hosts.SourceAnalyst, By: alice}),
			when: update(hosts.Changes{Metadata: json.RawMessage(`{"a":1e2,"b":"x"}`)})},
		{name: "removes_metadata_with_empty_object", given: events(withMeta), when: update(hosts.Changes{Metadata: json.RawMessage(`{}`)}),
			want: events(hosts.Updated{Metadata: json.RawMessage(`{}`), Source: hosts.SourceAnalyst, By: alice})},
		{name: "removes_metadata_with_null", given: events(withMeta), when: update(hosts.Changes{Metadata: json.RawMessage(`null`)}),
			want: events(hosts.Updated{Metadata: json.RawMessage(`{}`), Source: hosts.SourceAnalyst, By: alice})},
		{name: "removing_absent_metadata_records_nothing", given: events(registered), when: update(hosts.Changes{Metadata: json.RawMessage(`{}`)})},
		{name: "same_values_record_nothing", given: events(registered), when: update(hosts.Changes{
			Hostname: ptr("WS-0042."), FQDN: ptr("WS-0042.corp.example"), IPs: ptr([]string{"10.0.0.5", "2001:db8::5"}),
			OS: ptr(" windows"), OSVersion: ptr("10.0.19045"), ClientID: ptr("C.1A2B3C4D5E6F7A8B"),
		})},
		{name: "no_changes_record_nothing", given: events(registered), when: update(hosts.Changes{})},
		{name: "repeat_records_nothing", given: events(registered, hosts.Updated{OS: ptr("linux"), Source: hosts.SourceAnalyst, By: alice}),
			when: update(hosts.Changes{OS: ptr("linux")})},
		{name: "sync_records_its_source", given: events(registered), when: func(s hosts.State) ([]domain.Event, error) {
			return hosts.Update(s, hosts.Changes{OSVersion: ptr("10.0.22631")}, hosts.SourceVelociraptor, syncer)
		}, want: events(hosts.Updated{OSVersion: ptr("10.0.22631"), Source: hosts.SourceVelociraptor, By: syncer})},
		{name: "unknown_source_is_invalid", given: events(registered), when: func(s hosts.State) ([]domain.Event, error) {
			return hosts.Update(s, hosts.Changes{OS: ptr("linux")}, "", alice)
		}, wantErr: hosts.ErrSourceInvalid},
		{name: "missing_host_is_not_found", when: update(hosts.Changes{OS: ptr("linux")}), wantErr: domain.ErrNotFound},
		{name: "deleted_host_is_not_found", given: events(registered, deleted), when: update(hosts.Changes{OS: ptr("linux")}), wantErr: domain.ErrNotFound},
		{name: "empty_hostname_is_invalid", given: events(registered), when: update(hosts.Changes{Hostname: ptr(" ")}), wantErr: hosts.ErrHostnameRequired},
		{name: "bad_fqdn_is_invalid", given: events(registered), when: update(hosts.Changes{FQDN: ptr("-corp.example")}), wantErr: hosts.ErrFQDNInvalid},
		{name: "bad_ip_is_invalid", given: events(registered), when: update(hosts.Changes{IPs: ptr([]string{"10.0.0.0/8"})}), wantErr: hosts.ErrIPInvalid},
		{name: "bad_os_is_invalid", given: events(registered), when: update(hosts.Changes{OS: ptr("win\x00")}), wantErr: hosts.ErrOSInvalid},
		{name: "bad_os_version_is_invalid", given: events(registered), when: update(hosts.Changes{OSVersion: ptr("\u202e10")}), wantErr: hosts.ErrOSVersionInvalid},
		{name: "bad_client_id_is_invalid", given: events(registered), when: update(hosts.Changes{ClientID: ptr("c.1a2b3c4d5e6f7a8b")}), wantErr: hosts.ErrClientIDInvalid},
		{name: "bad_metadata_is_invalid", given: events(registered), when: update(hosts.Changes{Metadata: json.RawMessage(`"x"`)}), wantErr: hosts.ErrMetadataInvalid},
		{name: "one_bad_field_records_nothing", given: events(registered), when: update(hosts.Changes{OS: ptr("linux"), ClientID: ptr("x")}),
			wantErr: hosts.ErrClientIDInvalid},
	})
}

func TestSetLabels(t *testing.T) {
	set := func(labels ...string) func(hosts.State) ([]domain.Event, error) {
		return func(s hosts.State) ([]domain.Event, error) {
			return hosts.SetLabels(s, labels, hosts.SourceAnalyst, alice)
		}
	}
	many := make([]string, hosts.MaxLabels+1)
	for i := range many {
		many[i] = fmt.Sprintf("l%02d", i)
	}
	run(t, []scenario{
		{name: "records_new_set_with_difference", given: events(registered), when: set("VIP", "Quarantine"),
			want: events(hosts.LabelsChanged{Labels: []string{"quarantine", "vip"}, Added: []string{"quarantine", "vip"}, Removed: []string{"finance"},
				Source: hosts.SourceAnalyst, By: alice})},
		{name: "clears_labels", given: events(registered), when: set(),
			want: events(hosts.LabelsChanged{Removed: []string{"finance"}, Source: hosts.SourceAnalyst, By: alice})},
		{name: "same_set_records_nothing", given: events(registered), when: set("FINANCE", "finance ")},
		{name: "empty_set_on_unlabelled_host_records_nothing", given: events(hosts.Registered{ID: hostID, Profile: hosts.Profile{Hostname: "db01"}}), when: set()},
		{name: "sixty_four_labels", given: events(registered), when: set(many[:hosts.MaxLabels]...),
			want: events(hosts.LabelsChanged{Labels: many[:hosts.MaxLabels], Added: many[:hosts.MaxLabels], Removed: []string{"finance"},
				Source: hosts.SourceAnalyst, By: alice})},
		{name: "sixty_five_labels_is_invalid", given: events(registered), when: set(many...), wantErr: hosts.ErrTooManyLabels},
		{name: "bad_label_is_invalid", given: events(registered), when: set("ok", "tab\there"), wantErr: hosts.ErrLabelInvalid},
		{name: "deleted_host_is_not_found", given: events(registered, deleted), when: set("vip"), wantErr: domain.ErrNotFound},
	})
}

func TestChangeLabels(t *testing.T) {
	change := func(add, remove []string) func(hosts.State) ([]domain.Event, error) {
		return func(s hosts.State) ([]domain.Event, error) {
			return hosts.ChangeLabels(s, add, remove, hosts.SourceVelociraptor, syncer)
		}
	}
	full := make([]string, hosts.MaxLabels)
	for i := range full {
		full[i] = fmt.Sprintf("l%02d", i)
	}
	run(t, []scenario{
		{name: "adds_label", given: events(registered), when: change([]string{"VIP"}, nil),
			want: events(hosts.LabelsChanged{Labels: []string{"finance", "vip"}, Added: []string{"vip"}, Source: hosts.SourceVelociraptor, By: syncer})},
		{name: "removes_label", given: events(registered), when: change(nil, []string{"Finance"}),
			want: events(hosts.LabelsChanged{Removed: []string{"finance"}, Source: hosts.SourceVelociraptor, By: syncer})},
		{name: "adds_and_removes", given: events(registered), when: change([]string{"vip", "vip"}, []string{"finance", "absent"}),
			want: events(hosts.LabelsChanged{Labels: []string{"vip"}, Added: []string{"vip"}, Removed: []string{"finance"},
				Source: hosts.SourceVelociraptor, By: syncer})},
		{name: "adding_present_label_records_nothing", given: events(registered), when: change([]string{"finance"}, nil)},
		{name: "removing_absent_label_records_nothing", given: events(registered), when: change(nil, []string{"vip"})},
		{name: "nothing_records_nothing", given: events(registered), when: change(nil, nil)},
		{name: "label_added_and_removed_is_invalid", given: events(registered), when: change([]string{"VIP"}, []string{"vip"}),
			wantErr: hosts.ErrLabelConflict},
		{name: "removing_makes_room", given: events(hosts.Registered{ID: hostID, Profile: hosts.Profile{Hostname: "db01", Labels: full}}),
			when: change([]string{"new"}, []string{"l00"}),
			want: events(hosts.LabelsChanged{Labels: append(full[1:len(full):len(full)], "new"), Added: []string{"new"}, Removed: []string{"l00"},
				Source: hosts.SourceVelociraptor, By: syncer})},
		{name: "exceeding_limit_is_invalid", given: events(hosts.Registered{ID: hostID, Profile: hosts.Profile{Hostname: "db01", Labels: full}}),
			when: change([]string{"new"}, nil), wantErr: hosts.ErrTooManyLabels},
		{name: "bad_label_is_invalid", given: events(registered), when: change([]string{strings.Repeat("x", 65)}, nil), wantErr: hosts.ErrLabelInvalid},
		{name: "bad_removed_label_is_invalid", given: events(registered), when: change(nil, []string{""}), wantErr: hosts.ErrLabelInvalid},
		{name: "missing_host_is_not_found", when: change([]string{"vip"}, nil), wantErr: domain.ErrNotFound},
	})
}

func TestRecordSeen(t *testing.T) {
	seen := func(at time.Time) func(hosts.State) ([]domain.Event, error) {
		return func(s hosts.State) ([]domain.Event, error) {
			return hosts.RecordSeen(s, at, now, hosts.SourceVelociraptor, syncer)
		}
	}
	at := func(d time.Duration) time.Time { return now.Add(d) }
	sighting := func(d time.Duration) hosts.Seen {
		return hosts.Seen{At: at(d), Source: hosts.SourceVelociraptor, By: syncer}
	}
	seenTwice := events(registered, sighting(-2*time.Hour), sighting(-time.Hour))
	run(t, []scenario{
		{name: "first_sighting", given: events(registered), when: seen(at(-time.Hour)), want: events(sighting(-time.Hour))},
		{name: "later_sighting_moves_last_seen", given: seenTwice, when: seen(at(-time.Minute)), want: events(sighting(-time.Minute))},
		{name: "earlier_sighting_moves_first_seen", given: seenTwice, when: seen(at(-3 * time.Hour)), want: events(sighting(-3 * time.Hour))},
		{name: "sighting_in_between_records_nothing", given: seenTwice, when: seen(at(-90 * time.Minute))},
		{name: "same_last_seen_records_nothing", given: seenTwice, when: seen(at(-time.Hour))},
		{name: "same_first_seen_records_nothing", given: seenTwice, when: seen(at(-2 * time.Hour))},
		{name: "discovered_times_count", given: events(hosts.Discovered{ID: hostID, Profile: profile, Source: hosts.SourceVelociraptor,
			FirstSeen: at(-2 * time.Hour), LastSeen: at(-time.Hour)}), when: seen(at(-90 * time.Minute))},
		{name: "recorded_in_utc", given: events(registered), when: seen(at(-time.Hour).In(time.FixedZone("EST", -5*3600))),
			want: events(sighting(-time.Hour))},
		{name: "within_clock_skew", given: events(registered), when: seen(at(hosts.MaxClockSkew)), want: events(sighting(hosts.MaxClockSkew))},
		{name: "beyond_clock_skew_is_invalid", given: events(registered), when: seen(at(hosts.MaxClockSkew + time.Nanosecond)), wantErr: hosts.ErrSeenInFuture},
		{name: "zero_time_is_invalid", given: events(registered), when: seen(time.Time{}), wantErr: hosts.ErrSeenAtRequired},
		{name: "deleted_host_is_not_found", given: events(registered, deleted), when: seen(at(-time.Hour)), wantErr: domain.ErrNotFound},
		{name: "bad_source_is_invalid", given: events(registered), when: func(s hosts.State) ([]domain.Event, error) {
			return hosts.RecordSeen(s, now, now, "crowdstrike", syncer)
		}, wantErr: hosts.ErrSourceInvalid},
	})
}

func TestChangeScore(t *testing.T) {
	score := func(n int, c hosts.Class, reason string) func(hosts.State) ([]domain.Event, error) {
		return func(s hosts.State) ([]domain.Event, error) { return hosts.ChangeScore(s, n, c, reason, syncer) }
	}
	scored := hosts.ScoreChanged{Score: 72, Class: hosts.ClassHigh, Reason: "3 IOC matches", By: syncer}
	run(t, []scenario{
		{name: "records_score", given: events(registered), when: score(72, hosts.ClassHigh, " 3 IOC matches "), want: events(scored)},
		{name: "zero_benign_is_news_for_unscored_host", given: events(registered), when: score(0, hosts.ClassBenign, ""),
			want: events(hosts.ScoreChanged{Score: 0, Class: hosts.ClassBenign, By: syncer})},
		{name: "maximum", given: events(registered), when: score(100, hosts.ClassCritical, ""),
			want: events(hosts.ScoreChanged{Score: 100, Class: hosts.ClassCritical, By: syncer})},
		{name: "same_score_and_class_record_nothing", given: events(registered, scored), when: score(72, hosts.ClassHigh, "other reason")},
		{name: "class_change_alone_is_news", given: events(registered, scored), when: score(72, hosts.ClassCritical, ""),
			want: events(hosts.ScoreChanged{Score: 72, Class: hosts.ClassCritical, By: syncer})},
		{name: "negative_is_invalid", given: events(registered), when: score(-1, hosts.ClassBenign, ""), wantErr: hosts.ErrScoreInvalid},
		{name: "above_100_is_invalid", given: events(registered), when: score(101, hosts.ClassCritical, ""), wantErr: hosts.ErrScoreInvalid},
		{name: "unknown_class_is_invalid", given: events(registered), when: score(50, "severe", ""), wantErr: hosts.ErrClassInvalid},
		{name: "empty_class_is_invalid", given: events(registered), when: score(50, "", ""), wantErr: hosts.ErrClassInvalid},
		{name: "long_reason_is_invalid", given: events(registered), when: score(50, hosts.ClassMedium, strings.Repeat("r", 501)),
			wantErr: hosts.ErrScoreReasonInvalid},
		{name: "deleted_host_is_not_found", given: events(registered, deleted), when: score(50, hosts.ClassMedium, ""), wantErr: domain.ErrNotFound},
	})
}

func TestDelete(t *testing.T) {
	del := func(s hosts.State) ([]domain.Event, error) { return hosts.Delete(s, alice) }
	run(t, []scenario{
		{name: "records_deleted", given: events(registered), when: del, want: events(deleted)},
		{name: "repeat_records_nothing", given: events(registered, deleted), when: del},
		{name: "missing_host_is_not_found", when: del, wantErr: domain.ErrNotFound},
	})
}

func TestEvolve(t *testing.T) {
	seenAt := now.Add(-time.Hour)
	history := events(
		registered,
		hosts.Updated{Hostname: ptr("WS-0043"), IPs: ptr([]string{}), Metadata: json.RawMessage(`{"a": 1}`), Source: hosts.SourceAnalyst, By: alice},
		hosts.LabelsChanged{Labels: []string{"vip"}, Added: []string{"vip"}, Removed: []string{"finance"}, Source: hosts.SourceAnalyst, By: alice},
		hosts.Seen{At: seenAt, Source: hosts.SourceVelociraptor, By: syncer},
		hosts.Seen{At: seenAt.Add(-time.Hour), Source: hosts.SourceVelociraptor, By: syncer},
		hosts.ScoreChanged{Score: 40, Class: hosts.ClassMedium, By: syncer},
	)
	got := domain.Fold(hosts.Evolve, history)
	want := hosts.State{
		ID: hostID, Exists: true, Origin: hosts.SourceAnalyst,
		Profile: hosts.Profile{Hostname: "WS-0043", FQDN: profile.FQDN, OS: profile.OS, OSVersion: profile.OSVersion,
			Labels: []string{"vip"}, ClientID: profile.ClientID, Metadata: json.RawMessage(`{"a": 1}`)},
		FirstSeen: seenAt.Add(-time.Hour), LastSeen: seenAt, Score: 40, Class: hosts.ClassMedium,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state = %+v\nwant    %+v", got, want)
	}
	cleared := hosts.Evolve(got, hosts.Updated{Metadata: json.RawMessage(`{}`), Source: hosts.SourceAnalyst, By: alice})
	if cleared.Metadata != nil {
		t.Fatalf("metadata after {} = %s, want none", cleared.Metadata)
	}
	if s := hosts.Evolve(got, hosts.Deleted{By: alice}); !s.Deleted || !s.Exists {
		t.Fatalf("after Deleted: %+v", s)
	}
	if s := hosts.Evolve(got, foreign{}); !reflect.DeepEqual(s, got) {
		t.Fatalf("a foreign event changed the state: %+v", s)
	}
	// Evolve must not share slices with the events it applied.
	ips := []string{"10.0.0.9"}
	s := hosts.Evolve(got, hosts.Updated{IPs: &ips, Source: hosts.SourceAnalyst, By: alice})
	ips[0] = "changed"
	if s.IPs[0] != "10.0.0.9" {
		t.Fatal("state aliases the event's IPs")
	}
}

type foreign struct{}

func (foreign) EventName() string { return "other.happened" }

// TestWireRoundTrip checks that every event survives encoding as the event
// store encodes it, including cleared fields of Updated.
func TestWireRoundTrip(t *testing.T) {
	for _, e := range []domain.Event{
		registered,
		hosts.Registered{ID: hostID, Profile: hosts.Profile{Hostname: "db01", Metadata: json.RawMessage(`{"a":[1,2]}`)}, Source: hosts.SourceAnalyst, By: alice},
		hosts.Discovered{ID: hostID, Profile: profile, Source: hosts.SourceVelociraptor, FirstSeen: now.Add(-time.Hour), LastSeen: now, By: syncer},
		hosts.Discovered{ID: hostID, Profile: profile, Source: hosts.SourceVelociraptor, By: syncer},
		hosts.Updated{FQDN: ptr(""), IPs: ptr([]string{}), OS: ptr(""), Metadata: json.RawMessage(`{}`), Source: hosts.SourceAnalyst, By: alice},
		hosts.Updated{Hostname: ptr("x"), IPs: ptr([]string{"10.0.0.1"}), ClientID: ptr(""), Source: hosts.SourceVelociraptor, By: syncer},
		hosts.LabelsChanged{Labels: []string{"a"}, Added: []string{"a"}, Source: hosts.SourceAnalyst, By: alice},
		hosts.LabelsChanged{Removed: []string{"a"}, Source: hosts.SourceAnalyst, By: alice},
		hosts.Seen{At: now, Source: hosts.SourceVelociraptor, By: syncer},
		hosts.ScoreChanged{Score: 0, Class: hosts.ClassBenign, By: syncer},
		deleted,
		hosts.QuarantineRequested{Collection: "c", Message: "m", By: alice},
		hosts.Quarantined{Collection: "c", FlowID: "F.1"},
		hosts.QuarantineFailed{Collection: "c", Error: "e"},
		hosts.ReleaseRequested{Collection: "c", By: alice},
		hosts.Released{Collection: "c"},
	} {
		t.Run(e.EventName(), func(t *testing.T) {
			wire, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			back := reflect.New(reflect.TypeOf(e))
			if err := json.Unmarshal(wire, back.Interface()); err != nil {
				t.Fatal(err)
			}
			if got := back.Elem().Interface(); !reflect.DeepEqual(got, e) {
				t.Fatalf("round trip of %s:\n got %#v\nwant %#v", wire, got, e)
			}
		})
	}
	wire, _ := json.Marshal(hosts.Updated{IPs: ptr([]string{}), Source: hosts.SourceAnalyst, By: alice})
	if !strings.Contains(string(wire), `"ips":[]`) {
		t.Fatalf("cleared IPs are not on the wire: %s", wire)
	}
}

func TestCheckHostname(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	name253 := label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61) // 253 bytes
	for _, tc := range []struct {
		name, in, want string
		err            error
	}{
		{name: "single_label", in: "db01", want: "db01"},
		{name: "case_is_kept", in: "DESKTOP-7QK2L1A", want: "DESKTOP-7QK2L1A"},
		{name: "dotted", in: "ws-0042.corp.example", want: "ws-0042.corp.example"},
		{name: "trailing_dot_removed", in: "ws-0042.corp.example.", want: "ws-0042.corp.example"},
		{name: "surrounding_space_trimmed", in: "  db01\n", want: "db01"},
		{name: "underscore_allowed", in: "sql_server01", want: "sql_server01"},
		{name: "leading_digit_allowed", in: "1host", want: "1host"},
		{name: "all_digit_label_allowed", in: "1234", want: "1234"},
		{name: "label_of_63", in: label63, want: label63},
		{name: "name_of_253", in: name253, want: name253},
		{name: "empty", in: "", err: hosts.ErrHostnameRequired},
		{name: "only_a_dot", in: ".", err: hosts.ErrHostnameRequired},
		{name: "name_of_254", in: name253 + "b", err: hosts.ErrHostnameTooLong},
		{name: "label_of_64", in: label63 + "a.corp", err: hosts.ErrHostnameInvalid},
		{name: "leading_hyphen", in: "-db01", err: hosts.ErrHostnameInvalid},
		{name: "trailing_hyphen_in_label", in: "db01-.corp", err: hosts.ErrHostnameInvalid},
		{name: "empty_label", in: "db01..corp", err: hosts.ErrHostnameInvalid},
		{name: "leading_dot", in: ".db01", err: hosts.ErrHostnameInvalid},
		{name: "space_inside", in: "db 01", err: hosts.ErrHostnameInvalid},
		{name: "non_ascii", in: "bücher", err: hosts.ErrHostnameInvalid},
		{name: "ipv4_address", in: "10.0.0.1", err: hosts.ErrHostnameInvalid},
		{name: "ipv6_address", in: "2001:db8::1", err: hosts.ErrHostnameInvalid},
		{name: "slash", in: "db01/x", err: hosts.ErrHostnameInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hosts.CheckHostname(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("CheckHostname(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("CheckHostname(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	if hosts.HostnameKey("WS-0042") != hosts.HostnameKey("ws-0042") {
		t.Error("HostnameKey is case-sensitive")
	}
	if got, err := hosts.CheckFQDN(""); got != "" || err != nil {
		t.Errorf("CheckFQDN(\"\") = %q, %v; want empty and no error", got, err)
	}
	if _, err := hosts.CheckFQDN(name253 + "b"); !errors.Is(err, hosts.ErrFQDNInvalid) {
		t.Errorf("CheckFQDN(254 bytes) error = %v, want %v", err, hosts.ErrFQDNInvalid)
	}
}

func TestNormalizeIPs(t *testing.T) {
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("10.0.%d.%d", i/256, i%256)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   []string
		want []string
		err  error
	}{
		{name: "none_is_nil", in: nil, want: nil},
		{name: "empty_list_is_nil", in: []string{}, want: nil},
		{name: "ipv4", in: []string{"192.0.2.1"}, want: []string{"192.0.2.1"}},
		{name: "ipv6_is_compressed_and_lowered", in: []string{"2001:DB8:0:0:0:0:0:1"}, want: []string{"2001:db8::1"}},
		{name: "ipv4_mapped_is_unmapped", in: []string{"::ffff:192.0.2.1"}, want: []string{"192.0.2.1"}},
		{name: "zone_is_dropped", in: []string{"fe80::1%eth0"}, want: []string{"fe80::1"}},
		{name: "trimmed", in: []string{" 192.0.2.1\t"}, want: []string{"192.0.2.1"}},
		{name: "sorted_ipv4_first", in: []string{"2001:db8::1", "192.0.2.10", "192.0.2.9"}, want: []string{"192.0.2.9", "192.0.2.10", "2001:db8::1"}},
		{name: "duplicates_after_normalising_dropped", in: []string{"192.0.2.1", "::ffff:192.0.2.1", "192.0.2.1"}, want: []string{"192.0.2.1"}},
		{name: "sixty_four", in: many(64), want: many(64)},
		{name: "sixty_five_with_a_duplicate", in: append(many(64), "10.0.0.0"), want: many(64)},
		{name: "sixty_five", in: many(65), err: hosts.ErrTooManyIPs},
		{name: "empty_string", in: []string{""}, err: hosts.ErrIPInvalid},
		{name: "leading_zero_octet", in: []string{"192.0.2.01"}, err: hosts.ErrIPInvalid},
		{name: "out_of_range_octet", in: []string{"192.0.2.256"}, err: hosts.ErrIPInvalid},
		{name: "prefix", in: []string{"192.0.2.0/24"}, err: hosts.ErrIPInvalid},
		{name: "hostname", in: []string{"db01"}, err: hosts.ErrIPInvalid},
		{name: "bracketed_ipv6", in: []string{"[2001:db8::1]"}, err: hosts.ErrIPInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hosts.NormalizeIPs(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("NormalizeIPs(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("NormalizeIPs(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	_, err := hosts.NormalizeIPs([]string{"192.0.2.1", "nope"})
	if err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("error %v does not name the bad value", err)
	}
}

func TestCheckClientID(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		err            error
	}{
		{name: "empty_is_none", in: "", want: ""},
		{name: "lower_case", in: "C.1a2b3c4d5e6f7a8b", want: "C.1a2b3c4d5e6f7a8b"},
		{name: "upper_hex_lowered", in: "C.1A2B3C4D5E6F7A8B", want: "C.1a2b3c4d5e6f7a8b"},
		{name: "trimmed", in: " C.0000000000000000 ", want: "C.0000000000000000"},
		{name: "lower_case_prefix", in: "c.1a2b3c4d5e6f7a8b", err: hosts.ErrClientIDInvalid},
		{name: "fifteen_digits", in: "C.1a2b3c4d5e6f7a8", err: hosts.ErrClientIDInvalid},
		{name: "seventeen_digits", in: "C.1a2b3c4d5e6f7a8b9", err: hosts.ErrClientIDInvalid},
		{name: "non_hex", in: "C.1a2b3c4d5e6f7a8g", err: hosts.ErrClientIDInvalid},
		{name: "server", in: "server", err: hosts.ErrClientIDInvalid},
		{name: "no_prefix", in: "1a2b3c4d5e6f7a8b12", err: hosts.ErrClientIDInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hosts.CheckClientID(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("CheckClientID(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("CheckClientID(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestNormalizeLabels(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
		err  error
	}{
		{name: "none_is_nil", in: nil, want: nil},
		{name: "lowered_trimmed_sorted_deduplicated", in: []string{" VIP", "Finance", "vip"}, want: []string{"finance", "vip"}},
		{name: "unicode_lowered", in: []string{"ÉQUIPE"}, want: []string{"équipe"}},
		{name: "inner_space_and_punctuation_kept", in: []string{"group: Finance EU"}, want: []string{"group: finance eu"}},
		{name: "label_of_64_code_points", in: []string{strings.Repeat("é", 64)}, want: []string{strings.Repeat("é", 64)}},
		{name: "label_of_65_code_points", in: []string{strings.Repeat("é", 65)}, err: hosts.ErrLabelInvalid},
		{name: "blank", in: []string{"  "}, err: hosts.ErrLabelInvalid},
		{name: "control_character", in: []string{"a\x07"}, err: hosts.ErrLabelInvalid},
		{name: "invalid_utf8", in: []string{"a\xff"}, err: hosts.ErrLabelInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hosts.NormalizeLabels(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("NormalizeLabels(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("NormalizeLabels(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCheckMetadata(t *testing.T) {
	// sized returns {"k":"xxx…"} of exactly n bytes.
	sized := func(n int) string { return `{"k":"` + strings.Repeat("x", n-8) + `"}` }
	for _, tc := range []struct {
		name, in, want string
		err            error
	}{
		{name: "empty_is_none", in: "", want: ""},
		{name: "null_is_none", in: "null", want: ""},
		{name: "empty_object_is_none", in: " { } ", want: ""},
		{name: "compacted", in: "{\n  \"a\": 1\n}", want: `{"a":1}`},
		{name: "keys_sorted", in: `{"b":1,"a":{"d":2,"c":3}}`, want: `{"a":{"c":3,"d":2},"b":1}`},
		{name: "last_duplicate_key_wins", in: `{"a":1,"a":2}`, want: `{"a":2}`},
		{name: "numbers_kept_as_written", in: `{"a":1.50,"b":1e2,"c":12345678901234567890}`, want: `{"a":1.50,"b":1e2,"c":12345678901234567890}`},
		{name: "html_escaped_like_encoding_json", in: `{"a":"<b>&"}`, want: `{"a":"\u003cb\u003e\u0026"}`},
		{name: "unicode_kept", in: `{"owner":"Zoë 東京"}`, want: `{"owner":"Zoë 東京"}`},
		{name: "of_65536_bytes", in: sized(MaxMetadataBytes), want: sized(MaxMetadataBytes)},
		{name: "of_65537_bytes", in: sized(MaxMetadataBytes + 1), err: hosts.ErrMetadataTooLarge},
		{name: "spaces_do_not_count", in: strings.Replace(sized(MaxMetadataBytes), ":", ":    ", 1), want: sized(MaxMetadataBytes)},
		{name: "array", in: `[1,2]`, err: hosts.ErrMetadataInvalid},
		{name: "string", in: `"x"`, err: hosts.ErrMetadataInvalid},
		{name: "number", in: `1`, err: hosts.ErrMetadataInvalid},
		{name: "broken", in: `{"a":`, err: hosts.ErrMetadataInvalid},
		{name: "single_brace", in: `{`, err: hosts.ErrMetadataInvalid},
		{name: "trailing_data", in: `{} {}`, err: hosts.ErrMetadataInvalid},
		{name: "nul_in_value", in: `{"a":"x\u0000y"}`, err: hosts.ErrMetadataInvalid},
		{name: "nul_in_key", in: `{"\u0000":1}`, err: hosts.ErrMetadataInvalid},
		{name: "nul_deep_inside", in: `{"a":[{"b":"\u0000"}]}`, err: hosts.ErrMetadataInvalid},
		{name: "invalid_utf8", in: "{\"a\":\"\xff\"}", err: hosts.ErrMetadataInvalid},
		{name: "number_out_of_range", in: `{"a":1e400}`, err: hosts.ErrMetadataInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hosts.CheckMetadata(json.RawMessage(tc.in))
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("CheckMetadata(%.40q) error = %v, want %v", tc.in, err, tc.err)
			}
			if string(got) != tc.want {
				t.Fatalf("CheckMetadata(%.40q) = %.40q, want %.40q", tc.in, got, tc.want)
			}
			if tc.want == "" && got != nil {
				t.Fatalf("CheckMetadata(%q) = %q, want nil", tc.in, got)
			}
		})
	}
}

const MaxMetadataBytes = hosts.MaxMetadataBytes

func TestSameMetadata(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b string
		want bool
	}{
		{"both_none", "", "", true},
		{"none_and_empty_object", "", "{}", true},
		{"null_and_empty_object", "null", "{ }", true},
		{"jsonb_spacing_and_order", `{"b": 1, "a": [1, 2]}`, `{"a":[1,2],"b":1}`, true},
		{"exponent_and_integer", `{"a":1e2}`, `{"a":100}`, true},
		{"trailing_zero", `{"a":1.50}`, `{"a":1.5}`, true},
		{"big_integers_compare_exactly", `{"a":9007199254740993}`, `{"a":9007199254740992}`, false},
		{"different_value", `{"a":1}`, `{"a":2}`, false},
		{"extra_key", `{"a":1}`, `{"a":1,"b":1}`, false},
		{"none_and_some", "", `{"a":1}`, false},
		{"number_and_string", `{"a":1}`, `{"a":"1"}`, false},
		{"array_order_matters", `{"a":[1,2]}`, `{"a":[2,1]}`, false},
		{"nested", `{"a":{"b":[true,null,"x"]}}`, `{ "a" : { "b" : [ true , null , "x" ] } }`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := hosts.SameMetadata(json.RawMessage(tc.a), json.RawMessage(tc.b)); got != tc.want {
				t.Fatalf("SameMetadata(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

func TestValues(t *testing.T) {
	for _, s := range []hosts.Source{hosts.SourceAnalyst, hosts.SourceVelociraptor} {
		if !s.Valid() {
			t.Errorf("%q is not valid", s)
		}
	}
	for _, c := range []hosts.Class{hosts.ClassBenign, hosts.ClassLow, hosts.ClassMedium, hosts.ClassHigh, hosts.ClassCritical} {
		if !c.Valid() {
			t.Errorf("%q is not valid", c)
		}
	}
	if hosts.Source("Analyst").Valid() || hosts.Class("High").Valid() {
		t.Error("values are case-sensitive")
	}
}

func TestEventNames(t *testing.T) {
	// WARNING: these are stored. This test exists so that renaming one fails loudly.
	for _, tc := range []struct {
		event domain.Event
		want  string
	}{
		{hosts.Registered{}, "host.registered"},
		{hosts.Discovered{}, "host.discovered"},
		{hosts.Updated{}, "host.updated"},
		{hosts.LabelsChanged{}, "host.labels_changed"},
		{hosts.Seen{}, "host.seen"},
		{hosts.ScoreChanged{}, "host.score_changed"},
		{hosts.Deleted{}, "host.deleted"},
		{hosts.QuarantineRequested{}, "host.quarantine_requested"},
		{hosts.Quarantined{}, "host.quarantined"},
		{hosts.QuarantineFailed{}, "host.quarantine_failed"},
		{hosts.ReleaseRequested{}, "host.release_requested"},
		{hosts.Released{}, "host.released"},
	} {
		if got := tc.event.EventName(); got != tc.want {
			t.Errorf("%T.EventName() = %q, want %q", tc.event, got, tc.want)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	for err, want := range map[error]domain.Kind{
		hosts.ErrExists:          domain.KindConflict,
		hosts.ErrHostnameInvalid: domain.KindInvalid,
		hosts.ErrIPInvalid:       domain.KindInvalid,
		hosts.ErrMetadataInvalid: domain.KindInvalid,
		hosts.ErrSeenInFuture:    domain.KindInvalid,
		hosts.ErrScoreInvalid:    domain.KindInvalid,
	} {
		if got := domain.KindOf(err); got != want {
			t.Errorf("KindOf(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestQuarantine(t *testing.T) {
	const coll, coll2 = "coll-1", "coll-2"
	noClient := hosts.Registered{ID: hostID, Profile: hosts.Profile{Hostname: "db01"}, Source: hosts.SourceAnalyst, By: alice}
	asked := hosts.QuarantineRequested{Collection: coll, Message: "call the SOC", By: alice}
	done := hosts.Quarantined{Collection: coll, FlowID: "F.1"}
	failedQ := hosts.QuarantineFailed{Collection: coll, Error: "client offline"}
	release := hosts.ReleaseRequested{Collection: coll2, By: alice}
	released := hosts.Released{Collection: coll2}
	quarantine := func(c, msg string) func(hosts.State) ([]domain.Event, error) {
		return func(s hosts.State) ([]domain.Event, error) { return hosts.RequestQuarantine(s, c, msg, alice) }
	}
	rel := func(c string) func(hosts.State) ([]domain.Event, error) {
		return func(s hosts.State) ([]domain.Event, error) { return hosts.RequestRelease(s, c, alice) }
	}
	ok := func(c string) func(hosts.State) ([]domain.Event, error) {
		return func(s hosts.State) ([]domain.Event, error) { return hosts.RecordQuarantined(s, c, "F.1") }
	}
	fail := func(c, text string) func(hosts.State) ([]domain.Event, error) {
		return func(s hosts.State) ([]domain.Event, error) { return hosts.RecordQuarantineFailed(s, c, text) }
	}
	gone := func(c string) func(hosts.State) ([]domain.Event, error) {
		return func(s hosts.State) ([]domain.Event, error) { return hosts.RecordReleased(s, c) }
	}
	run(t, []scenario{
		{name: "request", given: events(registered), when: quarantine(coll, " call the SOC "), want: events(asked)},
		{name: "request_again_same_collection_records_nothing", given: events(registered, asked), when: quarantine(coll, "call the SOC")},
		{name: "request_while_in_progress", given: events(registered, asked), when: quarantine(coll2, ""), wantErr: hosts.ErrQuarantineBusy},
		{name: "request_while_releasing", given: events(registered, asked, done, release), when: quarantine("coll-3", ""), wantErr: hosts.ErrQuarantineBusy},
		{name: "request_when_quarantined", given: events(registered, asked, done), when: quarantine(coll2, ""), wantErr: hosts.ErrAlreadyQuarantined},
		{name: "request_after_failure", given: events(registered, asked, failedQ), when: quarantine(coll2, ""),
			want: events(hosts.QuarantineRequested{Collection: coll2, By: alice})},
		{name: "request_after_release", given: events(registered, asked, done, release, released), when: quarantine("coll-3", ""),
			want: events(hosts.QuarantineRequested{Collection: "coll-3", By: alice})},
		{name: "request_deleted_host", given: events(registered, deleted), when: quarantine(coll, ""), wantErr: domain.ErrNotFound},
		{name: "request_missing_host", when: quarantine(coll, ""), wantErr: domain.ErrNotFound},
		{name: "request_without_client_id", given: events(noClient), when: quarantine(coll, ""), wantErr: hosts.ErrNoClientID},
		{name: "request_without_collection", given: events(registered), when: quarantine(" ", ""), wantErr: hosts.ErrCollectionRequired},
		{name: "request_long_message", given: events(registered), when: quarantine(coll, strings.Repeat("x", 1001)), wantErr: hosts.ErrQuarantineMessage},

		{name: "quarantined", given: events(registered, asked), when: ok(coll), want: events(done)},
		{name: "quarantined_twice_records_nothing", given: events(registered, asked, done), when: ok(coll)},
		{name: "quarantined_other_collection", given: events(registered, asked), when: ok(coll2), wantErr: hosts.ErrQuarantineCollision},
		{name: "quarantined_never_asked", given: events(registered), when: ok(coll), wantErr: hosts.ErrQuarantineCollision},
		{name: "quarantined_after_failure", given: events(registered, asked, failedQ), when: ok(coll), wantErr: hosts.ErrQuarantineCollision},
		{name: "quarantined_deleted_host_still_records", given: events(registered, asked, deleted), when: ok(coll), want: events(done)},

		{name: "failed", given: events(registered, asked), when: fail(coll, "client offline"), want: events(failedQ)},
		{name: "failed_twice_records_nothing", given: events(registered, asked, failedQ), when: fail(coll, "again")},
		{name: "failed_without_text", given: events(registered, asked), when: fail(coll, ""),
			want: events(hosts.QuarantineFailed{Collection: coll, Error: "the collection failed"})},
		{name: "release_failed", given: events(registered, asked, done, release), when: fail(coll2, "x"),
			want: events(hosts.QuarantineFailed{Collection: coll2, Error: "x"})},
		{name: "failed_when_done", given: events(registered, asked, done), when: fail(coll, "late"), wantErr: hosts.ErrQuarantineCollision},

		{name: "release", given: events(registered, asked, done), when: rel(coll2), want: events(release)},
		{name: "release_after_failure", given: events(registered, asked, failedQ), when: rel(coll2), want: events(release)},
		{name: "release_again_same_collection_records_nothing", given: events(registered, asked, done, release), when: rel(coll2)},
		{name: "release_never_quarantined", given: events(registered), when: rel(coll2), wantErr: hosts.ErrNotQuarantined},
		{name: "release_released", given: events(registered, asked, done, release, released), when: rel("coll-3"), wantErr: hosts.ErrNotQuarantined},
		{name: "release_while_quarantining", given: events(registered, asked), when: rel(coll2), wantErr: hosts.ErrQuarantineBusy},
		{name: "release_deleted", given: events(registered, asked, done, deleted), when: rel(coll2), wantErr: domain.ErrNotFound},
		{name: "release_without_client_id", given: events(noClient), when: rel(coll2), wantErr: hosts.ErrNoClientID},

		{name: "released", given: events(registered, asked, done, release), when: gone(coll2), want: events(released)},
		{name: "released_twice_records_nothing", given: events(registered, asked, done, release, released), when: gone(coll2)},
		{name: "released_wrong_collection", given: events(registered, asked, done, release), when: gone(coll), wantErr: hosts.ErrQuarantineCollision},
		{name: "released_missing_host", when: gone(coll2), wantErr: domain.ErrNotFound},
	})

	s := domain.Fold(hosts.Evolve, events(registered, asked, done))
	want := hosts.Quarantine{Status: hosts.StatusQuarantined, Collection: coll, Message: "call the SOC", FlowID: "F.1", By: alice}
	if !reflect.DeepEqual(s.Quarantine, want) || s.Quarantine.InProgress() {
		t.Fatalf("quarantine = %+v\nwant         %+v", s.Quarantine, want)
	}
	s = hosts.Evolve(s, release)
	if s.Quarantine.Status != hosts.StatusReleaseRequested || s.Quarantine.Collection != coll2 || !s.Quarantine.InProgress() {
		t.Fatalf("releasing = %+v", s.Quarantine)
	}
	if s = hosts.Evolve(s, released); s.Quarantine.Status != hosts.StatusReleased {
		t.Fatalf("released = %+v", s.Quarantine)
	}
}
