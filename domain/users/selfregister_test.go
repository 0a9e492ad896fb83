package users

import (
	"errors"
	"testing"

	"velocicompanion/domain"
)

func TestSelfRegister(t *testing.T) {
	base := Registration{ID: "u1", Tenant: "t1", Username: "alice", Password: "correct horse battery"}
	tests := []struct {
		name    string
		given   []domain.Event
		change  func(r *Registration)
		want    Role
		wantErr error
	}{
		{name: "always_viewer", want: RoleViewer},
		{name: "viewer_may_be_named", change: func(r *Registration) { r.Role = RoleViewer }, want: RoleViewer},
		{name: "admin_refused", change: func(r *Registration) { r.Role = RoleAdmin }, wantErr: ErrNotAllowed},
		{name: "platform_tenant_refused", change: func(r *Registration) { r.Tenant = domain.PlatformTenant }, wantErr: ErrNotAllowed},
		{name: "weak_password_refused", change: func(r *Registration) { r.Password = "short" }, wantErr: ErrPasswordTooShort},
		{name: "existing_stream_refused", given: []domain.Event{Registered{ID: "u1", Tenant: "t1", Username: "alice", Role: RoleViewer}}, wantErr: ErrExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			if tt.change != nil {
				tt.change(&r)
			}
			got, err := SelfRegister(domain.Fold(Evolve, tt.given), r)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			reg := got[0].(Registered)
			if reg.Role != tt.want || reg.By != r.ID {
				t.Fatalf("got %+v", reg)
			}
		})
	}
}
