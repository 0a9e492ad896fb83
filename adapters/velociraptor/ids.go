package velociraptor

import (
	"regexp"
	"strings"
	"unicode"

	"velocicompanion/domain"
)

var (
	clientIDPattern = regexp.MustCompile(`^C\.[0-9a-f]{16}$`)
	// Flows a hunt started carry the suffix ".H".
	flowIDPattern = regexp.MustCompile(`^F\.[A-Z0-9]{1,40}(\.H)?$`)
	huntIDPattern = regexp.MustCompile(`^H\.[A-Z0-9]{1,40}$`)
	// An artifact name is dotted words; a source is one more word after "/".
	artifactPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*(/[A-Za-z0-9_][A-Za-z0-9_.]*)?$`)
	paramPattern    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,99}$`)
	markerPattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$`)
)

// The limits of what the operations accept.
const (
	maxArtifactName = 200
	maxArtifacts    = 50
	maxParamValue   = 64 << 10
	maxLabel        = 100
	maxLabels       = 50
	maxSearch       = 500
	maxDescription  = 2000
)

// CheckClientID reports whether id is a Velociraptor client id: "C." and 16
// lower-case hex digits.
func CheckClientID(id string) error {
	if !clientIDPattern.MatchString(id) {
		return domain.Invalid("velociraptor_client_id_invalid", "a client id is C. followed by 16 hex digits (like C.1a2b3c4d5e6f7a8b)")
	}
	return nil
}

// CheckFlowID reports whether id is a flow id: "F." and upper-case letters
// and digits, with ".H" after them for a flow a hunt started.
func CheckFlowID(id string) error {
	if !flowIDPattern.MatchString(id) {
		return domain.Invalid("velociraptor_flow_id_invalid", "a flow id is F. followed by upper-case letters and digits (like F.CSJQ4R4PJT29E)")
	}
	return nil
}

// CheckHuntID reports whether id is a hunt id: "H." and upper-case letters
// and digits.
func CheckHuntID(id string) error {
	if !huntIDPattern.MatchString(id) {
		return domain.Invalid("velociraptor_hunt_id_invalid", "a hunt id is H. followed by upper-case letters and digits (like H.CSJQ4R4PJT29E)")
	}
	return nil
}

// CheckArtifactName reports whether name is an artifact name (letters,
// digits, '_' in dot-separated words, like Windows.System.Pslist), optionally
// followed by "/" and a source name, at most 200 characters.
func CheckArtifactName(name string) error {
	if len(name) > maxArtifactName || !artifactPattern.MatchString(name) {
		return domain.Invalid("velociraptor_artifact_invalid",
			"an artifact name is dot-separated words of letters, digits and '_' (like Generic.Client.Info), "+
				"optionally followed by /Source, at most %d characters", maxArtifactName)
	}
	return nil
}

func checkArtifacts(names []string) error {
	if len(names) == 0 {
		return domain.Invalid("velociraptor_artifact_invalid", "name at least one artifact")
	}
	if len(names) > maxArtifacts {
		return domain.Invalid("velociraptor_artifact_invalid", "at most %d artifacts at a time", maxArtifacts)
	}
	for _, n := range names {
		if strings.Contains(n, "/") {
			return domain.Invalid("velociraptor_artifact_invalid", "collect an artifact by its name, without /Source")
		}
		if err := CheckArtifactName(n); err != nil {
			return err
		}
	}
	return nil
}

func checkParams(params map[string]string) error {
	for k, v := range params {
		if !paramPattern.MatchString(k) {
			return domain.Invalid("velociraptor_parameter_invalid",
				"a parameter name is letters, digits and '_', not starting with a digit, at most 100 characters")
		}
		if len(v) > maxParamValue {
			return domain.Invalid("velociraptor_parameter_invalid", "the value of parameter %s is longer than %d KiB", k, maxParamValue>>10)
		}
	}
	return nil
}

func checkMarker(marker string) error {
	if !markerPattern.MatchString(marker) {
		return domain.Invalid("velociraptor_marker_invalid", "the marker must be 1 to 100 letters, digits, '.', '_', ':' or '-'")
	}
	return nil
}

func checkLabels(labels []string, required bool) error {
	if required && len(labels) == 0 {
		return domain.Invalid("velociraptor_label_invalid", "name at least one label")
	}
	if len(labels) > maxLabels {
		return domain.Invalid("velociraptor_label_invalid", "at most %d labels at a time", maxLabels)
	}
	for _, l := range labels {
		if strings.TrimSpace(l) == "" || len(l) > maxLabel || strings.IndexFunc(l, unicode.IsControl) >= 0 {
			return domain.Invalid("velociraptor_label_invalid", "a label is 1 to %d printable characters", maxLabel)
		}
	}
	return nil
}

func checkText(code, what, s string, limit int) error {
	if len(s) > limit || strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0 {
		return domain.Invalid(code, "%s must be at most %d printable characters", what, limit)
	}
	return nil
}
