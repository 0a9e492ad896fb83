package velociraptor_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"velocicompanion/adapters/velociraptor"
	"velocicompanion/adapters/velociraptor/vrfake"
	"velocicompanion/domain"
)

// editYAML returns the api_client YAML with edit applied to its fields.
func editYAML(t *testing.T, data []byte, edit func(map[string]string)) []byte {
	t.Helper()
	var m map[string]string
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("unmarshal api_client: %v", err)
	}
	edit(m)
	out, err := yaml.MarshalWithOptions(m, yaml.UseLiteralStyleIfMultiline(true))
	if err != nil {
		t.Fatalf("marshal api_client: %v", err)
	}
	return out
}

func field(t *testing.T, data []byte, key string) string {
	t.Helper()
	var m map[string]string
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("unmarshal api_client: %v", err)
	}
	return m[key]
}

// keyBody returns the base64 body of a PEM private key, to check that no
// error ever quotes it.
func keyBody(t *testing.T, data []byte) string {
	t.Helper()
	block, _ := pem.Decode([]byte(field(t, data, "client_private_key")))
	if block == nil {
		t.Fatal("no private key in the api_client")
	}
	lines := strings.Split(field(t, data, "client_private_key"), "\n")
	return lines[1] // the first line of base64
}

func TestParseAPIClient(t *testing.T) {
	fake := vrfake.Start(t)
	good := fake.APIClientYAML(t, vrfake.Name("analyst-api"))
	other := fake.APIClientYAML(t)
	foreign := fake.APIClientYAML(t, vrfake.ForeignCA())
	now := time.Now()

	tests := []struct {
		name     string
		yaml     []byte
		now      time.Time
		wantCode string // "" means it parses
	}{
		{"valid ecdsa", good, now, ""},
		{"valid rsa pkcs1 like velociraptor writes", fake.APIClientYAML(t, vrfake.RSA()), now, ""},
		{"foreign but self-consistent file parses", foreign, now, ""},
		{"empty", nil, now, velociraptor.CodeConfigInvalid},
		{"garbage yaml", []byte("{{{ ca_certificate: [unclosed\n\t- :"), now, velociraptor.CodeConfigInvalid},
		{"yaml that is a list", []byte("- a\n- b\n"), now, velociraptor.CodeConfigInvalid},
		{"missing ca", editYAML(t, good, func(m map[string]string) { delete(m, "ca_certificate") }), now, velociraptor.CodeConfigInvalid},
		{"missing key", editYAML(t, good, func(m map[string]string) { m["client_private_key"] = "  " }), now, velociraptor.CodeConfigInvalid},
		{"ca not pem", editYAML(t, good, func(m map[string]string) { m["ca_certificate"] = "hello" }), now, velociraptor.CodeConfigInvalid},
		{"cert is a key", editYAML(t, good, func(m map[string]string) { m["client_cert"] = m["client_private_key"] }), now, velociraptor.CodeConfigInvalid},
		{"key is a cert", editYAML(t, good, func(m map[string]string) { m["client_private_key"] = m["client_cert"] }), now, velociraptor.CodeConfigInvalid},
		{"key of another certificate", editYAML(t, good, func(m map[string]string) {
			m["client_private_key"] = field(t, other, "client_private_key")
		}), now, velociraptor.CodeKeyMismatch},
		{"client cert of another CA", editYAML(t, good, func(m map[string]string) {
			m["client_cert"] = field(t, foreign, "client_cert")
			m["client_private_key"] = field(t, foreign, "client_private_key")
		}), now, velociraptor.CodeConfigInvalid},
		{"expired", fake.APIClientYAML(t, vrfake.Expired()), now, velociraptor.CodeCertExpired},
		{"not yet valid", fake.APIClientYAML(t, vrfake.NotYetValid()), now, velociraptor.CodeCertNotYetValid},
		{"valid cert checked after it expires", good, now.Add(2 * 365 * 24 * time.Hour), velociraptor.CodeCertExpired},
		{"bad address", editYAML(t, good, func(m map[string]string) { m["api_connection_string"] = "no-port" }), now, velociraptor.CodeConfigInvalid},
		{"bad port", editYAML(t, good, func(m map[string]string) { m["api_connection_string"] = "host:99999" }), now, velociraptor.CodeConfigInvalid},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			a, err := velociraptor.ParseAPIClient(tt.yaml, tt.now)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("ParseAPIClient: %v", err)
				}
				if a.Summary().Fingerprint == "" {
					t.Fatal("a parsed configuration has no fingerprint")
				}
				return
			}
			var de *domain.Error
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T) is not a *domain.Error", err, err)
			}
			if de.Kind != domain.KindInvalid || de.Code != tt.wantCode {
				t.Fatalf("error = %s/%s %q, want invalid/%s", de.Kind, de.Code, de.Message, tt.wantCode)
			}
			if strings.Contains(de.Error(), keyBody(t, good)) || strings.Contains(de.Error(), "PRIVATE KEY") {
				t.Fatalf("error %q quotes key material", de.Error())
			}
		})
	}
}

func TestParseAPIClientSummary(t *testing.T) {
	fake := vrfake.Start(t)

	t.Run("defaults", func(t *testing.T) {
		data := editYAML(t, fake.APIClientYAML(t, vrfake.Name("soc-api")), func(m map[string]string) {
			delete(m, "api_connection_string")
			delete(m, "name")
		})
		a, err := velociraptor.ParseAPIClient(data, time.Now())
		if err != nil {
			t.Fatalf("ParseAPIClient: %v", err)
		}
		s := a.Summary()
		if s.Address != velociraptor.DefaultAddress || s.ServerName != "VelociraptorServer" || s.Name != "soc-api" || s.CommonName != "soc-api" {
			t.Fatalf("summary = %+v, want default address, VelociraptorServer, name from the CN", s)
		}
	})

	t.Run("pinned server name and fingerprint", func(t *testing.T) {
		data := fake.APIClientYAML(t, vrfake.Name("soc-api"), vrfake.ServerName("velo.example.org"))
		a, err := velociraptor.ParseAPIClient(data, time.Now())
		if err != nil {
			t.Fatalf("ParseAPIClient: %v", err)
		}
		block, _ := pem.Decode([]byte(field(t, data, "client_cert")))
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(block.Bytes)
		s := a.Summary()
		want := velociraptor.Summary{
			Name: "soc-api", Address: fake.Addr(), ServerName: "velo.example.org", CommonName: "soc-api",
			Fingerprint: hex.EncodeToString(sum[:]), NotAfter: cert.NotAfter.UTC(),
		}
		if s != want {
			t.Fatalf("summary = %+v\nwant      %+v", s, want)
		}
	})

	t.Run("printing never shows the key", func(t *testing.T) {
		data := fake.APIClientYAML(t)
		a, err := velociraptor.ParseAPIClient(data, time.Now())
		if err != nil {
			t.Fatalf("ParseAPIClient: %v", err)
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			out := fmt.Sprintf(verb, a)
			if !strings.Contains(out, a.Summary().Fingerprint) || strings.Contains(out, "PrivateKey") || strings.Contains(out, "D:") {
				t.Fatalf("%s prints %q", verb, out)
			}
		}
	})
}
