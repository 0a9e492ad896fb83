package artifacts_test

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"velocicompanion/domain/domaintest"

	"velocicompanion/domain"
	"velocicompanion/domain/artifacts"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
)

const (
	artifactID artifacts.ID  = "0190c7a4-6a38-7f1e-9a49-00000000a001"
	caseID     cases.ID      = "0190c7a4-6a38-7f1e-9a49-00000000c001"
	ws42       hosts.ID      = "0190c7a4-6a38-7f1e-9a49-00000000h042"
	alice      domain.UserID = "0190c7a4-6a38-7f1e-9a49-0000000a11ce"
	syncer     domain.UserID = "system:velociraptor"

	sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

var (
	now   = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	added = artifacts.Added{
		ID: artifactID, Kind: artifacts.KindSHA256, Value: sha, Case: caseID,
		Description: "Dropper", Tags: []string{"dropper"}, TLP: cases.TLPAmber, IOC: true, Source: "velociraptor", By: alice,
	}
	deleted = artifacts.Deleted{By: alice}
)

type scenario struct {
	name    string
	given   []domain.Event
	when    func(artifacts.State) ([]domain.Event, error)
	want    []domain.Event
	wantErr error
}

func run(t *testing.T, tcs []scenario) {
	t.Helper()
	for _, tc := range tcs {
		domaintest.Check(t, tc.name, artifacts.Evolve, tc.given, tc.when, tc.want, tc.wantErr)
	}
}

func events(es ...domain.Event) []domain.Event { return es }

func ptr[T any](v T) *T { return &v }

func manyTags(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "tag" + strconv.Itoa(i)
	}
	return out
}

func TestAdd(t *testing.T) {
	base := artifacts.NewArtifact{
		ID: artifactID, Kind: artifacts.KindSHA256, Value: sha, Case: caseID,
		Description: "Dropper", Tags: []string{"dropper"}, TLP: cases.TLPAmber, IOC: true, Source: "velociraptor",
	}
	add := func(edit func(*artifacts.NewArtifact)) func(artifacts.State) ([]domain.Event, error) {
		return func(s artifacts.State) ([]domain.Event, error) {
			a := base
			if edit != nil {
				edit(&a)
			}
			return artifacts.Add(s, a, alice)
		}
	}
	run(t, []scenario{
		{name: "records_added", when: add(nil), want: events(added)},
		{name: "normalises_value_and_fields", when: add(func(a *artifacts.NewArtifact) {
			*a = artifacts.NewArtifact{
				ID: artifactID, Kind: "Domain", Value: " Bücher.Example. ", Case: " " + caseID, Host: ws42,
				Description: "\n C2 \n", Tags: []string{"C2", "c2 "}, TLP: "TLP:WHITE", Source: " misp ",
				Metadata: json.RawMessage(`{ "feed": "abuse.ch" }`),
			}
		}), want: events(artifacts.Added{
			ID: artifactID, Kind: artifacts.KindDomain, Value: "xn--bcher-kva.example", Case: caseID, Host: ws42,
			Description: "C2", Tags: []string{"c2"}, TLP: cases.TLPClear, Source: "misp",
			Metadata: json.RawMessage(`{"feed":"abuse.ch"}`), By: alice,
		})},
		{name: "host_alone_with_defaults", when: add(func(a *artifacts.NewArtifact) {
			*a = artifacts.NewArtifact{ID: artifactID, Kind: artifacts.KindIPv4, Value: "198.51.100.7", Host: ws42}
		}), want: events(artifacts.Added{ID: artifactID, Kind: artifacts.KindIPv4, Value: "198.51.100.7", Host: ws42, TLP: artifacts.DefaultTLP, By: alice})},
		{name: "existing_artifact_is_conflict", given: events(added), when: add(nil), wantErr: artifacts.ErrExists},
		{name: "deleted_artifact_is_conflict", given: events(added, deleted), when: add(nil), wantErr: artifacts.ErrExists},
		{name: "empty_id_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.ID = "" }), wantErr: artifacts.ErrIDRequired},
		{name: "unattached_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.Case, a.Host = " ", "" }), wantErr: artifacts.ErrUnattached},
		{name: "case_id_with_control_character_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.Case = "c\x00" }), wantErr: artifacts.ErrRefInvalid},
		{name: "host_id_with_space_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.Host = "h 1" }), wantErr: artifacts.ErrRefInvalid},
		{name: "unknown_kind_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.Kind = "hash" }), wantErr: artifacts.ErrKindInvalid},
		{name: "bad_value_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.Value = sha[:63] }), wantErr: artifacts.ErrInvalidSHA256},
		{name: "value_of_other_kind_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.Kind = artifacts.KindMD5 }), wantErr: artifacts.ErrInvalidMD5},
		{name: "long_description_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.Description = strings.Repeat("d", 10001) }),
			wantErr: artifacts.ErrDescriptionTooLong},
		{name: "control_character_in_description_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.Description = "a\x00" }),
			wantErr: artifacts.ErrDescriptionInvalid},
		{name: "bad_tag_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.Tags = []string{""} }), wantErr: cases.ErrTagInvalid},
		{name: "bad_tlp_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.TLP = "TLP:PURPLE" }), wantErr: cases.ErrTLPInvalid},
		{name: "long_source_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.Source = strings.Repeat("s", 101) }), wantErr: artifacts.ErrSourceInvalid},
		{name: "bad_metadata_is_invalid", when: add(func(a *artifacts.NewArtifact) { a.Metadata = json.RawMessage(`[]`) }), wantErr: hosts.ErrMetadataInvalid},
	})
}

func TestUpdate(t *testing.T) {
	update := func(ch artifacts.Changes) func(artifacts.State) ([]domain.Event, error) {
		return func(s artifacts.State) ([]domain.Event, error) { return artifacts.Update(s, ch, alice) }
	}
	withMeta := added
	withMeta.Metadata = json.RawMessage(`{"feed":"abuse.ch"}`)
	run(t, []scenario{
		{name: "records_only_changed_fields", given: events(added),
			when: update(artifacts.Changes{Description: ptr("Dropper"), IOC: ptr(false), TLP: ptr(cases.TLP("TLP:RED"))}),
			want: events(artifacts.Updated{TLP: ptr(cases.TLPRed), IOC: ptr(false), By: alice})},
		{name: "changes_description_and_source", given: events(added), when: update(artifacts.Changes{Description: ptr(" Loader "), Source: ptr("")}),
			want: events(artifacts.Updated{Description: ptr("Loader"), Source: ptr(""), By: alice})},
		{name: "replaces_tags", given: events(added), when: update(artifacts.Changes{Tags: ptr([]string{"Loader", "emotet"})}),
			want: events(artifacts.Updated{Tags: ptr([]string{"emotet", "loader"}), By: alice})},
		{name: "clears_tags_as_empty_list", given: events(added), when: update(artifacts.Changes{Tags: ptr([]string(nil))}),
			want: events(artifacts.Updated{Tags: ptr([]string{}), By: alice})},
		{name: "same_tags_record_nothing", given: events(added), when: update(artifacts.Changes{Tags: ptr([]string{"DROPPER"})})},
		{name: "sets_metadata", given: events(added), when: update(artifacts.Changes{Metadata: json.RawMessage(`{"vt": 61}`)}),
			want: events(artifacts.Updated{Metadata: json.RawMessage(`{"vt":61}`), By: alice})},
		{name: "same_metadata_records_nothing", given: events(withMeta), when: update(artifacts.Changes{Metadata: json.RawMessage(`{ "feed" : "abuse.ch" }`)})},
		{name: "removes_metadata", given: events(withMeta), when: update(artifacts.Changes{Metadata: json.RawMessage(`{}`)}),
			want: events(artifacts.Updated{Metadata: json.RawMessage(`{}`), By: alice})},
		{name: "same_values_record_nothing", given: events(added), when: update(artifacts.Changes{
			Description: ptr("Dropper "), Tags: ptr([]string{"dropper"}), TLP: ptr(cases.TLP("amber")), IOC: ptr(true), Source: ptr("velociraptor"),
		})},
		{name: "no_changes_record_nothing", given: events(added), when: update(artifacts.Changes{})},
		{name: "missing_artifact_is_not_found", when: update(artifacts.Changes{IOC: ptr(false)}), wantErr: domain.ErrNotFound},
		{name: "deleted_artifact_is_not_found", given: events(added, deleted), when: update(artifacts.Changes{IOC: ptr(false)}), wantErr: domain.ErrNotFound},
		{name: "bad_tlp_is_invalid", given: events(added), when: update(artifacts.Changes{TLP: ptr(cases.TLP(""))}), wantErr: cases.ErrTLPInvalid},
		{name: "too_many_tags_is_invalid", given: events(added), when: update(artifacts.Changes{Tags: ptr(manyTags(cases.MaxTags + 1))}),
			wantErr: cases.ErrTooManyTags},
		{name: "bad_source_is_invalid", given: events(added), when: update(artifacts.Changes{Source: ptr("a\nb")}), wantErr: artifacts.ErrSourceInvalid},
		{name: "bad_description_is_invalid", given: events(added), when: update(artifacts.Changes{Description: ptr(strings.Repeat("x", 10001))}),
			wantErr: artifacts.ErrDescriptionTooLong},
		{name: "bad_metadata_is_invalid", given: events(added), when: update(artifacts.Changes{Metadata: json.RawMessage(`{`)}), wantErr: hosts.ErrMetadataInvalid},
	})
}

func TestSight(t *testing.T) {
	sight := func(sg artifacts.Sighting) func(artifacts.State) ([]domain.Event, error) {
		return func(s artifacts.State) ([]domain.Event, error) { return artifacts.Sight(s, sg, now, syncer) }
	}
	earlier := now.Add(-time.Hour)
	run(t, []scenario{
		{name: "records_sighting_now", given: events(added), when: sight(artifacts.Sighting{}),
			want: events(artifacts.Sighted{At: now, By: syncer})},
		{name: "records_host_source_and_time", given: events(added), when: sight(artifacts.Sighting{Host: " " + ws42, Source: " velociraptor ", At: earlier}),
			want: events(artifacts.Sighted{Host: ws42, Source: "velociraptor", At: earlier, By: syncer})},
		{name: "every_sighting_counts", given: events(added, artifacts.Sighted{At: earlier, By: syncer}), when: sight(artifacts.Sighting{At: earlier}),
			want: events(artifacts.Sighted{At: earlier, By: syncer})},
		{name: "time_recorded_in_utc", given: events(added), when: sight(artifacts.Sighting{At: earlier.In(time.FixedZone("JST", 9*3600))}),
			want: events(artifacts.Sighted{At: earlier, By: syncer})},
		{name: "within_clock_skew", given: events(added), when: sight(artifacts.Sighting{At: now.Add(artifacts.MaxClockSkew)}),
			want: events(artifacts.Sighted{At: now.Add(artifacts.MaxClockSkew), By: syncer})},
		{name: "beyond_clock_skew_is_invalid", given: events(added), when: sight(artifacts.Sighting{At: now.Add(artifacts.MaxClockSkew + time.Second)}),
			wantErr: artifacts.ErrSightedInFuture},
		{name: "bad_source_is_invalid", given: events(added), when: sight(artifacts.Sighting{Source: "\x00"}), wantErr: artifacts.ErrSourceInvalid},
		{name: "bad_host_is_invalid", given: events(added), when: sight(artifacts.Sighting{Host: "h\x00x"}), wantErr: artifacts.ErrRefInvalid},
		{name: "missing_artifact_is_not_found", when: sight(artifacts.Sighting{}), wantErr: domain.ErrNotFound},
		{name: "deleted_artifact_is_not_found", given: events(added, deleted), when: sight(artifacts.Sighting{}), wantErr: domain.ErrNotFound},
	})
}

func TestDelete(t *testing.T) {
	del := func(s artifacts.State) ([]domain.Event, error) { return artifacts.Delete(s, alice) }
	run(t, []scenario{
		{name: "records_deleted", given: events(added), when: del, want: events(deleted)},
		{name: "repeat_records_nothing", given: events(added, deleted), when: del},
		{name: "missing_artifact_is_not_found", when: del, wantErr: domain.ErrNotFound},
	})
}

func TestEvolve(t *testing.T) {
	history := events(
		added,
		artifacts.Updated{Description: ptr("Loader"), Tags: ptr([]string{"emotet"}), TLP: ptr(cases.TLPRed), IOC: ptr(false),
			Source: ptr("misp"), Metadata: json.RawMessage(`{"vt": 61}`), By: alice},
		artifacts.Sighted{At: now.Add(-time.Hour), By: syncer},
		artifacts.Sighted{Host: ws42, At: now.Add(-2 * time.Hour), By: syncer},
	)
	got := domain.Fold(artifacts.Evolve, history)
	want := artifacts.State{
		ID: artifactID, Exists: true, Kind: artifacts.KindSHA256, Value: sha, Case: caseID,
		Description: "Loader", Tags: []string{"emotet"}, TLP: cases.TLPRed, IOC: false, Source: "misp",
		Metadata: json.RawMessage(`{"vt": 61}`), Sightings: 3, LastSighted: now.Add(-time.Hour),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state = %+v\nwant    %+v", got, want)
	}
	cleared := artifacts.Evolve(got, artifacts.Updated{Tags: ptr([]string{}), Metadata: json.RawMessage(`{}`), By: alice})
	if cleared.Tags != nil || cleared.Metadata != nil {
		t.Fatalf("cleared fields remain: %+v", cleared)
	}
	if s := artifacts.Evolve(got, deleted); !s.Deleted {
		t.Fatal("Deleted not applied")
	}
	if s := artifacts.Evolve(got, foreign{}); !reflect.DeepEqual(s, got) {
		t.Fatalf("a foreign event changed the state: %+v", s)
	}
}

type foreign struct{}

func (foreign) EventName() string { return "other.happened" }

func TestWireRoundTrip(t *testing.T) {
	for _, e := range []domain.Event{
		added,
		artifacts.Added{ID: artifactID, Kind: artifacts.KindURL, Value: "https://example.com/", Host: ws42, TLP: cases.TLPAmberStrict,
			Metadata: json.RawMessage(`{"a":[1,"\u003cb\u003e"]}`), By: alice}, // canonical, as hosts.CheckMetadata makes it
		artifacts.Updated{Description: ptr(""), Tags: ptr([]string{}), TLP: ptr(cases.TLPGreen), IOC: ptr(false), Source: ptr(""), Metadata: json.RawMessage(`{}`), By: alice},
		artifacts.Sighted{Host: ws42, Source: "velociraptor", At: now, By: syncer},
		deleted,
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
	wire, _ := json.Marshal(added)
	if !strings.Contains(string(wire), `"is_ioc":true`) {
		t.Errorf("IOC flag is not on the wire as is_ioc: %s", wire)
	}
}

func TestEventNames(t *testing.T) {
	// WARNING: these are stored. This test exists so that renaming one fails loudly.
	for _, tc := range []struct {
		event domain.Event
		want  string
	}{
		{artifacts.Added{}, "artifact.added"},
		{artifacts.Updated{}, "artifact.updated"},
		{artifacts.Sighted{}, "artifact.sighted"},
		{artifacts.Deleted{}, "artifact.deleted"},
	} {
		if got := tc.event.EventName(); got != tc.want {
			t.Errorf("%T.EventName() = %q, want %q", tc.event, got, tc.want)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	for err, want := range map[error]domain.Kind{
		artifacts.ErrExists:          domain.KindConflict,
		artifacts.ErrUnattached:      domain.KindInvalid,
		artifacts.ErrKindInvalid:     domain.KindInvalid,
		artifacts.ErrInvalidURL:      domain.KindInvalid,
		artifacts.ErrSightedInFuture: domain.KindInvalid,
	} {
		if got := domain.KindOf(err); got != want {
			t.Errorf("KindOf(%v) = %v, want %v", err, got, want)
		}
	}
}
