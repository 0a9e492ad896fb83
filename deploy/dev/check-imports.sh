#!/usr/bin/env bash
# check-imports.sh fails when a package imports against the layering in
# shared/STYLE.md: imports point inward,
#   adapters -> commands / projections -> eventstore -> domain.
#
# Rules (non-test imports of this module's own packages):
#   domain          the root kernel imports the standard library only
#   domain/...      imports nothing of ours outside domain/...
#   eventstore/...  imports only domain (and eventstore/...)
#   commands/...,
#   projections/... import no adapters/... and no cmd/...
#   adapters/...    import no cmd/...
#
# Run from the module root: deploy/dev/check-imports.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
module=$(go list -m)
list=$(mktemp)
trap 'rm -f "$list"' EXIT
go list -e -f '{{.ImportPath}} {{join .Imports " "}}' ./... >"$list"

awk -v m="$module" '
function under(p, base) { return p == base || index(p, base "/") == 1 }
function stdlib(p) { return !under(p, m) && index(substr(p, 1, index(p "/", "/") - 1), ".") == 0 }
{
	pkg = $1
	for (i = 2; i <= NF; i++) {
		imp = $i
		why = ""
		if (pkg == m "/domain" && !stdlib(imp)) {
			why = "the domain kernel imports the standard library only"
		} else if (!under(imp, m)) {
			continue
		} else if (under(pkg, m "/domain")) {
			if (!under(imp, m "/domain")) why = "domain/... imports only domain/..."
		} else if (under(pkg, m "/eventstore")) {
			if (imp != m "/domain" && !under(imp, m "/eventstore")) why = "eventstore imports only domain"
		} else if (under(pkg, m "/commands") || under(pkg, m "/projections")) {
			if (under(imp, m "/adapters") || under(imp, m "/cmd")) why = "commands and projections must not import adapters or cmd"
		} else if (under(pkg, m "/adapters")) {
			if (under(imp, m "/cmd")) why = "adapters must not import cmd"
		}
		if (why != "") {
			printf "import direction: %s imports %s (%s)\n", pkg, imp, why
			bad++
		}
	}
	n++
}
END {
	if (bad > 0) { printf "import direction: %d violation(s)\n", bad; exit 1 }
	printf "import direction: ok (%d packages)\n", n
}' "$list"
