package velociraptor_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"velocicompanion/adapters/velociraptor"
	"velocicompanion/domain"
)

// TestParseAPIClientRefusesAliases refuses YAML anchors and aliases before
// decoding: nested aliases ("billion laughs") expand to gigabytes from a few
// hundred bytes, and the file Velociraptor writes has none.
func TestParseAPIClientRefusesAliases(t *testing.T) {
	var bomb strings.Builder
	bomb.WriteString(`l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]` + "\n")
	for i := 1; i < 12; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d,", i-1), 9), ",")
		fmt.Fprintf(&bomb, "l%d: &l%d [%s]\n", i, i, refs)
	}
	bomb.WriteString("ca_certificate: *l11\n")
	for name, doc := range map[string]string{
		"billion laughs": bomb.String(),
		"one alias":      "name: &n velocicompanion\napi_connection_string: *n\n",
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			_, err := velociraptor.ParseAPIClient([]byte(doc), time.Now())
			if domain.KindOf(err) != domain.KindInvalid || !strings.Contains(err.Error(), "anchors or aliases") {
				t.Fatalf("ParseAPIClient: %v, want an invalid-input error about aliases", err)
			}
		})
	}
}
