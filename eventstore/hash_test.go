package eventstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

// randomJSON builds a random value of the kinds events carry, with awkward
// numbers and strings.
func randomJSON(r *rand.Rand, depth int) any {
	kinds := 8
	if depth > 3 {
		kinds = 6
	}
	switch r.IntN(kinds) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		for {
			f := math.Float64frombits(r.Uint64())
			if !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f
			}
		}
	case 3:
		lits := []string{"0", "-0", "-0.0", "1.500", "1E+400", "1e-300", "123456789012345678901234567890.000100",
			"-42", "9007199254740993", "0.1", "2.5e3", "7E0"}
		return json.Number(lits[r.IntN(len(lits))])
	case 4:
		return r.Int64() >> r.IntN(63)
	case 5:
		return randomString(r)
	case 6:
		a := make([]any, r.IntN(4))
		for i := range a {
			a[i] = randomJSON(r, depth+1)
		}
		return a
	default:
		m := map[string]any{}
		for range r.IntN(5) {
			m[randomString(r)] = randomJSON(r, depth+1)
		}
		return m
	}
}

func randomString(r *rand.Rand) string {
	pieces := []string{"a", "b", "Z", "é", "漢", "😀", "<", ">", "&", "\"", "\\", "/", "\n", "\t", "\u2028", "\u007f", "\x01", " ", "ab", ""}
	var b strings.Builder
	for range r.IntN(6) {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// TestCanonicalJSONMatchesJSONB proves the premise of the hash chain: the
// canonical encoding of the JSON Append hashes equals that of the text jsonb
// gives back to Verify.
func TestCanonicalJSONMatchesJSONB(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	docs := []string{
		`{"b":1,"a":2,"a":3}`, `{"x": 1.50, "y": [1e21, 1E-7, -0, 0.0], "z": "\u00e9\ud83d\ude00\/"}`,
		`"\u003chtml\u003e & \u2028"`, `{"":{"":[]}}`, `[{"aa":1,"b":2},{"b":2,"aa":1}]`,
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		b, err := json.Marshal(randomJSON(r, 0))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	var stored []string
	if err := db.Owner.QueryRow(ctx, `SELECT array_agg(d::jsonb::text ORDER BY n)
		FROM unnest($1::text[]) WITH ORDINALITY AS u(d, n)`, docs).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	for i, doc := range docs {
		a, err := eventstore.CanonicalJSON([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		b, err := eventstore.CanonicalJSON([]byte(stored[i]))
		if err != nil {
			t.Fatalf("jsonb text %s: %v", stored[i], err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("canonical forms differ:\n sent  %s\n jsonb %s", doc, stored[i])
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d documents agree", len(docs))
}
