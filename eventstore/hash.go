package eventstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The per-stream hash chain.
//
// Every event stores prev_hash, the hash of the event before it in its stream
// (32 zero bytes for version 1), and its own hash:
//
//	hash = SHA-256(prev_hash || canonical)
//
// canonical is the concatenation, in this order, of
//
//	lp("velocicompanion.event.v1")  format tag; a future encoding gets a new tag
//	event_id                        16 bytes, the binary UUID (RFC 9562 byte order)
//	lp(tenant_id)
//	lp(stream_type)
//	lp(stream_id)
//	be64(version)
//	lp(name)
//	be64(schema)
//	lp(canonicalJSON(payload))
//	lp(canonicalJSON(metadata))
//	be64(recorded_at)               microseconds since 1970-01-01T00:00:00Z, two's complement
//
// where be64(x) is x as 8 big-endian bytes and lp(b) is len(b) as 4 big-endian
// bytes followed by b. Every variable-length field carries its length, so no two
// different events share an encoding.
//
// The payload and metadata are stored as jsonb, which does not keep the text it
// was given (it reorders keys, drops duplicates and whitespace, re-escapes strings
// and rewrites numbers). The chain therefore covers the JSON value, not its text:
// canonicalJSON encodes a value so that the bytes Append hashed and the text
// Verify reads back from jsonb encode identically:
//
//	null            'N'
//	false, true     'F', 'T'
//	number          'D' lp(d) where d is the exact decimal value written as
//	                [-]digits"e"exponent, digits without leading or trailing zeros
//	                (1.50, 15e-1 and 0.15e1 are all "15e-1"); zero is "0"
//	string          'S' lp(UTF-8 bytes of the decoded string)
//	array           'A' be32(count) then each element
//	object          'O' be32(count) then lp(key) and value for each member, sorted
//	                by the keys' UTF-8 bytes; of duplicate keys the last one counts
//
// tx_id and position are not covered: the database assigns them after the hash is
// computed, and the chain protects each stream's history, not the global order.
const hashFormatTag = "velocicompanion.event.v1"

// hashSize is the length of prev_hash and hash.
const hashSize = sha256.Size

// zeroHash is the prev_hash of the first event of every stream.
var zeroHash [hashSize]byte

// hashInput is everything the hash of one event covers besides prev_hash.
type hashInput struct {
	eventID    [16]byte
	tenant     string
	streamType string
	streamID   string
	version    int64
	name       string
	schema     int64
	payload    []byte // canonicalJSON of the payload
	metadata   []byte // canonicalJSON of the metadata
	recordedAt int64  // microseconds since the Unix epoch
}

// appendHashPreimage appends prev || canonical(in), the bytes whose SHA-256 is
// the event's hash, to dst.
func appendHashPreimage(dst, prev []byte, in *hashInput) []byte {
	lp := func(dst []byte, n int) []byte { return binary.BigEndian.AppendUint32(dst, uint32(n)) }
	dst = append(dst, prev...)
	dst = append(lp(dst, len(hashFormatTag)), hashFormatTag...)
	dst = append(dst, in.eventID[:]...)
	dst = append(lp(dst, len(in.tenant)), in.tenant...)
	dst = append(lp(dst, len(in.streamType)), in.streamType...)
	dst = append(lp(dst, len(in.streamID)), in.streamID...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(in.version))
	dst = append(lp(dst, len(in.name)), in.name...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(in.schema))
	dst = append(lp(dst, len(in.payload)), in.payload...)
	dst = append(lp(dst, len(in.metadata)), in.metadata...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(in.recordedAt))
	return dst
}

// eventHash returns SHA-256(prev || canonical(in)); scratch is a reusable
// buffer, returned grown.
func eventHash(scratch, prev []byte, in *hashInput) ([hashSize]byte, []byte) {
	scratch = appendHashPreimage(scratch[:0], prev, in)
	return sha256.Sum256(scratch), scratch
}

// maxJSONDepth bounds the nesting of the JSON the canonicaliser accepts.
const maxJSONDepth = 10000

// errBadJSON is wrapped by every error of canonicalJSON.
var errBadJSON = errors.New("invalid JSON")

// canonicalJSON appends the canonical encoding of the JSON text src to dst (see
// the package's hash chain comment above).
func canonicalJSON(dst, src []byte) ([]byte, error) {
	p := canonParser{src: src}
	p.skipSpace()
	dst, err := p.value(dst, 0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.i != len(p.src) {
		return nil, p.errorf("unexpected data after the top-level value")
	}
	return dst, nil
}

// canonParser is a single-pass JSON parser that writes the canonical encoding
// as it reads.
type canonParser struct {
	src     []byte
	i       int
	members []memberSpan // a stack shared by the objects being parsed
	scratch []byte       // reused when an object's members are reordered
}

// memberSpan locates one encoded object member inside dst.
type memberSpan struct {
	start  int // lp(key) begins here
	keyEnd int // the value begins here
	end    int
}

func (p *canonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", errBadJSON, p.i, fmt.Sprintf(format, args...))
}

func (p *canonParser) skipSpace() {
	for p.i < len(p.src) {
		switch p.src[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *canonParser) literal(dst []byte, word string, tag byte) ([]byte, error) {
	if !bytes.HasPrefix(p.src[p.i:], []byte(word)) {
		return nil, p.errorf("invalid literal")
	}
	p.i += len(word)
	return append(dst, tag), nil
}

func (p *canonParser) value(dst []byte, depth int) ([]byte, error) {
	if depth > maxJSONDepth {
		return nil, p.errorf("nested too deeply")
	}
	if p.i >= len(p.src) {
		return nil, p.errorf("unexpected end of input")
	}
	switch c := p.src[p.i]; {
	case c == '{':
		return p.object(dst, depth)
	case c == '[':
		return p.array(dst, depth)
	case c == '"':
		return p.str(append(dst, 'S'))
	case c == 't':
		return p.literal(dst, "true", 'T')
	case c == 'f':
		return p.literal(dst, "false", 'F')
	case c == 'n':
		return p.literal(dst, "null", 'N')
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number(dst)
	default:
		return nil, p.errorf("unexpected character %q", c)
	}
}

func (p *canonParser) array(dst []byte, depth int) ([]byte, error) {
	p.i++ // '['
	dst = append(dst, 'A', 0, 0, 0, 0)
	countAt := len(dst) - 4
	var n uint32
	p.skipSpace()
	if p.i < len(p.src) && p.src[p.i] == ']' {
		p.i++
		return dst, nil
	}
	for {
		p.skipSpace()
		var err error
		if dst, err = p.value(dst, depth+1); err != nil {
			return nil, err
		}
		n++
		p.skipSpace()
		if p.i >= len(p.src) {
			return nil, p.errorf("unexpected end of input in array")
		}
		switch p.src[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			binary.BigEndian.PutUint32(dst[countAt:], n)
			return dst, nil
		default:
			return nil, p.errorf("expected ',' or ']' in array")
		}
	}
}

func (p *canonParser) object(dst []byte, depth int) ([]byte, error) {
	p.i++ // '{'
	dst = append(dst, 'O', 0, 0, 0, 0)
	countAt := len(dst) - 4
	base := len(p.members)
	defer func() { p.members = p.members[:base] }()
	p.skipSpace()
	if p.i < len(p.src) && p.src[p.i] == '}' {
		p.i++
		return dst, nil
	}
	for {
		p.skipSpace()
		if p.i >= len(p.src) || p.src[p.i] != '"' {
			return nil, p.errorf("expected a string key in object")
		}
		m := memberSpan{start: len(dst)}
		var err error
		if dst, err = p.str(dst); err != nil {
			return nil, err
		}
		m.keyEnd = len(dst)
		p.skipSpace()
		if p.i >= len(p.src) || p.src[p.i] != ':' {
			return nil, p.errorf("expected ':' after object key")
		}
		p.i++
		p.skipSpace()
		if dst, err = p.value(dst, depth+1); err != nil {
			return nil, err
		}
		m.end = len(dst)
		p.members = append(p.members, m)
		p.skipSpace()
		if p.i >= len(p.src) {
			return nil, p.errorf("unexpected end of input in object")
		}
		switch p.src[p.i] {
		case ',':
			p.i++
			continue
		case '}':
			p.i++
		default:
			return nil, p.errorf("expected ',' or '}' in object")
		}
		break
	}
	members := p.members[base:]
	dst = p.sortMembers(dst, countAt+4, members)
	return dst, nil
}

// sortMembers rewrites the encoded members of one object, which occupy
// dst[from:], in key order without duplicate keys, and fills in their count.
func (p *canonParser) sortMembers(dst []byte, from int, members []memberSpan) []byte {
	key := func(m memberSpan) []byte { return dst[m.start+4 : m.keyEnd] }
	ordered := true
	for i := 1; i < len(members); i++ {
		if bytes.Compare(key(members[i-1]), key(members[i])) >= 0 {
			ordered = false
			break
		}
	}
	if ordered {
		binary.BigEndian.PutUint32(dst[from-4:], uint32(len(members)))
		return dst
	}
	// Stable, so that among equal keys the last one in the text stays last.
	slices.SortStableFunc(members, func(a, b memberSpan) int { return bytes.Compare(key(a), key(b)) })
	p.scratch = append(p.scratch[:0], dst[from:]...)
	skey := func(m memberSpan) []byte { return p.scratch[m.start-from+4 : m.keyEnd-from] }
	out := dst[:from]
	var n uint32
	for i, m := range members {
		if i+1 < len(members) && bytes.Equal(skey(m), skey(members[i+1])) {
			continue // a later duplicate wins, as in jsonb
		}
		out = append(out, p.scratch[m.start-from:m.end-from]...)
		n++
	}
	binary.BigEndian.PutUint32(out[from-4:], n)
	return out
}

// str decodes the JSON string at p.i and appends it to dst as lp(bytes).
func (p *canonParser) str(dst []byte) ([]byte, error) {
	p.i++ // opening quote
	dst = append(dst, 0, 0, 0, 0)
	lenAt := len(dst) - 4
	for {
		// Copy the run of plain bytes in one go.
		j := p.i
		for j < len(p.src) {
			c := p.src[j]
			if c == '"' || c == '\\' || c < 0x20 {
				break
			}
			j++
		}
		dst = append(dst, p.src[p.i:j]...)
		p.i = j
		if p.i >= len(p.src) {
			return nil, p.errorf("unterminated string")
		}
		c := p.src[p.i]
		switch {
		case c == '"':
			p.i++
			binary.BigEndian.PutUint32(dst[lenAt:], uint32(len(dst)-lenAt-4))
			return dst, nil
		case c < 0x20:
			return nil, p.errorf("control character in string")
		}
		// A backslash escape.
		if p.i+1 >= len(p.src) {
			return nil, p.errorf("unterminated escape")
		}
		e := p.src[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, p.errorf("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// A pair encodes one rune; a lone surrogate becomes U+FFFD as in
				// encoding/json (PostgreSQL rejects it, so it is never stored).
				r2 := utf8.RuneError
				if p.i+1 < len(p.src) && p.src[p.i] == '\\' && p.src[p.i+1] == 'u' {
					save := p.i
					p.i += 2
					if lo, ok := p.hex4(); ok {
						if d := utf16.DecodeRune(r, lo); d != utf8.RuneError {
							r2 = d
						} else {
							p.i = save
						}
					} else {
						p.i = save
					}
				}
				r = r2
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return nil, p.errorf("invalid escape %q", e)
		}
	}
}

func (p *canonParser) hex4() (rune, bool) {
	if p.i+4 > len(p.src) {
		return 0, false
	}
	var r rune
	for _, c := range p.src[p.i : p.i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

// maxExponent bounds the exponent of a JSON number; PostgreSQL's numeric
// rejects far smaller magnitudes, so nothing storable is refused.
const maxExponent = 1 << 30

// number parses a JSON number and appends 'D' lp(canonical decimal).
func (p *canonParser) number(dst []byte) ([]byte, error) {
	neg := false
	if p.src[p.i] == '-' {
		neg = true
		p.i++
	}
	digits := func() (int, int) {
		start := p.i
		for p.i < len(p.src) && p.src[p.i] >= '0' && p.src[p.i] <= '9' {
			p.i++
		}
		return start, p.i
	}
	is, ie := digits()
	if ie == is || (p.src[is] == '0' && ie-is > 1) {
		return nil, p.errorf("invalid number")
	}
	fs, fe := ie, ie
	if p.i < len(p.src) && p.src[p.i] == '.' {
		p.i++
		fs, fe = digits()
		if fe == fs {
			return nil, p.errorf("invalid number")
		}
	}
	exp := int64(0)
	if p.i < len(p.src) && (p.src[p.i] == 'e' || p.src[p.i] == 'E') {
		p.i++
		expNeg := false
		if p.i < len(p.src) && (p.src[p.i] == '+' || p.src[p.i] == '-') {
			expNeg = p.src[p.i] == '-'
			p.i++
		}
		es, ee := digits()
		if ee == es {
			return nil, p.errorf("invalid number")
		}
		for _, c := range p.src[es:ee] {
			exp = exp*10 + int64(c-'0')
			if exp > maxExponent {
				return nil, p.errorf("number out of range")
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	// The value is (int digits ++ frac digits) * 10^(exp - len(frac digits)).
	exp -= int64(fe - fs)
	// Significant digits: the concatenation without leading zeros and without
	// trailing zeros (each of which raises the exponent).
	dst = append(dst, 'D', 0, 0, 0, 0)
	lenAt := len(dst) - 4
	start := len(dst)
	if neg {
		dst = append(dst, '-')
	}
	ds := len(dst)
	dst = append(dst, p.src[is:ie]...)
	dst = append(dst, p.src[fs:fe]...)
	k := ds
	for k < len(dst) && dst[k] == '0' {
		k++
	}
	dst = append(dst[:ds], dst[k:]...)
	for len(dst) > ds && dst[len(dst)-1] == '0' {
		dst = dst[:len(dst)-1]
		exp++
	}
	if len(dst) == ds {
		dst = append(dst[:start], '0') // zero, whatever its sign
	} else {
		dst = append(dst, 'e')
		dst = strconv.AppendInt(dst, exp, 10)
	}
	binary.BigEndian.PutUint32(dst[lenAt:], uint32(len(dst)-lenAt-4))
	return dst, nil
}
