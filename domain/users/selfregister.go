package users

import "velocicompanion/domain"

// SelfRegister decides whether a visitor may create the account r for
// themselves in the empty stream s. The installation must allow it (the handler
// checks), the tenant must be an ordinary one, and the account is always a
// viewer whatever r.Role says, so that nobody can grant themselves power.
func SelfRegister(s State, r Registration) ([]domain.Event, error) {
	if r.Tenant == domain.PlatformTenant {
		return nil, ErrNotAllowed
	}
	if r.Role != "" && r.Role != RoleViewer {
		return nil, ErrNotAllowed
	}
	r.Role = RoleViewer
	self := Actor{User: r.ID, Tenant: r.Tenant, Role: RoleAdmin}
	events, err := Register(s, self, r)
	if err != nil {
		return nil, err
	}
	reg := events[0].(Registered)
	reg.By = r.ID
	return []domain.Event{reg}, nil
}
