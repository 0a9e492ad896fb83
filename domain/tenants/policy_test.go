package tenants

import (
	"errors"
	"reflect"
	"testing"

	"velocicompanion/domain"
)

func TestSetPolicy(t *testing.T) {
	created := Created{ID: "t1", Name: "Acme", By: "root"}
	tests := []struct {
		name    string
		given   []domain.Event
		require bool
		want    []domain.Event
		wantErr error
	}{
		{name: "require_verified_email", given: []domain.Event{created}, require: true,
			want: []domain.Event{PolicyChanged{RequireVerifiedEmail: true, By: "root"}}},
		{name: "same_policy_records_nothing", given: []domain.Event{created, PolicyChanged{RequireVerifiedEmail: true}}, require: true},
		{name: "relax_again", given: []domain.Event{created, PolicyChanged{RequireVerifiedEmail: true}}, require: false,
			want: []domain.Event{PolicyChanged{RequireVerifiedEmail: false, By: "root"}}},
		{name: "unknown_tenant_not_found", require: true, wantErr: domain.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SetPolicy(domain.Fold(Evolve, tt.given), tt.require, "root")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}
