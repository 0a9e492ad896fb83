package vrfake

import (
	"testing"

	"velocicompanion/adapters/velociraptor"
)

func TestEveryStatementCallsWhatVelociraptorDeclares(t *testing.T) {
	for _, st := range velociraptor.Statements() {
		if line := checkCalls(st.VQL); line != "" {
			t.Errorf("%s: %s\n%s", st.Name, line, st.VQL)
		}
	}
}

func TestCheckCalls(t *testing.T) {
	for _, tc := range []struct{ vql, want string }{
		{"SELECT * FROM clients(search=Search) LIMIT 10000", ""},
		{"SELECT * FROM clients(search=Search, count=int(int=Limit))", "clients: Unexpected arg count"},
		{"SELECT hunt(artifacts=A, tags=parse_json_array(data=T)) AS Hunt FROM scope()", "hunt: Unexpected arg tags"},
		{"SELECT hunt(description=D) AS Hunt FROM scope()", "hunt: Field artifacts is required"},
		{"SELECT * FROM flows(flow_id=F)", "flows: Field client_id is required"},
		{"SELECT no_such_function(x=1) FROM scope()", "VQL Error: Symbol no_such_function not found"},
		{"SELECT label(client_id=C, labels=['a(b=1)', \"c)\"], op='set') AS L FROM scope()", ""},
		{"SELECT timestamp(epoch=now()) AS ServerTime FROM scope()", ""},
	} {
		if got := checkCalls(tc.vql); got != tc.want {
			t.Errorf("checkCalls(%q) = %q, want %q", tc.vql, got, tc.want)
		}
	}
}

func TestStatementLimit(t *testing.T) {
	for vql, want := range map[string]int{
		"SELECT * FROM clients(search=Search) LIMIT 10000": 10000,
		"SELECT * FROM clients(search=Search)":             -1,
		"SELECT * FROM clients(search=Search) LIMIT Limit": -1,
	} {
		if got := statementLimit(vql); got != want {
			t.Errorf("statementLimit(%q) = %d, want %d", vql, got, want)
		}
	}
}

// source() reads these from the query's scope when its own argument is unset.
func TestSourceEnvCarriesNoScopeArgument(t *testing.T) {
	for _, st := range velociraptor.Statements() {
		if st.Name != velociraptor.StmtFlowResults {
			continue
		}
		for _, k := range st.Env {
			switch k {
			case "HuntId", "ArtifactName", "Limit", "StartRow", "StartTime", "EndTime", "NotebookId", "NotebookCellId":
				t.Fatalf("the source() statement's env carries %s", k)
			}
		}
		return
	}
	t.Fatal("no source() statement")
}
