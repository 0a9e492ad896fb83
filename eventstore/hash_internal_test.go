package eventstore

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCanonicalJSONEquivalence(t *testing.T) {
	for _, tc := range []struct {
		a, b  string
		equal bool
	}{
		{`{"b":1,"a":2}`, `{ "a" : 2 , "b" : 1 }`, true},
		{`{"a":1,"a":2}`, `{"a":2}`, true}, // the last duplicate wins, as in jsonb
		{`{"a":1,"a":2}`, `{"a":1}`, false},
		{`1.50`, `1.5`, true},
		{`15e-1`, `1.5`, true},
		{`0.15E+1`, `1.5`, true},
		{`100`, `1e2`, true},
		{`1e21`, `1000000000000000000000`, true},
		{`0.0000001`, `1e-7`, true},
		{`-0`, `0`, true},
		{`-0.0e5`, `0`, true},
		{`-1`, `1`, false},
		{`10`, `1`, false},
		{`"\u00e9\n\/"`, "\"é\\n/\"", true},
		{`"\ud83d\ude00"`, `"😀"`, true},
		{`"<&>"`, `"\u003c\u0026\u003e"`, true},
		{`"1"`, `1`, false},
		{`[1,2]`, `[2,1]`, false},
		{`[[]]`, `[]`, false},
		{`{}`, `[]`, false},
		{`{"a":"b"}`, `{"ab":""}`, false},
		{`["a","b"]`, `["ab"]`, false},
		{`null`, `false`, false},
		{`{"k":{"z":[1,{"y":null,"x":true}],"a":"s"}}`, `{"k":{"a":"s","z":[1,{"x":true,"y":null}]}}`, true},
	} {
		ca, err := canonicalJSON(nil, []byte(tc.a))
		if err != nil {
			t.Fatalf("%s: %v", tc.a, err)
		}
		cb, err := canonicalJSON(nil, []byte(tc.b))
		if err != nil {
			t.Fatalf("%s: %v", tc.b, err)
		}
		if bytes.Equal(ca, cb) != tc.equal {
			t.Errorf("canonical(%s) == canonical(%s) is %v, want %v (%q, %q)", tc.a, tc.b, !tc.equal, tc.equal, ca, cb)
		}
	}
}

func TestCanonicalJSONRejectsInvalid(t *testing.T) {
	for _, in := range []string{``, `{`, `{"a"}`, `{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `1e`, `+1`, `"\x01"`,
		`"abc`, `"\q"`, `"\u12"`, `tru`, `nul`, `{} {}`, `[1 2]`, `{1:2}`, `1e9999999999`} {
		if _, err := canonicalJSON(nil, []byte(in)); err == nil {
			t.Errorf("canonicalJSON accepted %q", in)
		}
	}
}

// TestHashEncodingIsPinned fails if the canonical encoding changes: stored
// chains would no longer verify. A new encoding needs a new format tag.
func TestHashEncodingIsPinned(t *testing.T) {
	payload, _ := canonicalJSON(nil, []byte(`{"title":"x","n":1.5}`))
	meta, _ := canonicalJSON(nil, []byte(`{"actor":"u-1"}`))
	in := hashInput{
		eventID:    [16]byte{0x01, 0x8f, 0x00, 0x00, 0x00, 0x00, 0x70, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 1},
		tenant:     "t",
		streamType: "case",
		streamID:   "c-1",
		version:    2,
		name:       "case.opened",
		schema:     1,
		payload:    payload,
		metadata:   meta,
		recordedAt: 1_700_000_000_123_456,
	}
	prev := bytes.Repeat([]byte{0xab}, 32)
	pre := appendHashPreimage(nil, prev, &in)
	wantPre := "abababababababababababababababababababababababababababababababab" +
		"00000018" + hex.EncodeToString([]byte(hashFormatTag)) +
		"018f0000000070008000000000000001" +
		"00000001" + "74" +
		"00000004" + hex.EncodeToString([]byte("case")) +
		"00000003" + hex.EncodeToString([]byte("c-1")) +
		"0000000000000002" +
		"0000000b" + hex.EncodeToString([]byte("case.opened")) +
		"0000000000000001" +
		"00000023" + "4f00000002" + "00000001" + "6e" + "44" + "00000005" + hex.EncodeToString([]byte("15e-1")) +
		"00000005" + hex.EncodeToString([]byte("title")) + "53" + "00000001" + "78" +
		"00000016" + "4f00000001" + "00000005" + hex.EncodeToString([]byte("actor")) + "53" + "00000003" + hex.EncodeToString([]byte("u-1")) +
		"00060a2418202240"
	if got := hex.EncodeToString(pre); got != wantPre {
		t.Fatalf("preimage\n got %s\nwant %s", got, wantPre)
	}
	sum, _ := eventHash(nil, prev, &in)
	const want = "d814b9cc3b00f35c45f0d7e1d0ae1c3fc7c4eef0e7a884c2ae5fb0a9e2e6bcc2"
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("hash %s, want %s", got, want)
	}
}

// FuzzCanonicalJSON checks that canonicalJSON accepts what encoding/json
// accepts and that re-encoding a value (as jsonb does) keeps its encoding.
func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"b":[1,2.50,{"c":null}],"a":"\u00e9"}`, `[]`, `"x"`, `-0.0`, `{"a":1,"a":2}`,
		`[1e21, 1E-7, 123456789012345678901234567890, 10E1100000000]`, `"\ud83d\ude00\u2028<>&"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		got, err := canonicalJSON(nil, src)
		if !json.Valid(src) || !utf8.Valid(src) {
			return
		}
		if err != nil && strings.Contains(err.Error(), "number out of range") {
			return // exponents beyond ±2^30; PostgreSQL's numeric refuses far less
		}
		if err != nil {
			t.Fatalf("rejected valid JSON %q: %v", src, err)
		}
		dec := json.NewDecoder(bytes.NewReader(src))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Skip()
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Skip()
		}
		got2, err := canonicalJSON(nil, again)
		if err != nil || !bytes.Equal(got, got2) {
			t.Fatalf("%q re-encoded as %q changes its canonical form (%v)", src, again, err)
		}
	})
}
