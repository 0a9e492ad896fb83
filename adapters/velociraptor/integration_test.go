package velociraptor_test

import (
	"context"
	"os"
	"testing"
	"time"

	"velocicompanion/adapters/velociraptor"
)

// TestRealServer runs against a real Velociraptor server when
// VC_VELOCIRAPTOR_API_CONFIG names the file of an api_client configuration
// (`velociraptor config api_client --name vc --role administrator out.yaml`);
// VC_VELOCIRAPTOR_ORG picks the org (root by default).
func TestRealServer(t *testing.T) {
	path := os.Getenv("VC_VELOCIRAPTOR_API_CONFIG")
	if path == "" {
		t.Skip("VC_VELOCIRAPTOR_API_CONFIG is not set: no real Velociraptor server to test against")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	a, err := velociraptor.ParseAPIClient(data, time.Now())
	if err != nil {
		t.Fatalf("ParseAPIClient: %v", err)
	}
	c, err := velociraptor.Dial(a)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	org := c.Org(os.Getenv("VC_VELOCIRAPTOR_ORG"))

	if err := org.Ping(ctx); err != nil {
		t.Fatalf("Ping %s: %v", a.Summary().Address, err)
	}
	clients, err := org.Clients(ctx, "", 50)
	if err != nil {
		t.Fatalf("Clients: %v", err)
	}
	t.Logf("%d clients", len(clients))
	for _, cl := range clients {
		if err := velociraptor.CheckClientID(cl.ClientID); err != nil {
			t.Errorf("client id %q: %v", cl.ClientID, err)
		}
		if !cl.LastSeen.IsZero() && (cl.LastSeen.Year() < 2015 || cl.LastSeen.After(time.Now().Add(24*time.Hour))) {
			t.Errorf("client %s last seen %s: the µs conversion is wrong", cl.ClientID, cl.LastSeen)
		}
		if !cl.FirstSeen.IsZero() && (cl.FirstSeen.Year() < 2015 || cl.FirstSeen.After(time.Now().Add(24*time.Hour))) {
			t.Errorf("client %s first seen %s: the seconds conversion is wrong", cl.ClientID, cl.FirstSeen)
		}
	}
	if len(clients) > 0 {
		one, err := org.Client(ctx, clients[0].ClientID)
		if err != nil || one.ClientID != clients[0].ClientID {
			t.Fatalf("Client(%s) = %+v, %v", clients[0].ClientID, one, err)
		}
	}
}
