package mail

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// compose checks m and returns the envelope recipients and the message as
// sent in DATA, with CRLF line ends. Every header value is either ours,
// built by net/mail from a parsed address, or Q-encoded, and none may hold
// CR or LF, so nothing in m can add a header.
func (s *Sender) compose(m Message, now time.Time) (rcpts []string, raw []byte, err error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidMessage, fmt.Sprintf(format, args...))
	}
	switch {
	case len(m.To) == 0:
		return nil, nil, invalid("no recipient")
	case len(m.To) > MaxRecipients:
		return nil, nil, invalid("%d recipients, at most %d", len(m.To), MaxRecipients)
	case m.Subject == "":
		return nil, nil, invalid("empty subject")
	case len(m.Subject) > MaxSubjectLen:
		return nil, nil, invalid("subject longer than %d bytes", MaxSubjectLen)
	case strings.ContainsFunc(m.Subject, isControl):
		return nil, nil, invalid("subject contains a control character")
	case strings.TrimSpace(m.Text) == "":
		return nil, nil, invalid("empty text body")
	case len(m.Text) > MaxBodyLen || len(m.HTML) > MaxBodyLen:
		return nil, nil, invalid("body longer than %d bytes", MaxBodyLen)
	}
	to := make([]string, 0, len(m.To))
	seen := make(map[string]bool, len(m.To))
	for _, s := range m.To {
		a, err := parseAddress(s)
		if err != nil {
			return nil, nil, invalid("to: %v", err)
		}
		to = append(to, a.String())
		if key := strings.ToLower(a.Address); !seen[key] {
			seen[key] = true
			rcpts = append(rcpts, a.Address)
		}
	}

	var b bytes.Buffer
	header := func(name, value string) { b.WriteString(name + ": " + value + "\r\n") }
	header("Date", now.Format(time.RFC1123Z))
	header("From", s.from.String())
	header("To", strings.Join(to, ",\r\n "))
	header("Subject", fold(encodeText(m.Subject)))
	header("Message-ID", s.messageID())
	header("MIME-Version", "1.0")
	// RFC 3834: machine-sent; out-of-office responders must not answer.
	header("Auto-Submitted", "auto-generated")

	if m.HTML == "" {
		header("Content-Type", "text/plain; charset=utf-8")
		header("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		if err := writeQP(&b, m.Text); err != nil {
			return nil, nil, err
		}
		return rcpts, b.Bytes(), nil
	}

	mw := multipart.NewWriter(&b)
	ct := mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()})
	header("Content-Type", strings.Replace(ct, "; ", ";\r\n ", 1)) // the boundary is long
	b.WriteString("\r\n")
	// Alternatives go from plainest to richest; clients show the last one
	// they can (RFC 2046, 5.1.4).
	for _, part := range []struct{ typ, body string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.typ + "; charset=utf-8"},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, nil, err
		}
		if err := writeQP(w, part.body); err != nil {
			return nil, nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, nil, err
	}
	return rcpts, b.Bytes(), nil
}

// writeQP writes body quoted-printable, which keeps every line short and
// 7-bit whatever body holds, with CRLF line ends. The line break before a
// multipart boundary belongs to the boundary, so none is added.
func writeQP(w io.Writer, body string) error {
	qp := quotedprintable.NewWriter(w)
	if _, err := io.WriteString(qp, body); err != nil {
		return err
	}
	return qp.Close()
}

// encodeText returns s as it may stand in an unstructured header such as
// Subject: unchanged when it is printable ASCII, otherwise as RFC 2047 "Q"
// encoded-words of at most 66 characters, separated by spaces. Unlike
// mime.QEncoding, it also encodes ASCII text that holds "=?", which a reader
// would otherwise decode as an encoded-word the sender never wrote. It
// encodes all but letters, digits and !*+-/, the set RFC 2047 allows
// everywhere, and never splits a character.
func encodeText(s string) string {
	if !strings.Contains(s, "=?") && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r > '~' }) &&
		!slices.ContainsFunc(strings.Split(s, " "), func(w string) bool { return len(w) > 60 }) {
		return s
	}
	const prefix, suffix = "=?utf-8?q?", "?="
	// Words shorter than RFC 2047's 75 characters keep even the first line,
	// after "Subject: ", within 76.
	const room = 66 - len(prefix) - len(suffix)
	var words []string
	var word strings.Builder
	for _, r := range s {
		var enc strings.Builder
		for _, c := range []byte(string(r)) {
			switch {
			case c == ' ':
				enc.WriteByte('_')
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("!*+-/", c) >= 0:
				enc.WriteByte(c)
			default:
				fmt.Fprintf(&enc, "=%02X", c)
			}
		}
		if word.Len()+enc.Len() > room {
			words = append(words, prefix+word.String()+suffix)
			word.Reset()
		}
		word.WriteString(enc.String())
	}
	words = append(words, prefix+word.String()+suffix)
	return strings.Join(words, " ")
}

// fold breaks a header value at its spaces so that lines stay near 78
// characters (RFC 5322, 2.2.3). Encoded words never contain spaces, and the
// space between two of them is not displayed, so folding there changes
// nothing.
func fold(v string) string {
	const limit = 76 - len("Subject: ")
	var b strings.Builder
	line := 0
	for i, word := range strings.Split(v, " ") {
		if i > 0 {
			if word != "" && line+1+len(word) > limit {
				b.WriteString("\r\n")
				line = 0
			}
			b.WriteByte(' ')
			line++
		}
		b.WriteString(word)
		line += len(word)
	}
	return b.String()
}
