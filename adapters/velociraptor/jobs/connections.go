// Package jobs runs VelociCompanion's side of the Velociraptor integration:
// the per-tenant connections, the process manager that carries requested
// collections, hunts and quarantines through to Velociraptor and records what
// came of them, and the client sync that keeps the hosts read model following
// each tenant's fleet.
//
// A tenant reaches only the Velociraptor server and org of its own stored
// api_client configuration: every connection is looked up by the tenant of the
// job or request at hand, never by anything a client sent.
package jobs

import (
	"context"
	"errors"
	"sync"
	"time"

	"velocicompanion/adapters/velociraptor"
	"velocicompanion/commands"
	"velocicompanion/domain"
)

// ErrNotConfigured answers a request for a tenant without a Velociraptor
// connection.
var ErrNotConfigured = domain.Conflict("velociraptor_not_configured",
	"Velociraptor is not configured for this tenant: an administrator posts its api_client configuration to /api/velociraptor/config")

// Connections dials each tenant's Velociraptor server once and keeps the
// connection while the tenant's stored configuration stays the same.
type Connections struct {
	cmds *commands.Velociraptor
	now  func() time.Time
	dial []velociraptor.DialOption

	mu    sync.Mutex
	conns map[domain.TenantID]*conn
}

type conn struct {
	version int64
	client  *velociraptor.Client
	org     velociraptor.Org
}

// NewConnections returns the connections of the tenants configured through
// cmds, dialled with opts (an operator's network policy).
func NewConnections(cmds *commands.Velociraptor, opts ...velociraptor.DialOption) *Connections {
	return &Connections{cmds: cmds, now: time.Now, dial: opts, conns: map[domain.TenantID]*conn{}}
}

// Dial connects to the server of a configuration that is not stored yet (to
// check it before it is), with the same options as the stored ones.
func (c *Connections) Dial(api velociraptor.APIClient) (*velociraptor.Client, error) {
	return velociraptor.Dial(api, c.dial...)
}

// Org returns the Velociraptor org of tenant's stored configuration.
func (c *Connections) Org(ctx context.Context, tenant domain.TenantID) (velociraptor.Org, error) {
	config, orgID, version, err := c.cmds.Credentials(ctx, tenant)
	if errors.Is(err, domain.ErrNotFound) {
		c.drop(tenant)
		return velociraptor.Org{}, ErrNotConfigured
	}
	if err != nil {
		return velociraptor.Org{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.conns[tenant]; ok && cur.version == version {
		return cur.org, nil
	}
	api, err := velociraptor.ParseAPIClient(config, c.now())
	if err != nil {
		return velociraptor.Org{}, err
	}
	client, err := velociraptor.Dial(api, c.dial...)
	if err != nil {
		return velociraptor.Org{}, err
	}
	if old, ok := c.conns[tenant]; ok {
		_ = old.client.Close()
	}
	cur := &conn{version: version, client: client, org: client.Org(orgID)}
	c.conns[tenant] = cur
	return cur.org, nil
}

func (c *Connections) drop(tenant domain.TenantID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.conns[tenant]; ok {
		_ = old.client.Close()
		delete(c.conns, tenant)
	}
}

// Close closes every connection.
func (c *Connections) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for t, cur := range c.conns {
		_ = cur.client.Close()
		delete(c.conns, t)
	}
}
