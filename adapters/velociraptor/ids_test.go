package velociraptor_test

import (
	"strings"
	"testing"

	"velocicompanion/adapters/velociraptor"
	"velocicompanion/domain"
)

func TestCheckIDs(t *testing.T) {
	tests := []struct {
		name  string
		check func(string) error
		value string
		ok    bool
	}{
		{"client id", velociraptor.CheckClientID, "C.1a2b3c4d5e6f7a8b", true},
		{"client id upper hex", velociraptor.CheckClientID, "C.1A2B3C4D5E6F7A8B", false},
		{"client id short", velociraptor.CheckClientID, "C.1a2b3c", false},
		{"server pseudo client", velociraptor.CheckClientID, "server", false},
		{"client id with quote", velociraptor.CheckClientID, "C.1a2b3c4d5e6f7a8b'", false},
		{"client id with vql", velociraptor.CheckClientID, "C.1a2b3c4d5e6f7a8b') OR 1=1 --", false},
		{"client id newline", velociraptor.CheckClientID, "C.1a2b3c4d5e6f7a8b\n", false},
		{"flow id", velociraptor.CheckFlowID, "F.CSJQ4R4PJT29E", true},
		{"hunt flow id", velociraptor.CheckFlowID, "F.CSJQ4R4PJT29E.H", true},
		{"flow id lower", velociraptor.CheckFlowID, "F.csjq4r4pjt29e", false},
		{"flow id empty", velociraptor.CheckFlowID, "F.", false},
		{"flow id hostile", velociraptor.CheckFlowID, "F.X', flow_id='F.Y", false},
		{"hunt id", velociraptor.CheckHuntID, "H.CSJQ4R4PJT29E", true},
		{"hunt id with suffix", velociraptor.CheckHuntID, "H.CSJQ4R4PJT29E.H", false},
		{"hunt id as flow", velociraptor.CheckHuntID, "F.CSJQ4R4PJT29E", false},
		{"artifact", velociraptor.CheckArtifactName, "Generic.Client.Info", true},
		{"artifact source", velociraptor.CheckArtifactName, "Generic.Client.Info/BasicInformation", true},
		{"artifact underscore", velociraptor.CheckArtifactName, "Custom.My_Artifact2", true},
		{"artifact injection", velociraptor.CheckArtifactName, "Generic.Client.Info'); SELECT * FROM clients() --", false},
		{"artifact backtick", velociraptor.CheckArtifactName, "Generic.`Client`", false},
		{"artifact two sources", velociraptor.CheckArtifactName, "A.B/C/D", false},
		{"artifact empty", velociraptor.CheckArtifactName, "", false},
		{"artifact double dot", velociraptor.CheckArtifactName, "A..B", false},
		{"artifact too long", velociraptor.CheckArtifactName, "A." + strings.Repeat("b", 200), false},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			err := tt.check(tt.value)
			if tt.ok {
				if err != nil {
					t.Fatalf("%q: %v", tt.value, err)
				}
				return
			}
			if domain.KindOf(err) != domain.KindInvalid {
				t.Fatalf("%q: error %v, want an invalid error", tt.value, err)
			}
		})
	}
}
