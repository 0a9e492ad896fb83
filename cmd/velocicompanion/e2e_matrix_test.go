package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"velocicompanion/adapters/velociraptor/vrfake"
)

// The role × route matrix: every route the server serves, called by each of
// six principals, with the status each must get. The table is the one place
// that says who may do what; TestMatrixRoleRoute fails when a served route has
// no row or a row names a route that is not served.
//
// How to read a row's expectations, column by column:
//
//	anonymous   no credentials: 401 on every protected route
//	viewer      tenant A's viewer
//	analyst     tenant A's analyst
//	admin       tenant A's administrator
//	adminB      tenant B's administrator: a resource of tenant A is 404, as if it did not exist
//	platform    the platform administrator (tenant "platform"): tenant routes act in its
//	            own, empty tenant (404 on A's resources) unless the route takes ?tenant_id=
//
// Rules the table shows: the route's role list is checked before the resource
// is looked up, so a role that may never call a route gets 403 whichever tenant
// the resource is in; a role that may call it gets 404 for another tenant's
// resource. Accounts (GET/PATCH /api/users/{id}) answer 404 rather than 403
// to a non-administrator asking about someone else, so that ids cannot be
// probed. API keys are not a column: e2e_sessions_test.go shows which routes
// refuse them. Rows of routes still being wired (TOTP 2FA, SIEM destinations)
// say so when their route is not served.
//
// Each call has its own resources where the call destroys or changes one for
// good (prep), and minimal valid bodies, so that a status reflects
// authorisation and not validation.

type mxPrincipal int

const (
	mxAnon mxPrincipal = iota
	mxViewer
	mxAnalyst
	mxAdmin
	mxAdminB
	mxPlatform
	mxPrincipals
)

var mxPrincipalNames = [mxPrincipals]string{"anonymous", "viewer", "analyst", "admin", "admin of B", "platform admin"}

// mxExpect holds a row's statuses in the column order above. For the
// notification WebSocket, 101 means the socket connected and authenticated,
// 1008 that the server closed it (policy violation) for want of credentials.
type mxExpect [mxPrincipals]int

// mxRow is one line of the matrix.
type mxRow struct {
	route string // "METHOD /path/{param}" as the OpenAPI document names it
	path  string // the request path; ${name} is a fixture id or one prep made
	prep  func(c *mxCall)
	body  func(c *mxCall) any
	after func(c *mxCall, r response) // sees the answer when it had the status wanted
	fresh bool                        // the caller signs in anew and calls with that session (logout)
	ws    bool                        // the notification WebSocket
	want  mxExpect
}

// mxCall is one request of the matrix: a row called by one principal.
type mxCall struct {
	t    *testing.T
	fx   *mxFixture
	who  mxPrincipal
	n    int
	vars map[string]string
}

func (c *mxCall) unique(prefix string) string { return fmt.Sprintf("%s%d", prefix, c.n) }

func (c *mxCall) lookup(name string) string {
	if v, ok := c.vars[name]; ok {
		return v
	}
	if v, ok := c.fx.vars[name]; ok {
		return v
	}
	c.t.Fatalf("matrix: no value for ${%s}", name)
	return ""
}

// mxFixture is the server, its accounts and tenant A's resources.
type mxFixture struct {
	w      *secWorld
	s      *server
	users  [mxPrincipals]*secUser // nil for anonymous
	vars   map[string]string
	calls  int
	inWeek string
	// vr is the fake Velociraptor server of both tenants: A on its root
	// org, B on org O2.
	vr *vrfake.Server
	// The 2FA rows' state per principal: the TOTP secret of the setup and
	// the recovery codes last issued.
	totp     [mxPrincipals]string
	recovery [mxPrincipals][]string
}

const mxNewPassword = "a matrix password 1"

func mxPasswordOf(name string) string { return "matrix password of " + name }

// as sends a request as tenant A's administrator and decodes the answer's id.
func (fx *mxFixture) as(t *testing.T, u *secUser, method, path string, body any, want int) string {
	t.Helper()
	r := fx.s.do(t, method, path, u.token, body)
	expectStatus(t, r, want, "fixture: "+method+" "+path)
	var out struct {
		ID       string `json:"id"`
		Position int64  `json:"position"`
	}
	if len(r.body) > 0 {
		r.json(t, &out)
	}
	return out.ID
}

func (fx *mxFixture) signIn(t *testing.T, u *secUser) tokenPair {
	t.Helper()
	r := fx.s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": u.name, "password": u.password})
	expectStatus(t, r, http.StatusOK, "fixture: sign in "+u.name)
	var p tokenPair
	r.json(t, &p)
	return p
}

func newMatrixFixture(t *testing.T) *mxFixture {
	t.Helper()
	fake := vrFleet(t)
	s := startServer(t, "VC_SIEM_ALLOWED_NETWORKS=127.0.0.0/8", "VC_VELOCIRAPTOR_ALLOWED_NETWORKS=127.0.0.0/8", "VC_VELOCIRAPTOR_POLL=100ms")
	w := newSecWorld(t, s, mxPasswordOf)
	fx := &mxFixture{w: w, s: s, users: [mxPrincipals]*secUser{nil, w.viewer, w.analyst, w.admin, w.adminB, w.root},
		inWeek: time.Now().Add(7 * 24 * time.Hour).UTC().Format(time.RFC3339), vr: fake}
	alice := w.admin
	fx.vars = map[string]string{"tenantA": w.tenantA, "tenantB": w.tenantB, "viewer": w.viewer.id, "spare": w.spare.id, "admin": w.admin.id}
	fx.vars["host"] = fx.as(t, alice, http.MethodPost, "/api/hosts", map[string]any{"hostname": "mx-host-a"}, http.StatusCreated)
	fx.vars["case"] = fx.as(t, alice, http.MethodPost, "/api/cases", map[string]any{"title": "Matrix case", "host_ids": []string{fx.vars["host"]}}, http.StatusCreated)
	fx.as(t, alice, http.MethodPatch, "/api/cases/"+fx.vars["case"], map[string]any{"assignee": w.viewer.id}, http.StatusOK)
	fx.vars["task"] = fx.as(t, alice, http.MethodPost, "/api/cases/"+fx.vars["case"]+"/tasks", map[string]any{"title": "Matrix task"}, http.StatusCreated)
	fx.vars["comment"] = fx.as(t, alice, http.MethodPost, "/api/cases/"+fx.vars["case"]+"/comments", map[string]any{"body": "Matrix comment"}, http.StatusCreated)
	fx.vars["artifact"] = fx.as(t, alice, http.MethodPost, "/api/artifacts",
		map[string]any{"artifact_type": "domain", "value": "mx-artifact.example", "case_id": fx.vars["case"]}, http.StatusCreated)
	fx.vars["apikey"] = fx.as(t, alice, http.MethodPost, "/api/apikeys",
		map[string]any{"name": "matrix key", "role": "viewer", "expires_at": fx.inWeek}, http.StatusCreated)

	// Velociraptor: both tenants connected; a collection and a started hunt of A.
	fx.as(t, alice, http.MethodPost, "/api/velociraptor/config", mxVRConfig(t, fx, mxAdmin), http.StatusOK)
	fx.as(t, w.adminB, http.MethodPost, "/api/velociraptor/config", mxVRConfig(t, fx, mxAdminB), http.StatusOK)
	fx.vars["vrClient"] = e2eWinClient
	fx.vars["collection"] = fx.as(t, alice, http.MethodPost, "/api/velociraptor/collect",
		map[string]any{"client_id": e2eWinClient, "artifacts": []string{"Generic.Client.Info"}}, http.StatusAccepted)
	fx.vars["hunt"] = mxStartedHunt(t, fx)

	// The read models catch up: the audit entry of the case, the viewer's
	// notification of the assignment, and the host, artifact and user lists.
	eventually(t, 30*time.Second, "the case's audit entry", func() bool {
		r := s.do(t, http.MethodGet, "/api/audit?action=case.opened&resource_id="+fx.vars["case"], alice.token, nil)
		var entries []struct{ ID string }
		if r.status == http.StatusOK {
			r.json(t, &entries)
		}
		if len(entries) == 1 {
			fx.vars["audit"] = entries[0].ID
		}
		return fx.vars["audit"] != ""
	})
	eventually(t, 30*time.Second, "the viewer's notification", func() bool {
		r := s.do(t, http.MethodGet, "/api/notifications", w.viewer.token, nil)
		var list []struct{ ID string }
		if r.status == http.StatusOK {
			r.json(t, &list)
		}
		if len(list) > 0 {
			fx.vars["notification"] = list[0].ID
		}
		return fx.vars["notification"] != ""
	})
	for _, p := range []string{"/api/hosts/" + fx.vars["host"], "/api/artifacts/" + fx.vars["artifact"], "/api/users/" + w.viewer.id} {
		eventually(t, 30*time.Second, p+" in its read model", func() bool {
			return s.do(t, http.MethodGet, p, alice.token, nil).status == http.StatusOK
		})
	}
	return fx
}

// Preparations: throwaway resources of tenant A, made by its administrator,
// for calls that delete or end something.

func mxPrepAdminSession(c *mxCall) {
	p := c.fx.signIn(c.t, c.fx.w.admin)
	var list []sessionBody
	r := c.fx.s.do(c.t, http.MethodGet, "/api/auth/sessions", p.AccessToken, nil)
	expectStatus(c.t, r, http.StatusOK, "prep: sessions")
	r.json(c.t, &list)
	c.vars["session"] = currentSession(c.t, list)
}

func mxPrepRefreshToken(c *mxCall) { c.vars["refresh"] = c.fx.signIn(c.t, c.fx.w.spare).RefreshToken }

func mxPrepAPIKey(c *mxCall) {
	c.vars["freshKey"] = c.fx.as(c.t, c.fx.w.admin, http.MethodPost, "/api/apikeys",
		map[string]any{"name": c.unique("throwaway key "), "role": "viewer", "expires_at": c.fx.inWeek}, http.StatusCreated)
}

func mxPrepUser(c *mxCall) {
	c.vars["freshUser"] = c.fx.as(c.t, c.fx.w.admin, http.MethodPost, "/api/users",
		map[string]any{"username": c.unique("throwaway"), "password": mxNewPassword}, http.StatusCreated)
}

func mxPrepTask(c *mxCall) {
	c.vars["freshTask"] = c.fx.as(c.t, c.fx.w.admin, http.MethodPost, "/api/cases/"+c.fx.vars["case"]+"/tasks",
		map[string]any{"title": c.unique("throwaway task ")}, http.StatusCreated)
}

func mxPrepComment(c *mxCall) {
	c.vars["freshComment"] = c.fx.as(c.t, c.fx.w.admin, http.MethodPost, "/api/cases/"+c.fx.vars["case"]+"/comments",
		map[string]any{"body": c.unique("throwaway comment ")}, http.StatusCreated)
}

func mxPrepCase(c *mxCall) {
	c.vars["freshCase"] = c.fx.as(c.t, c.fx.w.admin, http.MethodPost, "/api/cases",
		map[string]any{"title": c.unique("throwaway case ")}, http.StatusCreated)
}

func mxPrepCaseWithHost(c *mxCall) {
	c.vars["freshCase"] = c.fx.as(c.t, c.fx.w.admin, http.MethodPost, "/api/cases",
		map[string]any{"title": c.unique("throwaway case "), "host_ids": []string{c.fx.vars["host"]}}, http.StatusCreated)
}

func mxPrepHost(c *mxCall) {
	c.vars["freshHost"] = c.fx.as(c.t, c.fx.w.admin, http.MethodPost, "/api/hosts",
		map[string]any{"hostname": c.unique("throwaway-host-")}, http.StatusCreated)
}

func mxPrepArtifact(c *mxCall) {
	c.vars["freshArtifact"] = c.fx.as(c.t, c.fx.w.admin, http.MethodPost, "/api/artifacts",
		map[string]any{"artifact_type": "domain", "value": c.unique("throwaway-") + ".example", "case_id": c.fx.vars["case"]}, http.StatusCreated)
}

func mxSIEMBody(c *mxCall) any {
	return map[string]any{"name": c.unique("matrix siem "),
		"config": map[string]any{"kind": "syslog", "address": "127.0.0.1:9", "transport": "tcp"}}
}

func mxPrepSIEM(c *mxCall) {
	c.vars["freshSIEM"] = c.fx.as(c.t, c.fx.w.admin, http.MethodPost, "/api/siem/destinations", mxSIEMBody(c), http.StatusCreated)
}

// mxVRConfig is the body that connects the tenant of who to the fake
// Velociraptor: B to org O2, everyone else to A's root org.
func mxVRConfig(t *testing.T, fx *mxFixture, who mxPrincipal) map[string]any {
	if who == mxAdminB {
		return map[string]any{"config": string(fx.vr.APIClientYAML(t, vrfake.Name("matrix-b"), vrfake.OrgAccess("O2"))), "org_id": "O2"}
	}
	return map[string]any{"config": string(fx.vr.APIClientYAML(t, vrfake.Name("matrix-a"), vrfake.OrgAccess("")))}
}

// mxStartedHunt starts a hunt of A and waits until Velociraptor has it.
func mxStartedHunt(t *testing.T, fx *mxFixture) string {
	t.Helper()
	id := fx.as(t, fx.w.admin, http.MethodPost, "/api/velociraptor/hunts",
		map[string]any{"description": "matrix hunt", "artifacts": []string{"Generic.Client.Info"}}, http.StatusAccepted)
	eventually(t, 30*time.Second, "the hunt to start", func() bool {
		var h vrHunt
		r := fx.s.do(t, http.MethodGet, "/api/velociraptor/hunts/"+id, fx.w.admin.token, nil)
		r.json(t, &h)
		return h.HuntID != ""
	})
	return id
}

func mxPrepHunt(c *mxCall) { c.vars["freshHunt"] = mxStartedHunt(c.t, c.fx) }

// mxPrepHeldCollection is a fresh collection of A whose flow the fake keeps
// running, so that it has not ended when the row cancels it.
func mxPrepHeldCollection(c *mxCall) {
	c.fx.vr.HoldArtifact(e2eHeldArtifact)
	c.vars["freshCollection"] = c.fx.as(c.t, c.fx.w.admin, http.MethodPost, "/api/velociraptor/collect",
		map[string]any{"client_id": e2eLinClient, "artifacts": []string{e2eHeldArtifact}}, http.StatusAccepted)
}

// mxPrepEndpoint is a fresh Windows host of A with a client of its own in
// the fake's root org, to quarantine.
func mxPrepEndpoint(c *mxCall) {
	client := fmt.Sprintf("C.%016x", 0xe000+c.n)
	c.fx.vr.AddClient("", vrfake.Client{ClientID: client, Hostname: c.unique("mx-endpoint-"), OS: "windows"})
	c.vars["freshEndpoint"] = c.fx.as(c.t, c.fx.w.admin, http.MethodPost, "/api/hosts",
		map[string]any{"hostname": c.unique("mx-endpoint-"), "os": "windows", "velociraptor_client_id": client}, http.StatusCreated)
}

// mxPrepQuarantined is a fresh host of A in quarantine.
func mxPrepQuarantined(c *mxCall) {
	mxPrepEndpoint(c)
	col := c.fx.as(c.t, c.fx.w.admin, http.MethodPost, "/api/hosts/"+c.vars["freshEndpoint"]+"/quarantine", map[string]any{}, http.StatusAccepted)
	if done := c.fx.s.vrCollectionEnds(c.t, c.fx.w.admin.token, col); done.Status != "completed" {
		c.t.Fatalf("prep: quarantine %+v", done)
	}
	// The host records its quarantine just after the collection completes.
	eventually(c.t, 30*time.Second, "the host's quarantine", func() bool {
		var h struct {
			Quarantine struct{ Status string } `json:"quarantine"`
		}
		r := c.fx.s.do(c.t, http.MethodGet, "/api/hosts/"+c.vars["freshEndpoint"], c.fx.w.admin.token, nil)
		r.json(c.t, &h)
		return h.Quarantine.Status == "quarantined"
	})
}

// mxPrepVRConfig connects the caller's tenant (A for everyone but B's
// administrator), for the row that disconnects it.
func mxPrepVRConfig(c *mxCall) {
	by := c.fx.w.admin
	if c.who == mxAdminB {
		by = c.fx.w.adminB
	}
	c.fx.as(c.t, by, http.MethodPost, "/api/velociraptor/config", mxVRConfig(c.t, c.fx, c.who), http.StatusOK)
}

// Bodies.

func mxJSONBody(kv ...string) func(c *mxCall) any {
	return func(c *mxCall) any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = os.Expand(kv[i+1], c.lookup)
		}
		return m
	}
}

// mxUniqueBody is a body of one field whose value is unique per call.
func mxUniqueBody(field, prefix, suffix string) func(c *mxCall) any {
	return func(c *mxCall) any { return map[string]any{field: c.unique(prefix) + suffix} }
}

const secTOTPStep = 30 * time.Second

// totpCode is the caller's TOTP code at now+offset, made by oathtool from
// the secret of the setup row; "000000" for a caller without one.
func (c *mxCall) totpCode(offset time.Duration) string {
	secret := c.fx.totp[c.who]
	if secret == "" {
		return "000000"
	}
	return secOathtool(c.t, secret, time.Now().Add(offset))
}

func mxSaveRecoveryCodes(c *mxCall, r response) {
	if r.status != http.StatusOK {
		return
	}
	var out struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	r.json(c.t, &out)
	if len(out.RecoveryCodes) == 0 {
		c.t.Errorf("%s: no recovery codes in %s", mxPrincipalNames[c.who], r.body)
	}
	c.fx.recovery[c.who] = out.RecoveryCodes
}

// matrixRows is the matrix. Rows that end or delete something run on
// throwaway resources; the 2FA rows come last because they change accounts.
func matrixRows() []mxRow {
	const (
		ok, created, noContent, accepted = http.StatusOK, http.StatusCreated, http.StatusNoContent, http.StatusAccepted
		bad, unauth, forbidden, notFound = http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound
		connected, closed                = http.StatusSwitchingProtocols, 1008
	)
	everyone := func(status int) mxExpect { return mxExpect{status, status, status, status, status, status} }
	// Shapes that recur: the anonymous column is 401 for every protected route.
	anyUser := mxExpect{unauth, ok, ok, ok, ok, ok}
	tenantRead := mxExpect{unauth, ok, ok, ok, notFound, notFound}          // any user of A reads A's resource
	tenantWrite := mxExpect{unauth, forbidden, ok, ok, notFound, forbidden} // analysts and admins change it
	tenantCreate := mxExpect{unauth, forbidden, created, created, created, forbidden}
	tenantAdd := mxExpect{unauth, forbidden, created, created, notFound, forbidden} // a sub-resource of A's resource
	adminDelete := mxExpect{unauth, forbidden, forbidden, noContent, notFound, forbidden}
	writerDelete := mxExpect{unauth, forbidden, noContent, noContent, notFound, forbidden}
	adminsList := mxExpect{unauth, forbidden, forbidden, ok, ok, ok} // tenant and platform administrators, each their own tenant
	vrMembers := mxExpect{unauth, ok, ok, ok, ok, forbidden}         // any member of a tenant, of their own tenant's Velociraptor
	vrRead := mxExpect{unauth, ok, ok, ok, notFound, forbidden}      // any member of A reads A's Velociraptor resource
	vrAct := mxExpect{unauth, forbidden, accepted, accepted, notFound, forbidden}

	return []mxRow{
		// Service routes: public.
		{route: "GET /", path: "/", want: everyone(ok)},
		{route: "GET /health", path: "/health", want: everyone(ok)},
		{route: "GET /ready", path: "/ready", want: everyone(ok)},
		{route: "GET /metrics", path: "/metrics", want: everyone(ok)},
		{route: "GET /openapi.json", path: "/openapi.json", want: everyone(ok)},
		{route: "GET /docs", path: "/docs", want: everyone(ok)},

		// Authentication. Registration is closed to anonymous callers (no
		// self-registration); with a token it is POST /api/users.
		{route: "POST /api/auth/register", path: "/api/auth/register",
			body: func(c *mxCall) any {
				return map[string]any{"username": c.unique("registered"), "password": mxNewPassword}
			},
			want: mxExpect{forbidden, forbidden, forbidden, created, created, created}},
		{route: "POST /api/auth/login", path: "/api/auth/login",
			body: mxJSONBody("username", "tara", "password", mxPasswordOf("tara")), want: everyone(ok)},
		{route: "GET /api/auth/me", path: "/api/auth/me", want: anyUser},
		{route: "POST /api/auth/refresh", path: "/api/auth/refresh", prep: mxPrepRefreshToken,
			body: mxJSONBody("refresh_token", "${refresh}"), want: everyone(ok)},
		{route: "GET /api/auth/sessions", path: "/api/auth/sessions", want: anyUser},
		{route: "DELETE /api/auth/sessions/{id}", path: "/api/auth/sessions/${session}", prep: mxPrepAdminSession,
			want: mxExpect{unauth, notFound, notFound, noContent, notFound, notFound}}, // one's own sessions only
		{route: "POST /api/auth/password-reset/request", path: "/api/auth/password-reset/request",
			body: mxJSONBody("email", "nobody@nowhere.example"), want: everyone(ok)},
		{route: "POST /api/auth/password-reset/confirm", path: "/api/auth/password-reset/confirm",
			body: mxJSONBody("token", "not-a-reset-token", "new_password", mxNewPassword), want: everyone(bad)},
		{route: "POST /api/auth/verify-email/request", path: "/api/auth/verify-email/request",
			want: mxExpect{unauth, accepted, accepted, accepted, accepted, accepted}},
		{route: "POST /api/auth/verify-email/confirm", path: "/api/auth/verify-email/confirm",
			body: mxJSONBody("token", "not-a-verification-token"), want: everyone(bad)},

		// API keys: tenant administrators only, not platform administrators.
		{route: "GET /api/apikeys", path: "/api/apikeys", want: mxExpect{unauth, forbidden, forbidden, ok, ok, forbidden}},
		{route: "POST /api/apikeys", path: "/api/apikeys",
			body: func(c *mxCall) any {
				return map[string]any{"name": c.unique("matrix key "), "role": "viewer", "expires_at": c.fx.inWeek}
			},
			want: mxExpect{unauth, forbidden, forbidden, created, created, forbidden}},
		{route: "DELETE /api/apikeys/{id}", path: "/api/apikeys/${freshKey}", prep: mxPrepAPIKey,
			want: mxExpect{unauth, forbidden, forbidden, noContent, notFound, forbidden}},

		// Tenants: everyone reads their own; the platform administrator manages all.
		{route: "GET /api/tenants", path: "/api/tenants", want: anyUser},
		{route: "POST /api/tenants", path: "/api/tenants", body: mxUniqueBody("name", "Matrix tenant ", ""),
			want: mxExpect{unauth, forbidden, forbidden, forbidden, forbidden, created}},
		{route: "GET /api/tenants/{id}", path: "/api/tenants/${tenantA}", want: mxExpect{unauth, ok, ok, ok, notFound, ok}},
		{route: "PATCH /api/tenants/{id}", path: "/api/tenants/${tenantA}", body: mxUniqueBody("description", "matrix ", ""),
			want: mxExpect{unauth, forbidden, forbidden, forbidden, forbidden, ok}},

		// Users. The platform administrator acts in another tenant with ?tenant_id=.
		{route: "GET /api/users", path: "/api/users", want: adminsList},
		{route: "GET /api/users", path: "/api/users?tenant_id=${tenantA}", want: adminsList},
		{route: "POST /api/users", path: "/api/users",
			body: func(c *mxCall) any { return map[string]any{"username": c.unique("created"), "password": mxNewPassword} },
			want: mxExpect{unauth, forbidden, forbidden, created, created, created}},
		{route: "GET /api/users/{id}", path: "/api/users/${viewer}", // the viewer may read themself
			want: mxExpect{unauth, ok, notFound, ok, notFound, notFound}},
		{route: "GET /api/users/{id}", path: "/api/users/${viewer}?tenant_id=${tenantA}",
			want: mxExpect{unauth, ok, notFound, ok, notFound, ok}},
		{route: "PATCH /api/users/{id}", path: "/api/users/${spare}", body: mxUniqueBody("email", "spare", "@acme.example"),
			want: mxExpect{unauth, notFound, notFound, ok, notFound, notFound}},
		{route: "PATCH /api/users/{id}", path: "/api/users/${spare}?tenant_id=${tenantA}", body: mxUniqueBody("email", "spare", "@acme.example"),
			want: mxExpect{unauth, notFound, notFound, ok, notFound, ok}},
		{route: "DELETE /api/users/{id}", path: "/api/users/${freshUser}", prep: mxPrepUser,
			want: mxExpect{unauth, forbidden, forbidden, noContent, notFound, notFound}},
		{route: "DELETE /api/users/{id}", path: "/api/users/${freshUser}?tenant_id=${tenantA}", prep: mxPrepUser,
			want: mxExpect{unauth, forbidden, forbidden, noContent, notFound, noContent}},
		{route: "GET /api/users/{id}/sessions", path: "/api/users/${viewer}/sessions",
			want: mxExpect{unauth, forbidden, forbidden, ok, notFound, notFound}},
		{route: "GET /api/users/{id}/sessions", path: "/api/users/${viewer}/sessions?tenant_id=${tenantA}",
			want: mxExpect{unauth, forbidden, forbidden, ok, notFound, ok}},
		{route: "DELETE /api/users/{id}/sessions", path: "/api/users/${spare}/sessions",
			want: mxExpect{unauth, forbidden, forbidden, noContent, notFound, notFound}},
		{route: "DELETE /api/users/{id}/sessions", path: "/api/users/${spare}/sessions?tenant_id=${tenantA}",
			want: mxExpect{unauth, forbidden, forbidden, noContent, notFound, noContent}},

		// Hosts.
		{route: "GET /api/hosts", path: "/api/hosts", want: anyUser},
		{route: "POST /api/hosts", path: "/api/hosts", body: mxUniqueBody("hostname", "matrix-host-", ""), want: tenantCreate},
		{route: "GET /api/hosts/{id}", path: "/api/hosts/${host}", want: tenantRead},
		{route: "PATCH /api/hosts/{id}", path: "/api/hosts/${host}", body: mxUniqueBody("os", "linux-", ""), want: tenantWrite},
		{route: "DELETE /api/hosts/{id}", path: "/api/hosts/${freshHost}", prep: mxPrepHost, want: adminDelete},
		{route: "GET /api/hosts/{id}/history", path: "/api/hosts/${host}/history", want: tenantRead},

		// Cases, their tasks, comments and hosts.
		{route: "GET /api/cases", path: "/api/cases", want: anyUser},
		{route: "POST /api/cases", path: "/api/cases", body: mxUniqueBody("title", "Matrix case ", ""), want: tenantCreate},
		{route: "GET /api/cases/{id}", path: "/api/cases/${case}", want: tenantRead},
		{route: "PATCH /api/cases/{id}", path: "/api/cases/${case}", body: mxUniqueBody("title", "Matrix case ", ""), want: tenantWrite},
		{route: "GET /api/cases/{id}/timeline", path: "/api/cases/${case}/timeline", want: tenantRead},
		{route: "GET /api/cases/{id}/tasks", path: "/api/cases/${case}/tasks", want: tenantRead},
		{route: "POST /api/cases/{id}/tasks", path: "/api/cases/${case}/tasks", body: mxUniqueBody("title", "Matrix task ", ""), want: tenantAdd},
		{route: "PATCH /api/cases/{id}/tasks/{task_id}", path: "/api/cases/${case}/tasks/${task}", body: mxUniqueBody("title", "Matrix task ", ""), want: tenantWrite},
		{route: "DELETE /api/cases/{id}/tasks/{task_id}", path: "/api/cases/${case}/tasks/${freshTask}", prep: mxPrepTask, want: writerDelete},
		{route: "GET /api/cases/{id}/comments", path: "/api/cases/${case}/comments", want: tenantRead},
		{route: "POST /api/cases/{id}/comments", path: "/api/cases/${case}/comments", body: mxUniqueBody("body", "Matrix comment ", ""), want: tenantAdd},
		// The comment is the administrator's: the analyst may not edit or delete it.
		{route: "PATCH /api/cases/{id}/comments/{comment_id}", path: "/api/cases/${case}/comments/${comment}", body: mxUniqueBody("body", "Matrix comment ", ""),
			want: mxExpect{unauth, forbidden, forbidden, ok, notFound, forbidden}},
		{route: "DELETE /api/cases/{id}/comments/{comment_id}", path: "/api/cases/${case}/comments/${freshComment}", prep: mxPrepComment,
			want: mxExpect{unauth, forbidden, forbidden, noContent, notFound, forbidden}},
		{route: "POST /api/cases/{id}/hosts", path: "/api/cases/${freshCase}/hosts", prep: mxPrepCase, body: mxJSONBody("host_id", "${host}"), want: tenantWrite},
		{route: "DELETE /api/cases/{id}/hosts/{host_id}", path: "/api/cases/${freshCase}/hosts/${host}", prep: mxPrepCaseWithHost, want: tenantWrite},

		// Artifacts. Adding one to another tenant's case finds no case.
		{route: "GET /api/artifacts", path: "/api/artifacts", want: anyUser},
		{route: "POST /api/artifacts", path: "/api/artifacts",
			body: func(c *mxCall) any {
				return map[string]any{"artifact_type": "domain", "value": c.unique("matrix-") + ".example", "case_id": c.fx.vars["case"]}
			},
			want: tenantAdd},
		{route: "GET /api/artifacts/lookup", path: "/api/artifacts/lookup?value=mx-artifact.example", want: anyUser},
		{route: "GET /api/artifacts/{id}", path: "/api/artifacts/${artifact}", want: tenantRead},
		{route: "PATCH /api/artifacts/{id}", path: "/api/artifacts/${artifact}", body: mxUniqueBody("description", "matrix ", ""), want: tenantWrite},
		{route: "DELETE /api/artifacts/{id}", path: "/api/artifacts/${freshArtifact}", prep: mxPrepArtifact, want: adminDelete},
		{route: "POST /api/artifacts/{id}/sightings", path: "/api/artifacts/${artifact}/sightings",
			body: func(*mxCall) any { return map[string]any{} }, want: tenantWrite},

		// SIEM destinations: tenant administrators only. The syslog receiver
		// named is a closed port: the test delivery fails, and says so.
		{route: "GET /api/siem/destinations", path: "/api/siem/destinations", want: mxExpect{unauth, forbidden, forbidden, ok, ok, forbidden}},
		{route: "POST /api/siem/destinations", path: "/api/siem/destinations", body: mxSIEMBody,
			want: mxExpect{unauth, forbidden, forbidden, created, created, forbidden}},
		{route: "PATCH /api/siem/destinations/{id}", path: "/api/siem/destinations/${freshSIEM}", prep: mxPrepSIEM, body: mxUniqueBody("name", "matrix siem ", ""),
			want: mxExpect{unauth, forbidden, forbidden, ok, notFound, forbidden}},
		{route: "DELETE /api/siem/destinations/{id}", path: "/api/siem/destinations/${freshSIEM}", prep: mxPrepSIEM,
			want: mxExpect{unauth, forbidden, forbidden, noContent, notFound, forbidden}},
		{route: "POST /api/siem/destinations/{id}/test", path: "/api/siem/destinations/${freshSIEM}/test", prep: mxPrepSIEM,
			want: mxExpect{unauth, forbidden, forbidden, ok, notFound, forbidden}},

		// Velociraptor: members of the tenant read, analysts and
		// administrators act, administrators connect; each tenant its own
		// server and org, so B's administrator reaches none of A's.
		{route: "POST /api/velociraptor/config", path: "/api/velociraptor/config",
			body: func(c *mxCall) any { return mxVRConfig(c.t, c.fx, c.who) }, want: mxExpect{unauth, forbidden, forbidden, ok, ok, forbidden}},
		{route: "GET /api/velociraptor/config", path: "/api/velociraptor/config", want: mxExpect{unauth, forbidden, forbidden, ok, ok, forbidden}},
		{route: "GET /api/velociraptor/clients", path: "/api/velociraptor/clients", want: vrMembers},
		{route: "GET /api/velociraptor/clients/{id}", path: "/api/velociraptor/clients/${vrClient}", want: vrRead},
		{route: "POST /api/velociraptor/collect", path: "/api/velociraptor/collect",
			body: mxJSONBody("client_id", "${vrClient}", "artifact_name", "Generic.Client.Info"), want: vrAct},
		{route: "GET /api/velociraptor/collections", path: "/api/velociraptor/collections", want: vrMembers},
		{route: "GET /api/velociraptor/collections", path: "/api/velociraptor/collections?client_id=${vrClient}&status=completed&limit=5", want: vrMembers},
		{route: "GET /api/velociraptor/collections/{id}", path: "/api/velociraptor/collections/${collection}", want: vrRead},
		{route: "POST /api/velociraptor/collections/{id}/cancel", path: "/api/velociraptor/collections/${freshCollection}/cancel", prep: mxPrepHeldCollection, want: vrAct},
		{route: "GET /api/velociraptor/collections/{id}/results", path: "/api/velociraptor/collections/${collection}/results", want: vrRead},
		{route: "POST /api/velociraptor/hunts", path: "/api/velociraptor/hunts", body: mxJSONBody("description", "matrix hunt", "artifact_name", "Generic.Client.Info"),
			want: mxExpect{unauth, forbidden, accepted, accepted, accepted, forbidden}},
		{route: "GET /api/velociraptor/hunts", path: "/api/velociraptor/hunts", want: vrMembers},
		{route: "GET /api/velociraptor/hunts/{id}", path: "/api/velociraptor/hunts/${hunt}", want: vrRead},
		{route: "GET /api/velociraptor/hunts/{id}/results", path: "/api/velociraptor/hunts/${hunt}/results", want: vrRead},
		{route: "POST /api/velociraptor/hunts/{id}/stop", path: "/api/velociraptor/hunts/${freshHunt}/stop", prep: mxPrepHunt, want: vrAct},
		{route: "POST /api/hosts/{id}/quarantine", path: "/api/hosts/${freshEndpoint}/quarantine", prep: mxPrepEndpoint,
			body: mxJSONBody("message", "matrix quarantine"), want: vrAct},
		{route: "POST /api/hosts/{id}/release", path: "/api/hosts/${freshEndpoint}/release", prep: mxPrepQuarantined, want: vrAct},
		{route: "DELETE /api/velociraptor/config", path: "/api/velociraptor/config", prep: mxPrepVRConfig,
			want: mxExpect{unauth, forbidden, forbidden, noContent, noContent, forbidden}},

		// Notifications: one's own inbox only, whatever the role.
		{route: "GET /api/notifications", path: "/api/notifications", want: anyUser},
		{route: "POST /api/notifications/mark-all-read", path: "/api/notifications/mark-all-read", want: anyUser},
		{route: "PUT /api/notifications/{id}", path: "/api/notifications/${notification}", // the viewer's
			body: func(*mxCall) any { return map[string]any{"is_read": true} },
			want: mxExpect{unauth, ok, notFound, notFound, notFound, notFound}},
		{route: "GET /api/notifications/ws", path: "/api/notifications/ws", ws: true,
			want: mxExpect{closed, connected, connected, connected, connected, connected}},

		// The audit log: tenant administrators read their tenant's, platform
		// administrators any tenant's.
		{route: "GET /api/audit", path: "/api/audit", want: adminsList},
		{route: "GET /api/audit", path: "/api/audit?format=csv&tenant_id=${tenantA}", want: adminsList},
		{route: "GET /api/audit/integrity", path: "/api/audit/integrity", want: adminsList},
		{route: "GET /api/audit/{id}", path: "/api/audit/${audit}", want: mxExpect{unauth, forbidden, forbidden, ok, notFound, notFound}},
		{route: "GET /api/audit/{id}", path: "/api/audit/${audit}?tenant_id=${tenantA}", want: mxExpect{unauth, forbidden, forbidden, ok, notFound, ok}},

		// The session ends: last of the session rows, each caller with a fresh session.
		{route: "POST /api/auth/logout", path: "/api/auth/logout", fresh: true, want: mxExpect{unauth, noContent, noContent, noContent, noContent, noContent}},

		// Two-factor authentication, in the order a person goes through it:
		// set up, turn on with a code, regenerate the recovery codes with the
		// next code, turn off with the password and a recovery code. Each
		// signed-in person manages their own; the rows are last because
		// turning it on changes how the accounts sign in.
		{route: "POST /api/auth/2fa/setup", path: "/api/auth/2fa/setup", want: anyUser,
			after: func(c *mxCall, r response) {
				if r.status != http.StatusOK {
					return
				}
				var out struct{ Secret string }
				r.json(c.t, &out)
				c.fx.totp[c.who] = out.Secret
			}},
		{route: "POST /api/auth/2fa/verify", path: "/api/auth/2fa/verify", want: anyUser,
			body:  func(c *mxCall) any { return map[string]any{"code": c.totpCode(0)} },
			after: mxSaveRecoveryCodes},
		{route: "POST /api/auth/2fa/recovery-codes", path: "/api/auth/2fa/recovery-codes", want: anyUser,
			body:  func(c *mxCall) any { return map[string]any{"code": c.totpCode(secTOTPStep)} }, // the verify row spent this step's code
			after: mxSaveRecoveryCodes},
		{route: "POST /api/auth/login/mfa", path: "/api/auth/login/mfa", body: mxJSONBody("mfa_token", "not-an-mfa-token", "code", "000000"),
			want: everyone(unauth)}, // public: the MFA token in the body is the credential
		{route: "POST /api/auth/2fa/disable", path: "/api/auth/2fa/disable", want: anyUser,
			body: func(c *mxCall) any {
				pw, code := "", "0000-0000-0000-0000"
				if u := c.fx.users[c.who]; u != nil {
					pw = u.password
				}
				if codes := c.fx.recovery[c.who]; len(codes) > 0 {
					code = codes[0]
				}
				return map[string]any{"password": pw, "code": code}
			}},
	}
}

func TestMatrixRoleRoute(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	fx := newMatrixFixture(t)
	s := fx.s
	rows := matrixRows()

	// Every served route has a row, and every row's route is served.
	served := secServedRoutes(t, s)
	covered := map[string]bool{}
	for _, row := range rows {
		covered[row.route] = true
	}
	var missing, unserved []string
	for route := range served {
		if !covered[route] {
			missing = append(missing, route)
		}
	}
	for route := range covered {
		if !served[route] {
			unserved = append(unserved, route)
		}
	}
	slices.Sort(missing)
	slices.Sort(unserved)
	for _, route := range missing {
		t.Errorf("route %s is served but has no row in the role × route matrix (matrixRows in e2e_matrix_test.go): add one", route)
	}
	for _, route := range unserved {
		if slices.Contains(secTwoFactorRoutes, route) {
			t.Errorf("2FA route %s has a matrix row but the server does not serve it: the TOTP routes of issue 3 are not wired yet", route)
			continue
		}
		if strings.Contains(route, "/api/siem/") {
			t.Errorf("SIEM route %s has a matrix row but the server does not serve it: the SIEM destination routes are not wired yet", route)
			continue
		}
		t.Errorf("the matrix has a row for %s, which the server does not serve: remove or fix the row", route)
	}

	// A's identifiers, which nothing may show tenant B's administrator. (A's
	// Velociraptor client id is not among them: B's calls name it, and the
	// answer that B's org does not know it repeats it.)
	var secretsOfA []string
	for _, k := range []string{"tenantA", "viewer", "spare", "admin", "host", "case", "task", "comment", "artifact", "apikey", "audit", "notification",
		"collection", "hunt"} {
		secretsOfA = append(secretsOfA, fx.vars[k])
	}

	mismatches := 0
	for _, row := range rows {
		if !served[row.route] {
			continue
		}
		for who := mxPrincipal(0); who < mxPrincipals; who++ {
			fx.calls++
			c := &mxCall{t: t, fx: fx, who: who, n: fx.calls, vars: map[string]string{}}
			if row.prep != nil {
				row.prep(c)
			}
			token := ""
			if u := fx.users[who]; u != nil {
				token = u.token
				if row.fresh {
					token = fx.signIn(t, u).AccessToken
				}
			}
			path := os.Expand(row.path, c.lookup)
			what := fmt.Sprintf("%-14s %s %s", mxPrincipalNames[who], row.route, path)
			if row.ws {
				if got := mxSocket(t, s, token); got != row.want[who] {
					mismatches++
					t.Errorf("%s: socket %d, want %d", what, got, row.want[who])
				}
				continue
			}
			var body any
			if row.body != nil {
				body = row.body(c)
			}
			method, _, _ := strings.Cut(row.route, " ")
			// Each principal calls from its own loopback address, so that the
			// per-address limit of the recovery routes counts them apart.
			r := s.secDoFrom(t, fmt.Sprintf("127.0.0.%d", 10+int(who)), method, path, token, body)
			if r.status != row.want[who] {
				mismatches++
				t.Errorf("%s: status %d, want %d; body %.300s", what, r.status, row.want[who], r.body)
				continue
			}
			if r.status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: 401 without WWW-Authenticate", what)
			}
			if r.status >= 400 {
				r.errorCode(t)
			}
			if row.after != nil {
				row.after(c, r)
			}
			if who == mxAdminB {
				for _, id := range secretsOfA {
					if id != "" && bytes.Contains(r.body, []byte(id)) {
						t.Errorf("%s: tenant B's administrator sees tenant A's id %s: %.300s", what, id, r.body)
					}
				}
			}
		}
	}
	t.Logf("the matrix made %d calls: %d rows × %d principals; %d answered otherwise than the table says", fx.calls, len(rows), mxPrincipals, mismatches)
}

// mxSocket opens the notification socket. With a token it authenticates in
// the first message and returns 101 once the server says connected; without
// one it sends a ping instead and returns the code the server closes with.
func mxSocket(t *testing.T, s *server, token string) int {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(s.base, "http")+"/api/notifications/ws", nil)
	if err != nil {
		if resp != nil {
			return resp.StatusCode
		}
		t.Fatalf("dial the notification socket: %v", err)
	}
	defer conn.Close()
	first := map[string]string{"type": "ping"}
	if token != "" {
		first = map[string]string{"token": token}
	}
	if err := conn.WriteJSON(first); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m struct{ Type string }
	err = conn.ReadJSON(&m)
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		return ce.Code
	case err != nil:
		t.Fatalf("read the notification socket: %v", err)
	case m.Type == "connected":
		return http.StatusSwitchingProtocols
	}
	t.Fatalf("the notification socket answered %+v first", m)
	return 0
}
