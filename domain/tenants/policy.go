package tenants

import "velocicompanion/domain"

// EventPolicyChanged is the wire name of PolicyChanged.
//
// WARNING: stored with every event; never rename or reuse it.
const EventPolicyChanged = "tenant.policy_changed"

// PolicyChanged records the tenant's new sign-in policy.
type PolicyChanged struct {
	// RequireVerifiedEmail refuses sign-in to users whose e-mail address is
	// not verified.
	RequireVerifiedEmail bool          `json:"require_verified_email"`
	By                   domain.UserID `json:"by"`
}

// EventName returns the durable wire name of PolicyChanged.
func (PolicyChanged) EventName() string { return EventPolicyChanged } // WARNING: stored; never rename.

// SetPolicy decides whether the tenant s may take the sign-in policy; the
// current policy again records nothing.
func SetPolicy(s State, requireVerifiedEmail bool, by domain.UserID) ([]domain.Event, error) {
	switch {
	case !s.Exists:
		return nil, domain.ErrNotFound
	case s.RequireVerifiedEmail == requireVerifiedEmail:
		return nil, nil
	}
	return []domain.Event{PolicyChanged{RequireVerifiedEmail: requireVerifiedEmail, By: by}}, nil
}
