package velociraptor

import (
	"encoding/json"
	"testing"
)

// Velociraptor's VQL writes protobuf enums by name; the numbers (its
// protobuf numbering, which is not in the order of the names) decode too.
func TestEnumStates(t *testing.T) {
	for _, tc := range []struct {
		raw   string
		names []string
		want  string
	}{
		{`"IN_PROGRESS"`, flowStates, "IN_PROGRESS"},
		{`0`, flowStates, "UNSET"},
		{`1`, flowStates, "RUNNING"},
		{`2`, flowStates, "FINISHED"},
		{`3`, flowStates, "ERROR"},
		{`4`, flowStates, "IN_PROGRESS"},
		{`5`, flowStates, "UNRESPONSIVE"},
		{`6`, flowStates, "WAITING"},
		{`7`, flowStates, "7"},
		{`1`, huntStates, "PAUSED"},
		{`2`, huntStates, "RUNNING"},
		{`3`, huntStates, "STOPPED"},
		{`4`, huntStates, "ARCHIVED"},
		{`5`, huntStates, "DELETED"},
		{`"STOPPED"`, huntStates, "STOPPED"},
	} {
		var e enumState
		if err := json.Unmarshal([]byte(tc.raw), &e); err != nil {
			t.Fatalf("%s: %v", tc.raw, err)
		}
		if got := e.name(tc.names); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func TestHuntMark(t *testing.T) {
	if got := huntMark("0197a0c2-7d1e"); got != "[VelociCompanion 0197a0c2-7d1e]" {
		t.Fatalf("huntMark = %q", got)
	}
}
