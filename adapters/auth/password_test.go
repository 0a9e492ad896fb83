package auth_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"velocicompanion/adapters/auth"
	"velocicompanion/domain"
)

func newHasher(t testing.TB, p auth.Params) *auth.Hasher {
	t.Helper()
	h, err := auth.NewHasher(auth.HasherOptions{Params: p})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashVerifyRoundTrip(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, auth.MinimumParams)
	for _, pw := range []string{
		"correct horse battery",
		"пароль-с-юникодом-🔑",
		strings.Repeat("x", 128),
		strings.Repeat("密", 128), // 384 bytes: nothing is truncated
		"  leading and trailing spaces  ",
	} {
		encoded, err := h.Hash(ctx, pw)
		if err != nil {
			t.Fatalf("Hash: %v", err)
		}
		if ok, err := h.Verify(ctx, pw, encoded); err != nil || !ok {
			t.Fatalf("Verify(%q) = %v, %v; want true", pw, ok, err)
		}
		// Every byte counts: change only the last one, or drop the surrounding spaces.
		for _, other := range []string{pw[:len(pw)-1] + "!", strings.TrimSpace(pw), pw + " ", ""} {
			if other == pw {
				continue
			}
			if ok, err := h.Verify(ctx, other, encoded); err != nil || ok {
				t.Fatalf("Verify(%q) against the hash of %q = %v, %v; want false", other, pw, ok, err)
			}
		}
	}
}

func TestHashFormat(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, auth.MinimumParams)
	a, err := h.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !phc.MatchString(a) {
		t.Fatalf("hash %q is not a PHC string with the parameters, a 16-byte salt and a 32-byte key", a)
	}
	b, err := h.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	if h.NeedsRehash(a) {
		t.Fatal("NeedsRehash of a fresh hash")
	}
}

func TestDefaultParamsAreEncoded(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes with the production parameters")
	}
	h := newHasher(t, auth.HasherOptions{}.Params)
	if h.Params() != auth.DefaultParams {
		t.Fatalf("zero options chose %v, want %v", h.Params(), auth.DefaultParams)
	}
	encoded, err := h.Hash(context.Background(), "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(encoded, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash %q does not carry the default parameters", encoded)
	}
}

// The reference implementation (Debian's argon2 CLI) made these:
// echo -n PASSWORD | argon2 SALT -id -t T -m LOG2(KiB) -p P -l 32 -e
func TestVerifyReferenceVectors(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, auth.MinimumParams)
	for _, v := range []struct{ password, encoded string }{
		{"correct horse battery staple", "$argon2id$v=19$m=32768,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$F0iKBE6qhDW05Qg199W35oMo+BGqMDM3gptOc1yiYRM"},
		{"password", "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"},
	} {
		if ok, err := h.Verify(ctx, v.password, v.encoded); err != nil || !ok {
			t.Errorf("Verify(%q, %q) = %v, %v; want true", v.password, v.encoded, ok, err)
		}
		if ok, _ := h.Verify(ctx, v.password+"x", v.encoded); ok {
			t.Errorf("Verify accepted a wrong password for %q", v.encoded)
		}
		if !h.NeedsRehash(v.encoded) {
			t.Errorf("NeedsRehash(%q) = false; its parameters differ", v.encoded)
		}
	}
}

func TestVerifyMalformedHash(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, auth.MinimumParams)
	const salt, key = "c29tZXNhbHRzb21lc2FsdA", "F0iKBE6qhDW05Qg199W35oMo+BGqMDM3gptOc1yiYRM"
	for name, encoded := range map[string]string{
		"empty":                "",
		"bcrypt":               "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
		"plain_text":           "correct horse battery staple",
		"argon2i":              "$argon2i$v=19$m=32768,t=2,p=1$" + salt + "$" + key,
		"argon2d":              "$argon2d$v=19$m=32768,t=2,p=1$" + salt + "$" + key,
		"old_version":          "$argon2id$v=16$m=32768,t=2,p=1$" + salt + "$" + key,
		"no_version":           "$argon2id$m=32768,t=2,p=1$" + salt + "$" + key,
		"missing_key":          "$argon2id$v=19$m=32768,t=2,p=1$" + salt,
		"extra_field":          "$argon2id$v=19$m=32768,t=2,p=1$" + salt + "$" + key + "$x",
		"no_leading_dollar":    "argon2id$v=19$m=32768,t=2,p=1$" + salt + "$" + key,
		"parameters_reordered": "$argon2id$v=19$t=2,m=32768,p=1$" + salt + "$" + key,
		"parameter_missing":    "$argon2id$v=19$m=32768,t=2$" + salt + "$" + key,
		"parameter_extra":      "$argon2id$v=19$m=32768,t=2,p=1,k=1$" + salt + "$" + key,
		"leading_zero":         "$argon2id$v=19$m=032768,t=2,p=1$" + salt + "$" + key,
		"sign":                 "$argon2id$v=19$m=+32768,t=2,p=1$" + salt + "$" + key,
		"negative":             "$argon2id$v=19$m=32768,t=-2,p=1$" + salt + "$" + key,
		"not_a_number":         "$argon2id$v=19$m=lots,t=2,p=1$" + salt + "$" + key,
		"zero_lanes":           "$argon2id$v=19$m=32768,t=2,p=0$" + salt + "$" + key,
		"too_many_lanes":       "$argon2id$v=19$m=32768,t=2,p=256$" + salt + "$" + key,
		"zero_passes":          "$argon2id$v=19$m=32768,t=0,p=1$" + salt + "$" + key,
		"too_many_passes":      "$argon2id$v=19$m=32768,t=1000,p=1$" + salt + "$" + key,
		"too_little_memory":    "$argon2id$v=19$m=7,t=2,p=1$" + salt + "$" + key,
		"too_much_memory":      "$argon2id$v=19$m=4294967295,t=2,p=1$" + salt + "$" + key,
		"memory_overflows":     "$argon2id$v=19$m=4294967296,t=2,p=1$" + salt + "$" + key,
		"padded_salt":          "$argon2id$v=19$m=32768,t=2,p=1$" + salt + "==$" + key,
		"url_base64_key":       "$argon2id$v=19$m=32768,t=2,p=1$" + salt + "$" + strings.ReplaceAll(key, "+", "-"),
		"short_salt":           "$argon2id$v=19$m=32768,t=2,p=1$c2FsdA$" + key,
		"short_key":            "$argon2id$v=19$m=32768,t=2,p=1$" + salt + "$c2hvcnQ",
		"trailing_newline":     "$argon2id$v=19$m=32768,t=2,p=1$" + salt + "$" + key + "\n",
		"space_in_parameters":  "$argon2id$v=19$m=32768, t=2,p=1$" + salt + "$" + key,
	} {
		t.Run(name, func(t *testing.T) {
			ok, err := h.Verify(ctx, "correct horse battery staple", encoded)
			if ok || !errors.Is(err, auth.ErrMalformedHash) {
				t.Fatalf("Verify = %v, %v; want false, ErrMalformedHash", ok, err)
			}
			if strings.Contains(err.Error(), "correct horse") {
				t.Fatalf("error mentions the password: %v", err)
			}
			if !h.NeedsRehash(encoded) {
				t.Fatal("NeedsRehash of a malformed hash is false")
			}
		})
	}
}

func TestNeedsRehash(t *testing.T) {
	ctx := context.Background()
	weak := newHasher(t, auth.MinimumParams)
	stronger := newHasher(t, auth.Params{Memory: 32 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32})
	encoded, err := weak.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if weak.NeedsRehash(encoded) {
		t.Error("NeedsRehash with the same parameters")
	}
	if !stronger.NeedsRehash(encoded) {
		t.Error("NeedsRehash after raising the memory is false")
	}
	// Old hashes keep verifying after the parameters change.
	if ok, err := stronger.Verify(ctx, "correct horse battery", encoded); err != nil || !ok {
		t.Errorf("Verify of an old hash = %v, %v", ok, err)
	}
	longerKey := newHasher(t, auth.Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 64})
	if !longerKey.NeedsRehash(encoded) {
		t.Error("NeedsRehash after lengthening the key is false")
	}
}

func TestNewHasherRejectsWeakParams(t *testing.T) {
	for name, p := range map[string]auth.Params{
		"little_memory": {Memory: 8 * 1024, Time: 3, Threads: 1, SaltLen: 16, KeyLen: 32},
		"one_pass":      {Memory: 19 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
		"no_lanes":      {Memory: 19 * 1024, Time: 2, Threads: 0, SaltLen: 16, KeyLen: 32},
		"short_salt":    {Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 8, KeyLen: 32},
		"short_key":     {Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 16},
		"huge_memory":   {Memory: 1 << 31, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := auth.NewHasher(auth.HasherOptions{Params: p}); err == nil {
				t.Fatalf("NewHasher accepted %v", p)
			}
		})
	}
}

func TestHashRejectsHugeInput(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, auth.MinimumParams)
	huge := strings.Repeat("x", auth.MaxPasswordBytes+1)
	if _, err := h.Hash(ctx, huge); !errors.Is(err, auth.ErrPasswordTooLong) {
		t.Fatalf("Hash of %d bytes: %v, want ErrPasswordTooLong", len(huge), err)
	}
	encoded, err := h.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := h.Verify(ctx, huge, encoded); ok || err != nil {
		t.Fatalf("Verify of a huge password = %v, %v; want false, nil", ok, err)
	}
	if err := h.DummyVerify(ctx, huge); err != nil {
		t.Fatal(err)
	}
}

// TestDummyVerifyTakesAsLongAsVerify guards against account enumeration by
// timing: an unknown user must cost what a wrong password costs. The bounds
// are loose so that a busy machine does not make the test flaky.
func TestDummyVerifyTakesAsLongAsVerify(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, auth.MinimumParams)
	encoded, err := h.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	// Interleaved, so that load from elsewhere hits both alike.
	var verify, dummy []time.Duration
	for range 9 {
		start := time.Now()
		_, _ = h.Verify(ctx, "wrong password!", encoded)
		verify = append(verify, time.Since(start))
		start = time.Now()
		_ = h.DummyVerify(ctx, "wrong password!")
		dummy = append(dummy, time.Since(start))
	}
	slices.Sort(verify)
	slices.Sort(dummy)
	v, d := verify[len(verify)/2], dummy[len(dummy)/2]
	if ratio := float64(d) / float64(v); ratio < 0.33 || ratio > 3 {
		t.Fatalf("DummyVerify takes %v, Verify %v (medians): ratio %.2f, want about 1", d, v, ratio)
	}
}

func TestBusyIsUnavailable(t *testing.T) {
	if got := domain.KindOf(auth.ErrBusy); got != domain.KindUnavailable {
		t.Fatalf("ErrBusy kind = %v, want unavailable", got)
	}
}

func BenchmarkHash(b *testing.B) {
	for _, bc := range []struct {
		name string
		p    auth.Params
	}{{"default", auth.DefaultParams}, {"minimum", auth.MinimumParams}} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHasher(b, bc.p)
			ctx := context.Background()
			for b.Loop() {
				if _, err := h.Hash(ctx, "correct horse battery staple"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	h := newHasher(b, auth.DefaultParams)
	ctx := context.Background()
	encoded, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, err := h.Verify(ctx, "correct horse battery staple", encoded); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
