package velociraptor

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"velocicompanion/adapters/velociraptor/proto"
	"velocicompanion/domain"
)

// Limits of one connection and one query.
const (
	// MaxReceiveSize bounds one VQLResponse part; result parts can be large.
	MaxReceiveSize = 64 << 20
	// MaxAnswerSize bounds all the parts of one query's answer together.
	MaxAnswerSize = 512 << 20
	// maxProblems bounds the error lines kept from one answer.
	maxProblems = 20
	// DefaultTimeout bounds a query whose context has no deadline.
	DefaultTimeout = 2 * time.Minute
	// rowsPerPart asks the server to send at most this many rows per part.
	rowsPerPart = 1000
	// maxLogText bounds the log text an error carries.
	maxLogText = 2000
)

// The codes of the errors a query returns.
const (
	CodeRefused          = "velociraptor_refused"
	CodeUnreachable      = "velociraptor_unreachable"
	CodeTimeout          = "velociraptor_timeout"
	CodeNotFound         = "velociraptor_not_found"
	CodeUnknownArtifact  = "velociraptor_unknown_artifact"
	CodePermissionDenied = "velociraptor_permission_denied"
	CodeQueryFailed      = "velociraptor_query_failed"
	CodeBadResponse      = "velociraptor_bad_response"
	CodeTooLarge         = "velociraptor_answer_too_large"
)

// Client is one gRPC connection to a Velociraptor server, authenticated both
// ways with the api_client's certificates. It is safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	api     proto.APIClient
	address string
	// principal is the name Velociraptor knows this identity by (the client
	// certificate's common name): the creator of the flows it starts.
	principal string
}

// Dial prepares a connection to a's server; it connects lazily, on the first
// query. The TLS configuration trusts only the CA of the api_client file and
// pins the server name.
func Dial(a APIClient, opts ...DialOption) (*Client, error) {
	if a.leaf == nil {
		return nil, invalid("the api_client configuration was not parsed")
	}
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	tlsConfig := &tls.Config{
		Certificates: []tls.Certificate{a.cert},
		RootCAs:      a.roots,
		ServerName:   a.serverName,
		MinVersion:   tls.VersionTLS12,
	}
	options := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxReceiveSize)),
		// Pings only while a query runs, and no more often than grpc-go
		// servers tolerate by default (5 minutes).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 5 * time.Minute, Timeout: 20 * time.Second}),
		grpc.WithUserAgent("velocicompanion"),
	}
	if o.control != nil {
		d := &net.Dialer{Timeout: 10 * time.Second, Control: o.control}
		options = append(options, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	}
	conn, err := grpc.NewClient(a.address, options...)
	if err != nil {
		return nil, domain.Unavailable(CodeUnreachable, "cannot prepare a connection to Velociraptor at %s", a.address)
	}
	return &Client{conn: conn, api: proto.NewAPIClient(conn), address: a.address, principal: a.leaf.Subject.CommonName}, nil
}

// DialOption changes how Dial connects.
type DialOption func(*dialOptions)

type dialOptions struct {
	control func(network, address string, c syscall.RawConn) error
}

// WithControl has every connection's socket checked by control before it
// connects (after name resolution), as net.Dialer.Control does: an operator's
// network policy refuses the addresses a tenant may not reach.
func WithControl(control func(network, address string, c syscall.RawConn) error) DialOption {
	return func(o *dialOptions) { o.control = control }
}

// Close closes the connection; queries in flight fail.
func (c *Client) Close() error { return c.conn.Close() }

// Org is the view of one Velociraptor org through a Client; every query sends
// its id ("" is the root org).
type Org struct {
	client *Client
	id     string
}

// Org returns the org orgID of c's server; "" is the root org.
func (c *Client) Org(orgID string) Org { return Org{client: c, id: orgID} }

// ID returns the org's id ("" for the root org).
func (o Org) ID() string { return o.id }

// VQLError is a query that Velociraptor answered with log lines that report a
// problem. It unwraps to a *domain.Error whose message is the log text.
type VQLError struct {
	Statement string // the statement's name
	Log       string // the log lines that reported the problem
	err       *domain.Error
}

func (e *VQLError) Error() string { return "velociraptor " + e.Statement + ": " + e.Log }

// Unwrap returns the *domain.Error that classifies e.
func (e *VQLError) Unwrap() error { return e.err }

// errorMarkers are the log texts that report a failed query; other log lines
// (progress, statistics) are not errors.
var errorMarkers = []string{
	"VQL Error:", "Unknown artifact", "not known in this org", "PermissionDenied", "Permission denied",
	"permission denied", "Error:", "ERROR:",
	// vfilter's argument parser, which plugins and functions log as
	// "name: Unexpected arg x" or "name: Field x is required".
	"Unexpected arg", " is required",
}

func isErrorLog(line string) bool {
	for _, m := range errorMarkers {
		if strings.Contains(line, m) {
			return true
		}
	}
	return false
}

func newVQLError(stmt string, logs []string) *VQLError {
	text := strings.Join(logs, "; ")
	if len(text) > maxLogText {
		text = text[:maxLogText] + "…"
	}
	var de *domain.Error
	switch {
	case strings.Contains(text, "not known in this org"):
		de = domain.NotFound(CodeNotFound, "%s", text)
	case strings.Contains(text, "Unknown artifact"):
		de = domain.Invalid(CodeUnknownArtifact, "%s", text)
	case strings.Contains(text, "PermissionDenied"), strings.Contains(strings.ToLower(text), "permission denied"):
		de = domain.Upstream(CodePermissionDenied, "%s", text)
	default:
		de = domain.Upstream(CodeQueryFailed, "%s", text)
	}
	return &VQLError{Statement: stmt, Log: text, err: de}
}

// Query runs one VQL statement with env, gathers every part of the answer and
// returns its rows. Every value that came from a user must be in env, never
// in vql. Log lines that report a problem make it fail even when rows came.
func (o Org) Query(ctx context.Context, vql string, env map[string]string) ([]json.RawMessage, error) {
	return o.query(ctx, "vc_query", vql, env)
}

// run runs the named statement of this package.
func (o Org) run(ctx context.Context, name string, env map[string]string) ([]json.RawMessage, error) {
	s := statement(name)
	return o.query(ctx, s.Name, s.VQL, env)
}

func (o Org) query(ctx context.Context, name, vql string, env map[string]string) ([]json.RawMessage, error) {
	if o.client == nil {
		return nil, domain.Unavailable(CodeUnreachable, "no Velociraptor connection")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	timeout := max(uint64(time.Until(deadline)/time.Second), 1)

	args := &proto.VQLCollectorArgs{
		Query:   []*proto.VQLRequest{{Name: name, VQL: vql}},
		MaxRow:  rowsPerPart,
		MaxWait: 1,
		Timeout: timeout,
		OrgId:   o.id,
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		args.Env = append(args.Env, &proto.VQLEnv{Key: k, Value: env[k]})
	}

	stream, err := o.client.api.Query(ctx, args)
	if err != nil {
		return nil, o.client.callError(ctx, err)
	}
	var (
		rows     []json.RawMessage
		problems []string
		size     int
	)
	for {
		part, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, o.client.callError(ctx, err)
		}
		if line := strings.TrimSpace(part.GetLog()); line != "" && isErrorLog(line) && len(problems) < maxProblems {
			problems = append(problems, line)
		}
		text := strings.TrimSpace(part.GetResponse())
		if text == "" || text == "[]" {
			continue
		}
		// A server that never stops answering must not take all memory.
		if size += len(text); size > MaxAnswerSize {
			return nil, domain.Upstream(CodeTooLarge, "Velociraptor's answer to %s is larger than %d MiB", name, MaxAnswerSize>>20)
		}
		var partRows []json.RawMessage
		if err := json.Unmarshal([]byte(text), &partRows); err != nil {
			return nil, domain.Upstream(CodeBadResponse, "Velociraptor answered %s with a part that is not a JSON array of rows", name)
		}
		rows = append(rows, partRows...)
	}
	if len(problems) > 0 {
		return nil, newVQLError(name, problems)
	}
	return rows, nil
}

// callError maps a gRPC failure of the call itself.
func (c *Client) callError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	st, _ := status.FromError(err)
	msg := st.Message()
	if len(msg) > 500 {
		msg = msg[:500] + "…"
	}
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied:
		return domain.Upstream(CodeRefused, "Velociraptor at %s refused the API client: %s", c.address, msg)
	case codes.Unavailable:
		return domain.Unavailable(CodeUnreachable, "cannot reach Velociraptor at %s: %s", c.address, msg)
	case codes.DeadlineExceeded:
		return domain.Unavailable(CodeTimeout, "Velociraptor at %s did not answer in time", c.address)
	case codes.Canceled:
		return domain.Unavailable(CodeUnreachable, "the query to Velociraptor at %s was cancelled: %s", c.address, msg)
	}
	return domain.Upstream(CodeQueryFailed, "Velociraptor at %s failed the query (%s): %s", c.address, st.Code(), msg)
}

// jsonString encodes v (a list or map) as the JSON text an env value carries.
func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("velociraptor: encode env value: %v", err)) // only strings, lists and maps of strings
	}
	return string(b)
}
