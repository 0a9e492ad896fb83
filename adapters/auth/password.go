package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"velocicompanion/domain"
)

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes over memory
	Threads uint8  // lanes
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultParams are the cost parameters for new hashes: 64 MiB, 3 passes,
// 2 lanes, 16-byte salt, 32-byte key, well above OWASP's and ASVS's minimum
// (MinimumParams). On the idle 2-core development box (AMD EPYC, Go 1.26) one
// hash took 88-96 ms, under the 150 ms budget for a sign-in; it keeps both
// cores busy, so the default concurrency there is 1 hash at a time, about ten
// sign-ins a second. Raising them later is safe: NeedsRehash reports hashes to
// upgrade at the next successful sign-in.
var DefaultParams = Params{Memory: 64 * 1024, Time: 3, Threads: 2, SaltLen: 16, KeyLen: 32}

// MinimumParams are the weakest parameters NewHasher accepts: OWASP's
// baseline for argon2id (19 MiB, 2 passes, 1 lane) with a 16-byte salt and
// a 32-byte key. They suit tests.
var MinimumParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// MaxPasswordBytes bounds the input Hash and Verify accept. The user policy
// (128 code points) stays far below it; it only keeps hostile input cheap.
const MaxPasswordBytes = 1024

// Bounds on the parameters of a stored hash, so that a corrupt or planted hash
// cannot make Verify exhaust memory or time.
const (
	maxMemory  = 1024 * 1024 // KiB: 1 GiB
	maxTime    = 64
	minSaltLen = 8
	maxSaltLen = 64
	minKeyLen  = 16
	maxKeyLen  = 128
)

// ErrBusy is returned when no hashing slot became free within the wait limit.
// The edge answers 503 so that clients back off.
var ErrBusy = domain.Unavailable("auth_busy", "too many sign-ins in progress; try again shortly")

// ErrPasswordTooLong is returned by Hash for input over MaxPasswordBytes.
var ErrPasswordTooLong = domain.Unprocessable("password_too_long", "password is too long")

// ErrMalformedHash is wrapped by the errors about a stored hash that is not an
// argon2id PHC string this package can verify. It is an internal error: stored
// hashes are ours.
var ErrMalformedHash = errors.New("malformed argon2id hash")

// HasherOptions configure a Hasher. Zero values choose the defaults.
type HasherOptions struct {
	// Params for new hashes; the zero value means DefaultParams.
	Params Params
	// MaxConcurrent is how many hashes may run at once; each holds
	// Params.Memory KiB. Zero means GOMAXPROCS / Params.Threads, at least 1.
	MaxConcurrent int
	// MaxWait is how long a caller queues for a slot before ErrBusy. Zero
	// means 5 seconds.
	MaxWait time.Duration
}

// Hasher hashes and verifies passwords with argon2id. At most MaxConcurrent
// hashes run at once, which bounds the memory and CPU a flood of sign-ins can
// take. It is safe for concurrent use.
type Hasher struct {
	params  Params
	slots   chan struct{}
	maxWait time.Duration

	// dummySalt and dummyKey stand in for a stored hash in DummyVerify.
	dummySalt, dummyKey []byte
}

// NewHasher returns a Hasher for opts, or an error if the parameters are
// weaker than MinimumParams or out of range.
func NewHasher(opts HasherOptions) (*Hasher, error) {
	p := opts.Params
	if p == (Params{}) {
		p = DefaultParams
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	if p.Memory < MinimumParams.Memory || p.Time < MinimumParams.Time || p.SaltLen < 16 || p.KeyLen < 32 {
		return nil, fmt.Errorf("argon2id parameters %s are below the minimum %s", p, MinimumParams)
	}
	n := opts.MaxConcurrent
	if n <= 0 {
		n = max(1, runtime.GOMAXPROCS(0)/int(p.Threads))
	}
	wait := opts.MaxWait
	if wait <= 0 {
		wait = 5 * time.Second
	}
	return &Hasher{
		params:    p,
		slots:     make(chan struct{}, n),
		maxWait:   wait,
		dummySalt: random(p.SaltLen),
		dummyKey:  random(p.KeyLen),
	}, nil
}

// Params returns the parameters h uses for new hashes.
func (h *Hasher) Params() Params { return h.params }

// Hash returns the PHC string of password under a fresh random salt:
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>, with salt and key
// in unpadded standard base64. The whole password is hashed; nothing is
// trimmed or truncated.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if len(password) > MaxPasswordBytes {
		return "", ErrPasswordTooLong
	}
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	salt := random(h.params.SaltLen)
	key := argon2.IDKey([]byte(password), salt, h.params.Time, h.params.Memory, h.params.Threads, h.params.KeyLen)
	return encode(h.params, salt, key), nil
}

// Verify reports whether password matches the PHC string encoded, comparing
// in constant time. It uses the parameters stored in encoded, so hashes made
// with older parameters keep working. An error means encoded is malformed
// (wrapping ErrMalformedHash), no slot was free (ErrBusy) or ctx ended.
func (h *Hasher) Verify(ctx context.Context, password, encoded string) (bool, error) {
	p, salt, want, err := decode(encoded)
	if err != nil {
		return false, err
	}
	if len(password) > MaxPasswordBytes {
		return false, nil
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// DummyVerify does the work of Verify against a hash made with h's parameters
// and throws the answer away. Call it when the user is unknown, so that a
// sign-in for a missing account takes as long as one with a wrong password and
// does not reveal which accounts exist. It fails only as Verify would for lack
// of a slot.
func (h *Hasher) DummyVerify(ctx context.Context, password string) error {
	if len(password) > MaxPasswordBytes {
		return nil
	}
	if err := h.acquire(ctx); err != nil {
		return err
	}
	defer h.release()
	got := argon2.IDKey([]byte(password), h.dummySalt, h.params.Time, h.params.Memory, h.params.Threads, h.params.KeyLen)
	subtle.ConstantTimeCompare(got, h.dummyKey)
	return nil
}

// NeedsRehash reports whether encoded was made with other parameters than h's
// (or cannot be read), so that the caller should store a new hash of the
// password it just verified.
func (h *Hasher) NeedsRehash(encoded string) bool {
	p, salt, key, err := decode(encoded)
	if err != nil {
		return true
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return p != h.params
}

// acquire takes a hashing slot, waiting at most h.maxWait.
func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(h.maxWait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-t.C:
		return ErrBusy
	case <-ctx.Done():
		return fmt.Errorf("wait for a password hashing slot: %w", ctx.Err())
	}
}

func (h *Hasher) release() { <-h.slots }

// String formats p as in a PHC string, with salt and key lengths.
func (p Params) String() string {
	return fmt.Sprintf("m=%d,t=%d,p=%d (salt %d, key %d bytes)", p.Memory, p.Time, p.Threads, p.SaltLen, p.KeyLen)
}

// check reports whether p is within the bounds this package computes.
func (p Params) check() error {
	switch {
	case p.Threads < 1:
		return fmt.Errorf("argon2id lanes p=%d out of range", p.Threads)
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("argon2id passes t=%d out of range", p.Time)
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory:
		return fmt.Errorf("argon2id memory m=%d KiB out of range", p.Memory)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("argon2id salt of %d bytes out of range", p.SaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("argon2id key of %d bytes out of range", p.KeyLen)
	}
	return nil
}

var b64 = base64.RawStdEncoding.Strict()

func encode(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// decode parses a PHC string made by encode. It is strict: the fields must come
// in encode's order, numbers in canonical decimal, base64 unpadded.
func decode(encoded string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" {
		return p, nil, nil, fmt.Errorf("%w: not a PHC string", ErrMalformedHash)
	}
	if parts[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("%w: algorithm %.20q", ErrMalformedHash, parts[1])
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("%w: version %.20q", ErrMalformedHash, parts[2])
	}
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return p, nil, nil, fmt.Errorf("%w: parameters %.40q", ErrMalformedHash, parts[3])
	}
	var n [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(fields[i], name)
		if !ok {
			return p, nil, nil, fmt.Errorf("%w: parameters %.40q", ErrMalformedHash, parts[3])
		}
		if n[i], err = strconv.ParseUint(v, 10, 32); err != nil || strconv.FormatUint(n[i], 10) != v {
			return p, nil, nil, fmt.Errorf("%w: parameter %.20q", ErrMalformedHash, fields[i])
		}
	}
	if n[2] > 255 {
		return p, nil, nil, fmt.Errorf("%w: p=%d", ErrMalformedHash, n[2])
	}
	// Re-encoding catches what the decoder forgives, such as line breaks.
	if salt, err = b64.DecodeString(parts[4]); err != nil || b64.EncodeToString(salt) != parts[4] {
		return p, nil, nil, fmt.Errorf("%w: salt is not unpadded base64", ErrMalformedHash)
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || b64.EncodeToString(key) != parts[5] {
		return p, nil, nil, fmt.Errorf("%w: key is not unpadded base64", ErrMalformedHash)
	}
	p = Params{Memory: uint32(n[0]), Time: uint32(n[1]), Threads: uint8(n[2]), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))}
	if err := p.check(); err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: %v", ErrMalformedHash, err)
	}
	return p, salt, key, nil
}

// random returns n bytes from crypto/rand, which never fails.
func random(n uint32) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
