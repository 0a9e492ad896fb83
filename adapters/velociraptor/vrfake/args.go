package vrfake

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// vqlCallable is what the fake knows of one of Velociraptor's VQL plugins or
// functions: the argument names it accepts and those it requires. These are
// facts read from Velociraptor's argument declarations (see /work/plan/VR.md,
// "Verified against Velociraptor's source"); vfilter's argument parser refuses
// any other name ("Unexpected arg") and a missing required one ("Field … is
// required"), and the plugin logs the refusal and returns nothing.
type vqlCallable struct {
	args     []string
	required []string
}

var vqlCallables = map[string]vqlCallable{
	"scope":            {},
	"now":              {},
	"timestamp":        {args: []string{"epoch", "cocoatime", "mactime", "winfiletime", "string", "format"}},
	"parse_json":       {args: []string{"data", "schema"}, required: []string{"data"}},
	"parse_json_array": {args: []string{"data", "schema"}, required: []string{"data"}},
	"clients":          {args: []string{"search", "client_id"}},
	"collect_client": {
		args: []string{"client_id", "artifacts", "env", "spec", "timeout", "ops_per_sec", "cpu_limit", "iops_limit",
			"max_rows", "max_bytes", "urgent", "org_id"},
		required: []string{"client_id", "artifacts"},
	},
	"flows":       {args: []string{"client_id", "flow_id"}, required: []string{"client_id"}},
	"cancel_flow": {args: []string{"client_id", "flow_id"}, required: []string{"client_id"}},
	"flow_logs":   {args: []string{"flow_id", "client_id"}, required: []string{"flow_id", "client_id"}},
	"source": {args: []string{"client_id", "flow_id", "hunt_id", "artifact", "source", "start_time", "end_time",
		"notebook_id", "notebook_cell_id", "notebook_cell_version", "notebook_cell_table", "start_row", "count", "orgs"}},
	"hunt": {
		args: []string{"description", "artifacts", "expires", "spec", "timeout", "ops_per_sec", "cpu_limit", "iops_limit",
			"max_rows", "max_bytes", "pause", "include_labels", "exclude_labels", "os", "org_id"},
		required: []string{"artifacts"},
	},
	"hunts":        {args: []string{"hunt_id"}},
	"hunt_results": {args: []string{"artifact", "source", "hunt_id", "brief", "orgs"}, required: []string{"hunt_id"}},
	"hunt_update": {args: []string{"hunt_id", "stop", "start", "description", "expires", "add_labels", "del_labels"},
		required: []string{"hunt_id"}},
	"label": {args: []string{"client_id", "labels", "op"}, required: []string{"client_id", "labels"}},
}

// vqlCall is one call in a statement: the callee and its argument names.
type vqlCall struct {
	name string
	args []string
}

// checkCalls returns the log line Velociraptor writes for the first call in
// vql to an unknown plugin or function, with an argument its callee does not
// accept, or without one it requires; "" when every call is well formed.
func checkCalls(vql string) string {
	for _, c := range calls(vql) {
		def, ok := vqlCallables[c.name]
		if !ok {
			return fmt.Sprintf("VQL Error: Symbol %s not found", c.name)
		}
		for _, a := range c.args {
			if !slices.Contains(def.args, a) {
				return fmt.Sprintf("%s: Unexpected arg %s", c.name, a)
			}
		}
		for _, r := range def.required {
			if !slices.Contains(c.args, r) {
				return fmt.Sprintf("%s: Field %s is required", c.name, r)
			}
		}
	}
	return ""
}

// calls lists the calls of vql, outer ones first: each identifier followed by
// "(" outside a string literal, with the names of its top-level "name=value"
// arguments.
func calls(vql string) []vqlCall {
	var out []vqlCall
	for i := 0; i < len(vql); i++ {
		switch c := vql[i]; {
		case c == '\'' || c == '"':
			i = skipString(vql, i)
		case isIdentStart(c) && (i == 0 || !isIdent(vql[i-1])):
			j := i
			for j < len(vql) && isIdent(vql[j]) {
				j++
			}
			if j < len(vql) && vql[j] == '(' {
				out = append(out, vqlCall{name: vql[i:j], args: argNames(vql[j+1 : closing(vql, j)])})
			}
			i = j - 1
		}
	}
	return out
}

// closing returns the index of the ")" that closes the "(" at open (or the
// end of vql).
func closing(vql string, open int) int {
	depth := 0
	for i := open; i < len(vql); i++ {
		switch vql[i] {
		case '\'', '"':
			i = skipString(vql, i)
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return len(vql)
}

// argNames returns the names of the top-level "name=value" arguments of an
// argument list.
func argNames(list string) []string {
	var names []string
	depth, start := 0, 0
	add := func(arg string) {
		arg = strings.TrimSpace(arg)
		if k, _, ok := strings.Cut(arg, "="); ok && k != "" && strings.IndexFunc(k, func(r rune) bool { return r > 127 || !isIdent(byte(r)) }) < 0 {
			names = append(names, k)
		}
	}
	for i := 0; i < len(list); i++ {
		switch list[i] {
		case '\'', '"':
			i = skipString(list, i)
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
		case ',':
			if depth == 0 {
				add(list[start:i])
				start = i + 1
			}
		}
	}
	if strings.TrimSpace(list[start:]) != "" {
		add(list[start:])
	}
	return names
}

// skipString returns the index of the quote that ends the string literal
// starting at i.
func skipString(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		if s[j] == '\\' {
			j++
			continue
		}
		if s[j] == q {
			return j
		}
	}
	return len(s)
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdent(c byte) bool      { return isIdentStart(c) || c >= '0' && c <= '9' }

// statementLimit returns the literal of a statement's final "LIMIT n", or -1.
func statementLimit(vql string) int {
	i := strings.LastIndex(vql, " LIMIT ")
	if i < 0 {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(vql[i+len(" LIMIT "):]))
	if err != nil || n < 0 {
		return -1
	}
	return n
}
