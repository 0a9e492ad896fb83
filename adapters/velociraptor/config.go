// Package velociraptor is VelociCompanion's client of a Velociraptor server's
// gRPC API: it parses and checks an api_client configuration, holds one
// mutually authenticated TLS connection per configuration and runs the fixed
// VQL statements of this package through the streaming Query method, with
// every value that came from a user passed in the query's env.
//
// It imports package domain for its errors and the generated code in
// adapters/velociraptor/proto; it must not import commands, projections or
// eventstore.
package velociraptor

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"velocicompanion/domain"
)

// DefaultAddress is where the API listens when api_connection_string is empty.
const DefaultAddress = "127.0.0.1:8001"

// DefaultServerName is the only name in a Velociraptor server's certificate.
const DefaultServerName = "VelociraptorServer"

// The codes of the errors ParseAPIClient returns.
const (
	CodeConfigInvalid   = "velociraptor_config_invalid"
	CodeKeyMismatch     = "velociraptor_key_mismatch"
	CodeCertExpired     = "velociraptor_cert_expired"
	CodeCertNotYetValid = "velociraptor_cert_not_yet_valid"
)

// APIClient is a parsed and checked api_client configuration. It holds the
// client's private key: it is never printed (String and GoString show only
// its Summary) and must never be stored outside a sealed configuration.
type APIClient struct {
	roots      *x509.CertPool
	cert       tls.Certificate
	leaf       *x509.Certificate
	address    string
	serverName string
	name       string
}

// Summary describes an APIClient without its secrets.
type Summary struct {
	Name        string    `json:"name"`        // api_client name
	Address     string    `json:"address"`     // host:port
	ServerName  string    `json:"server_name"` // pinned TLS name
	CommonName  string    `json:"common_name"` // client certificate CN
	Fingerprint string    `json:"fingerprint"` // SHA-256 of the client certificate DER, lower-case hex
	NotAfter    time.Time `json:"not_after"`
}

// apiClientFile is the shape of `velociraptor config api_client` output.
type apiClientFile struct {
	CACertificate       string `yaml:"ca_certificate"`
	ClientCert          string `yaml:"client_cert"`
	ClientPrivateKey    string `yaml:"client_private_key"`
	APIConnectionString string `yaml:"api_connection_string"`
	Name                string `yaml:"name"`
	PinnedServerName    string `yaml:"pinned_server_name"`
}

// maxConfigSize bounds what ParseAPIClient reads; a real file is about 5 KiB.
const maxConfigSize = 256 << 10

func invalid(format string, args ...any) error {
	return domain.Invalid(CodeConfigInvalid, format, args...)
}

// ParseAPIClient parses an api_client YAML and checks it as of now: the PEM
// blocks, that the private key belongs to the client certificate, that the
// certificate is valid at now and that it was issued by the file's CA. Its
// errors are *domain.Error and never contain key material or the file's text.
func ParseAPIClient(data []byte, now time.Time) (APIClient, error) {
	if len(data) == 0 {
		return APIClient{}, invalid("the api_client configuration is empty")
	}
	if len(data) > maxConfigSize {
		return APIClient{}, invalid("the api_client configuration is larger than %d KiB", maxConfigSize>>10)
	}
	// The parser's own error quotes the input, which may be the private key:
	// it is deliberately not passed on.
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return APIClient{}, invalid("the api_client configuration is not valid YAML: expected the output of `velociraptor config api_client`")
	}
	// Aliases are expanded when decoding: a few hundred bytes of nested
	// aliases ("billion laughs") would take all the server's memory. The
	// file Velociraptor writes has none.
	if len(ast.FilterFile(ast.AnchorType, file)) > 0 || len(ast.FilterFile(ast.AliasType, file)) > 0 {
		return APIClient{}, invalid("the api_client configuration may not use YAML anchors or aliases")
	}
	var f apiClientFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return APIClient{}, invalid("the api_client configuration is not valid YAML: expected the output of `velociraptor config api_client`")
	}
	for _, field := range []struct{ key, value string }{
		{"ca_certificate", f.CACertificate}, {"client_cert", f.ClientCert}, {"client_private_key", f.ClientPrivateKey},
	} {
		if strings.TrimSpace(field.value) == "" {
			return APIClient{}, invalid("the api_client configuration has no %s", field.key)
		}
	}

	cas, err := parseCertificates("ca_certificate", f.CACertificate)
	if err != nil {
		return APIClient{}, err
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	certs, err := parseCertificates("client_cert", f.ClientCert)
	if err != nil {
		return APIClient{}, err
	}
	leaf := certs[0]
	if err := checkPrivateKey(f.ClientPrivateKey); err != nil {
		return APIClient{}, err
	}
	pair, err := tls.X509KeyPair([]byte(f.ClientCert), []byte(f.ClientPrivateKey))
	if err != nil {
		return APIClient{}, domain.Invalid(CodeKeyMismatch, "client_private_key is not the key of client_cert")
	}
	pair.Leaf = leaf

	switch {
	case now.Before(leaf.NotBefore):
		return APIClient{}, domain.Invalid(CodeCertNotYetValid,
			"the client certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return APIClient{}, domain.Invalid(CodeCertExpired,
			"the client certificate expired at %s: create a new api_client configuration", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return APIClient{}, invalid("client_cert was not issued by ca_certificate (or the CA is not valid now)")
	}

	address := strings.TrimSpace(f.APIConnectionString)
	if address == "" {
		address = DefaultAddress
	}
	if err := checkAddress(address); err != nil {
		return APIClient{}, err
	}
	serverName := strings.TrimSpace(f.PinnedServerName)
	if serverName == "" {
		serverName = DefaultServerName
	}
	name := strings.TrimSpace(f.Name)
	if name == "" {
		name = leaf.Subject.CommonName
	}
	return APIClient{roots: roots, cert: pair, leaf: leaf, address: address, serverName: serverName, name: name}, nil
}

// parseCertificates decodes every CERTIFICATE block of field's PEM text.
func parseCertificates(field, text string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := []byte(text)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, invalid("%s holds a PEM block that is not a certificate", field)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, invalid("%s holds a certificate that cannot be parsed", field)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, invalid("%s is not a PEM certificate", field)
	}
	return certs, nil
}

// checkPrivateKey reports whether text is one PEM private key that parses.
func checkPrivateKey(text string) error {
	block, _ := pem.Decode([]byte(text))
	if block == nil || !strings.HasSuffix(block.Type, "PRIVATE KEY") {
		return invalid("client_private_key is not a PEM private key")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return nil
	}
	if _, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return nil
	}
	return invalid("client_private_key cannot be parsed (expected an RSA, ECDSA or Ed25519 key)")
}

func checkAddress(address string) error {
	host, port, err := net.SplitHostPort(address)
	if err != nil || host == "" {
		return invalid("api_connection_string must be host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return invalid("api_connection_string has an invalid port")
	}
	return nil
}

// Summary returns what may be shown and stored about a.
func (a APIClient) Summary() Summary {
	if a.leaf == nil {
		return Summary{}
	}
	sum := sha256.Sum256(a.leaf.Raw)
	return Summary{
		Name:        a.name,
		Address:     a.address,
		ServerName:  a.serverName,
		CommonName:  a.leaf.Subject.CommonName,
		Fingerprint: hex.EncodeToString(sum[:]),
		NotAfter:    a.leaf.NotAfter.UTC(),
	}
}

// String describes a without its private key.
func (a APIClient) String() string {
	s := a.Summary()
	return fmt.Sprintf("velociraptor.APIClient{name=%q address=%q server_name=%q cn=%q fingerprint=%s}",
		s.Name, s.Address, s.ServerName, s.CommonName, s.Fingerprint)
}

// GoString is String, so that %#v does not print the private key either.
func (a APIClient) GoString() string { return a.String() }

// LogValue logs a's Summary only.
func (a APIClient) LogValue() slog.Value { return slog.AnyValue(a.Summary()) }
