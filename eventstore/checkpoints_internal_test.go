package eventstore

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"
)

// TestCheckpointEncodingIsPinned spells out the digest and the signed message
// byte by byte, as documented at the top of checkpoints.go: verifiers outside
// this code base depend on them, so a change needs a new format tag.
func TestCheckpointEncodingIsPinned(t *testing.T) {
	prev := bytes.Repeat([]byte{0xAB}, 32)
	id := [16]byte{0x01, 0x90, 2, 3, 4, 5, 0x70, 7, 0x80, 9, 10, 11, 12, 13, 14, 15}
	sum := bytes.Repeat([]byte{0x5A}, 32)

	d := newRunningDigest("t1", prev)
	d.add(0x0102030405060708, 42, id, sum)
	var want []byte
	want = append(want, 0, 0, 0, 31)
	want = append(want, "velocicompanion.audit.digest.v1"...)
	want = append(want, prev...)
	want = append(want, 0, 0, 0, 2, 't', '1')
	want = append(want, 1, 2, 3, 4, 5, 6, 7, 8)
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 42)
	want = append(want, id[:]...)
	want = append(want, sum...)
	if got, exp := d.sum(), sha256.Sum256(want); !bytes.Equal(got, exp[:]) {
		t.Fatalf("digest %x, want %x", got, exp)
	}

	cp := AuditCheckpoint{Tenant: "t1", Seq: 3, UpTo: Checkpoint{TxID: 9, Position: 42}, Events: 7,
		Digest: sum, SignedAt: time.UnixMicro(1_700_000_000_000_001), KeyID: "k"}
	want = want[:0]
	want = append(want, 0, 0, 0, 35)
	want = append(want, "velocicompanion.audit.checkpoint.v1"...)
	want = append(want, 0, 0, 0, 2, 't', '1')
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 3)
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 9)
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 42)
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 7)
	want = append(want, 0, 0, 0, 32)
	want = append(want, sum...)
	want = append(want, 0x00, 0x06, 0x0a, 0x24, 0x18, 0x1e, 0x40, 0x01) // 1_700_000_000_000_001 µs
	want = append(want, 0, 0, 0, 1, 'k')
	if got := cp.signedMessage(); !bytes.Equal(got, want) {
		t.Fatalf("signed message\n%s\nwant\n%s", hex.Dump(got), hex.Dump(want))
	}

	s, err := NewCheckpointSigner(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	s.sign(&cp)
	keys := NewCheckpointKeys(s.PublicKey())
	if reason := keys.verify(&cp); reason != "" {
		t.Fatalf("own signature: %s", reason)
	}
	cp.Events++
	if keys.verify(&cp) == "" {
		t.Fatal("a changed checkpoint still verifies")
	}
}
