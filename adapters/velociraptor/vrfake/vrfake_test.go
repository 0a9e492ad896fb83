package vrfake_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"velocicompanion/adapters/velociraptor"
	"velocicompanion/adapters/velociraptor/proto"
	"velocicompanion/adapters/velociraptor/vrfake"
)

// rawClient speaks to the fake with the generated gRPC client only, to check
// the wire shape of its answers.
func rawClient(t *testing.T, fake *vrfake.Server) proto.APIClient {
	t.Helper()
	var file map[string]string
	if err := yaml.Unmarshal(fake.APIClientYAML(t), &file); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair([]byte(file["client_cert"]), []byte(file["client_private_key"]))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(file["ca_certificate"])) {
		t.Fatal("no CA")
	}
	conn, err := grpc.NewClient(file["api_connection_string"], grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: "VelociraptorServer", MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return proto.NewAPIClient(conn)
}

func statement(t *testing.T, name string) velociraptor.Statement {
	for _, s := range velociraptor.Statements() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no statement %s", name)
	return velociraptor.Statement{}
}

func collect(t *testing.T, api proto.APIClient, org string, st velociraptor.Statement, env map[string]string) []*proto.VQLResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := &proto.VQLCollectorArgs{Query: []*proto.VQLRequest{{Name: st.Name, VQL: st.VQL}}, OrgId: org}
	for k, v := range env {
		args.Env = append(args.Env, &proto.VQLEnv{Key: k, Value: v})
	}
	stream, err := api.Query(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	var parts []*proto.VQLResponse
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return parts
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		parts = append(parts, r)
	}
}

func TestWireShape(t *testing.T) {
	fake := vrfake.Start(t)
	for _, id := range []string{"C.0000000000000001", "C.0000000000000002", "C.0000000000000003", "C.0000000000000004", "C.0000000000000005"} {
		fake.AddClient("", vrfake.Client{ClientID: id, Hostname: "h"})
	}
	api := rawClient(t, fake)

	t.Run("rows come in several parts after an empty one", func(t *testing.T) {
		parts := collect(t, api, "", statement(t, velociraptor.StmtClients), map[string]string{"Search": ""})
		rows, withRows := 0, 0
		for i, p := range parts {
			if p.GetPart() != uint64(i) || p.GetQuery().GetName() != velociraptor.StmtClients || p.GetTimestamp() == 0 {
				t.Fatalf("part %d = %+v", i, p)
			}
			if p.GetResponse() == "[]" {
				if len(p.GetColumns()) != 0 {
					t.Fatalf("an empty part has columns %v", p.GetColumns())
				}
				continue
			}
			var r []map[string]any
			if err := json.Unmarshal([]byte(p.GetResponse()), &r); err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			if len(p.GetColumns()) == 0 {
				t.Fatalf("part %d with rows has no columns", i)
			}
			rows += len(r)
			withRows++
		}
		if parts[0].GetResponse() != "[]" || rows != 5 || withRows != 3 {
			t.Fatalf("parts: first %q, %d rows in %d parts; want an empty first part and 5 rows in 3", parts[0].GetResponse(), rows, withRows)
		}
	})

	t.Run("an error is a log line and a null row", func(t *testing.T) {
		parts := collect(t, api, "", statement(t, velociraptor.StmtCollect), map[string]string{
			"ClientId": "C.0000000000000001", "Artifacts": `["No.Such.Artifact"]`, "CollectEnv": "{}",
		})
		var logs, resp []string
		for _, p := range parts {
			if p.GetLog() != "" {
				logs = append(logs, p.GetLog())
			}
			if p.GetResponse() != "" && p.GetResponse() != "[]" {
				resp = append(resp, p.GetResponse())
			}
		}
		if len(logs) != 1 || logs[0] != "collect_client: Unknown artifact No.Such.Artifact" || len(resp) != 1 || resp[0] != `[{"Collection":null}]` {
			t.Fatalf("logs %q, rows %q", logs, resp)
		}
	})

	t.Run("arguments come only from env", func(t *testing.T) {
		parts := collect(t, api, "", statement(t, velociraptor.StmtClient), map[string]string{})
		if len(parts) != 2 || parts[1].GetLog() != "VQL Error: Symbol ClientId not found" {
			t.Fatalf("parts = %v", parts)
		}
		parts = collect(t, api, "", velociraptor.Statement{Name: "x", VQL: "SELECT * FROM clients(client_id='C.0000000000000001')"}, nil)
		if len(parts) != 2 || parts[1].GetLog() == "" || parts[1].GetResponse() != "" {
			t.Fatalf("a statement with a literal argument was answered: %v", parts)
		}
	})

	calls := fake.Calls()
	if len(calls) != 4 || calls[0].CN != "velocicompanion" || len(calls[0].Env) != 1 {
		t.Fatalf("calls = %+v", calls)
	}
}
