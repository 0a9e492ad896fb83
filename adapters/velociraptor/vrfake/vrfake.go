// Package vrfake is a protocol-faithful fake of a Velociraptor server's gRPC
// API (service proto.API, method Query) for tests: mutual TLS with its own
// test CA and a server certificate named VelociraptorServer, answers streamed
// in several parts, problems reported as log lines, and data scoped by org.
//
// It answers only the fixed VQL statements of package velociraptor (matched
// by their exact text) and, like the real server evaluating them, takes every
// argument from the query's env. Production code must never import it.
package vrfake

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"velocicompanion/adapters/velociraptor"
	"velocicompanion/adapters/velociraptor/proto"
)

// ServerCertName is the only DNS name of the fake's server certificate, as on a
// real Velociraptor server.
const ServerCertName = velociraptor.DefaultServerName

// RootOrg is the id of the root org; a request with org_id "" means it too.
const RootOrg = "root"

// Client is one Velociraptor client (endpoint) of the fake.
type Client struct {
	ClientID     string
	Hostname     string
	FQDN         string
	OS           string // windows, linux, darwin
	Release      string
	Machine      string
	MACs         []string
	Labels       []string
	FirstSeen    time.Time
	LastSeen     time.Time
	LastIP       string
	AgentVersion string
}

// Call is one Query the fake received.
type Call struct {
	Org  string            // org_id as sent ("" for the root org)
	Name string            // VQLRequest.Name
	VQL  string            // VQLRequest.VQL
	Env  map[string]string // the request's env
	CN   string            // the caller's certificate common name
}

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	addr    string
	ca      authority
	foreign authority
	grpc    *grpc.Server
	byVQL   map[string]velociraptor.Statement

	mu          sync.Mutex
	orgs        map[string]*org
	access      map[string][]string // CN -> orgs with a role; absent: every org
	rows        map[string][]map[string]any
	failed      map[string]string   // artifact -> log line
	held        map[string]bool     // artifacts whose flows stay RUNNING
	params      map[string][]string // artifact -> the parameters it declares
	finishAfter int
	calls       []Call
	queryID     uint64
}

type org struct {
	clients map[string]*Client
	flows   map[string]*flow // by flow id
	order   []string         // flow ids in start order
	hunts   map[string]*hunt
	hunted  []string // hunt ids in start order
}

type flow struct {
	id, clientID, creator string
	artifacts             []string
	env                   map[string][][2]string // artifact -> the declared parameters given
	polls                 int
	state, status         string
	created               time.Time
	huntID                string
}

type hunt struct {
	id, description, state, os string
	artifacts                  []string
	include, exclude           []string
	spec                       map[string]any
	expires, created           time.Time
	flows                      []string // flow ids, one per client
}

// Start starts a fake server on a loopback port; it stops when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		ca:          newAuthority(t, "VelociCompanion test CA"),
		foreign:     newAuthority(t, "Another Velociraptor CA"),
		byVQL:       map[string]velociraptor.Statement{},
		orgs:        map[string]*org{RootOrg: newOrg()},
		access:      map[string][]string{},
		rows:        map[string][]map[string]any{},
		failed:      map[string]string{},
		held:        map[string]bool{},
		params:      map[string][]string{},
		finishAfter: 1,
	}
	for _, st := range velociraptor.Statements() {
		s.byVQL[st.VQL] = st
	}
	serverKey := newKey(t, false)
	serverCert := s.ca.issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: ServerCertName, Organization: []string{"Velociraptor"}},
		DNSNames:    []string{ServerCertName},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, serverKey.Public())
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(s.ca.cert)
	tlsConfig := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey, Leaf: serverCert}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		MinVersion:   tls.VersionTLS12,
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("vrfake: listen: %v", err)
	}
	s.addr = lis.Addr().String()
	s.grpc = grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConfig)))
	proto.RegisterAPIServer(s.grpc, &api{s: s})
	go func() { _ = s.grpc.Serve(lis) }()
	t.Cleanup(s.grpc.Stop)
	return s
}

func newOrg() *org {
	return &org{clients: map[string]*Client{}, flows: map[string]*flow{}, hunts: map[string]*hunt{}}
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Option changes the api_client configuration APIClientYAML writes.
type Option func(*clientOptions)

type clientOptions struct {
	name, serverName string
	notBefore        time.Time
	notAfter         time.Time
	foreign, rsa     bool
	orgs             []string
	restrictOrgs     bool
}

// Expired makes the client certificate one that expired a day ago.
func Expired() Option {
	return func(o *clientOptions) {
		o.notBefore, o.notAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	}
}

// NotYetValid makes the client certificate one that is valid from tomorrow.
func NotYetValid() Option {
	return func(o *clientOptions) {
		o.notBefore, o.notAfter = time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour)
	}
}

// ForeignCA makes the configuration one of another deployment: its CA and
// client certificate come from a CA the fake does not trust.
func ForeignCA() Option { return func(o *clientOptions) { o.foreign = true } }

// ServerName sets pinned_server_name.
func ServerName(name string) Option { return func(o *clientOptions) { o.serverName = name } }

// Name sets the api_client name, which is also the certificate's common name
// (the identity the fake knows the caller by).
func Name(n string) Option { return func(o *clientOptions) { o.name = n } }

// OrgAccess limits the identity's roles to orgs ("" or "root" is the root
// org); without it the identity has a role in every org.
func OrgAccess(orgs ...string) Option {
	return func(o *clientOptions) { o.orgs, o.restrictOrgs = orgs, true }
}

// RSA makes the client key an RSA key in PKCS#1 form, as Velociraptor writes.
func RSA() Option { return func(o *clientOptions) { o.rsa = true } }

// APIClientYAML returns an api_client configuration for a new client
// certificate, in the form `velociraptor config api_client` writes.
func (s *Server) APIClientYAML(t testing.TB, opt ...Option) []byte {
	t.Helper()
	o := clientOptions{name: "velocicompanion", notBefore: time.Now().Add(-time.Hour), notAfter: time.Now().Add(365 * 24 * time.Hour)}
	for _, f := range opt {
		f(&o)
	}
	if o.restrictOrgs {
		orgs := make([]string, 0, len(o.orgs))
		for _, id := range o.orgs {
			orgs = append(orgs, orgKey(id))
		}
		s.mu.Lock()
		s.access[o.name] = orgs
		s.mu.Unlock()
	}
	ca := s.ca
	if o.foreign {
		ca = s.foreign
	}
	key := newKey(t, o.rsa)
	cert := ca.issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: o.name},
		NotBefore:   o.notBefore,
		NotAfter:    o.notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, key.Public())
	var keyPEM []byte
	if k, ok := key.(*rsa.PrivateKey); ok {
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	} else {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatalf("vrfake: marshal key: %v", err)
		}
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	file := map[string]string{
		"ca_certificate":        string(ca.pem),
		"client_cert":           string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		"client_private_key":    string(keyPEM),
		"api_connection_string": s.addr,
		"name":                  o.name,
	}
	if o.serverName != "" {
		file["pinned_server_name"] = o.serverName
	}
	out, err := yaml.MarshalWithOptions(file, yaml.UseLiteralStyleIfMultiline(true))
	if err != nil {
		t.Fatalf("vrfake: marshal api_client: %v", err)
	}
	return out
}

func newAuthority(t testing.TB, name string) authority {
	key := newKey(t, false)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Velociraptor"}},
		NotBefore:             time.Now().Add(-10 * 24 * time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("vrfake: create CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("vrfake: parse CA: %v", err)
	}
	return authority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (a authority) issue(t testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey) *x509.Certificate {
	tmpl.SerialNumber = serial(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		t.Fatalf("vrfake: issue certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("vrfake: parse certificate: %v", err)
	}
	return cert
}

func newKey(t testing.TB, useRSA bool) crypto.Signer {
	var (
		key crypto.Signer
		err error
	)
	if useRSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatalf("vrfake: generate key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatalf("vrfake: serial: %v", err)
	}
	return n
}

func orgKey(id string) string {
	if id == "" {
		return RootOrg
	}
	return id
}

// AddClient adds (or replaces) a client of org ("" is the root org); an org
// that did not exist is created.
func (s *Server) AddClient(orgID string, c Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.org(orgKey(orgID))
	c.MACs = slices.Clone(c.MACs)
	c.Labels = slices.Clone(c.Labels)
	o.clients[c.ClientID] = &c
}

// AddOrg creates an empty org.
func (s *Server) AddOrg(orgID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.org(orgKey(orgID))
}

func (s *Server) org(key string) *org {
	o, ok := s.orgs[key]
	if !ok {
		o = newOrg()
		s.orgs[key] = o
	}
	return o
}

// SetArtifactRows sets the rows a collection of artifactSource ("Name" or
// "Name/Source") returns; the artifact becomes known to the fake.
func (s *Server) SetArtifactRows(artifactSource string, rows []map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := make([]map[string]any, len(rows))
	for i, r := range rows {
		cp[i] = map[string]any{}
		for k, v := range r {
			cp[i][k] = v
		}
	}
	s.rows[artifactSource] = cp
}

// DeclareParameters makes the artifact name declare the parameters names:
// as in Velociraptor, a collection records, of the env it was given, only the
// parameters its artifacts declare (none unless declared here).
func (s *Server) DeclareParameters(name string, names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.params[name] = append(s.params[name], names...)
}

// FinishAfterPolls makes flows report RUNNING to their first n polls and
// then end (default 1).
func (s *Server) FinishAfterPolls(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finishAfter = n
}

// FailArtifact makes collections of the artifact name end in ERROR with
// status logLine; the artifact becomes known to the fake.
func (s *Server) FailArtifact(name, logLine string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed[name] = logLine
}

// HoldArtifact keeps the flows that collect the artifact name RUNNING,
// however often they are polled, until ReleaseArtifact (a cancel still ends
// them); the artifact becomes known to the fake.
func (s *Server) HoldArtifact(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held[name] = true
}

// ReleaseArtifact lets the flows of a held artifact end as the others do.
func (s *Server) ReleaseArtifact(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.held, name)
}

// FlowState returns the state (RUNNING, FINISHED, ERROR) and status of the
// flow flowID in org, and whether the org has it. A cancelled flow is in
// ERROR with a status that starts with "Cancelled by", as in Velociraptor.
func (s *Server) FlowState(orgID, flowID string) (state, status string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, known := s.orgs[orgKey(orgID)]
	if !known {
		return "", "", false
	}
	f, known := o.flows[flowID]
	if !known {
		return "", "", false
	}
	return f.state, f.status, true
}

// Calls returns every query received, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		c.Env = copyMap(c.Env)
		out[i] = c
	}
	return out
}

func copyMap(m map[string]string) map[string]string {
	cp := make(map[string]string, len(m))
	for k, v := range m {
		cp[k] = v
	}
	return cp
}

// HuntClients makes clients take part in the hunt: each runs the hunt's
// collection at once (a flow whose id ends in ".H"), which ends in ERROR for
// a failed artifact and otherwise reports the artifacts' rows.
func (s *Server) HuntClients(huntID string, clientIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.orgs {
		h, ok := o.hunts[huntID]
		if !ok {
			continue
		}
		for _, id := range clientIDs {
			if _, known := o.clients[id]; !known || h.state != "RUNNING" {
				continue
			}
			f := &flow{
				id: newID("F.") + ".H", clientID: id, creator: "hunt", artifacts: slices.Clone(h.artifacts),
				created: time.Now(), huntID: h.id, state: "RUNNING",
			}
			s.finish(f)
			o.flows[f.id] = f
			o.order = append(o.order, f.id)
			h.flows = append(h.flows, f.id)
		}
		return
	}
}

// Labels returns the client's labels in org, sorted.
func (s *Server) Labels(orgID, clientID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orgs[orgKey(orgID)]
	if !ok {
		return nil
	}
	c, ok := o.clients[clientID]
	if !ok {
		return nil
	}
	labels := slices.Clone(c.Labels)
	sort.Strings(labels)
	return labels
}

// Flows returns the ids of the flows started on the client in org, in start
// order (collections and hunts).
func (s *Server) Flows(orgID, clientID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orgs[orgKey(orgID)]
	if !ok {
		return nil
	}
	var ids []string
	for _, id := range o.order {
		if o.flows[id].clientID == clientID {
			ids = append(ids, id)
		}
	}
	return ids
}

// newID returns prefix and 13 random upper-case letters and digits, the form
// of Velociraptor's flow and hunt ids.
func newID(prefix string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 13)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic(fmt.Sprintf("vrfake: random id: %v", err))
		}
		b[i] = alphabet[n.Int64()]
	}
	return prefix + string(b)
}
