// Package blocklist loads lists of blocked domains and answers whether a
// query name is covered by one of them.
//
// An entry blocks the name itself and every name below it: entry example.com
// matches example.com and a.b.example.com, but not notexample.com.
package blocklist

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
)

const (
	maxNameLen  = 253 // RFC 1035 limit on a name in text form, without the trailing dot
	maxLabelLen = 63
	maxLineLen  = 4 << 10
	maxExamples = 5
	maxExample  = 80 // bytes of offending text quoted in an example

	readBufSize = 64 << 10 // a line that does not fit is over maxLineLen anyway
	chunkSize   = 32 << 10 // entry bytes per shared string allocation
)

// ErrNoValidEntries is returned, wrapped, by Parse when the input holds
// invalid lines but no valid entry: a corrupted or wrong-format file must not
// silently replace a good list with nothing.
var ErrNoValidEntries = errors.New("no valid entries")

// Stats describes one Parse run.
type Stats struct {
	Lines    int      // lines read
	Entries  int      // valid names returned, duplicates included
	Invalid  int      // rejected lines, or names in a hosts line
	Examples []string // the first few rejections, as "path:line: reason: text"
}

// Rejection reasons, as they appear in Stats.Examples.
const (
	reasonLineTooLong = "line too long"
	reasonBareIP      = "bare IP address"
	reasonIPName      = "IP address as name"
	reasonExtraFields = "several names without an IP address"
	reasonEmpty       = "empty name"
	reasonNameTooLong = "name too long"
	reasonEmptyLabel  = "empty label"
	reasonLabelLong   = "label too long"
	reasonAdblock     = "adblock rule"
	reasonWildcard    = "wildcard"
	reasonRegexp      = "regular expression"
	reasonBadChar     = "invalid character"
)

var utf8BOM = []byte("\xef\xbb\xbf")

// Parse reads a domain list: one domain per line, or hosts-file lines ("IP
// name..."). Comments start with '#' or '!' at the beginning of a line, or
// with '#' after whitespace. Names are lowercased and lose a trailing dot;
// loopback names such as localhost are skipped silently. Anything else that
// is not a valid host name is counted in Stats.Invalid.
//
// name identifies the input (usually its path) in Stats.Examples and errors.
// A read error is returned wrapped; so is ErrNoValidEntries when the input has
// invalid lines and no entry. Comment-only or empty input is not an error.
func Parse(r io.Reader, name string) ([]string, Stats, error) {
	p := parser{name: name}
	br := bufio.NewReaderSize(r, readBufSize)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			p.st.Lines++
			p.reject(reasonLineTooLong, line)
			err = skipLine(br)
		case len(line) > 0:
			p.st.Lines++
			p.parseLine(line)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, p.st, fmt.Errorf("read %s: %w", name, err)
		}
	}
	entries := p.names.finish()
	p.st.Entries = len(entries)
	if len(entries) == 0 && p.st.Invalid > 0 {
		return nil, p.st, fmt.Errorf("%w: %d invalid, e.g. %s", ErrNoValidEntries, p.st.Invalid, p.st.Examples[0])
	}
	return entries, p.st, nil
}

// skipLine discards the rest of a line that overflowed the read buffer.
func skipLine(br *bufio.Reader) error {
	for {
		if _, err := br.ReadSlice('\n'); err != bufio.ErrBufferFull {
			return err
		}
	}
}

type parser struct {
	name  string
	st    Stats
	names stringBatch
}

func (p *parser) reject(reason string, text []byte) {
	p.st.Invalid++
	if len(p.st.Examples) >= maxExamples {
		return
	}
	suffix := ""
	if len(text) > maxExample {
		text, suffix = text[:maxExample], "..."
	}
	p.st.Examples = append(p.st.Examples, fmt.Sprintf("%s:%d: %s: %q%s", p.name, p.st.Lines, reason, text, suffix))
}

func (p *parser) parseLine(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if p.st.Lines == 1 {
		line = bytes.TrimPrefix(line, utf8BOM)
	}
	if len(line) > maxLineLen {
		p.reject(reasonLineTooLong, line)
		return
	}
	line = bytes.TrimSpace(cutComment(line))
	if len(line) == 0 || line[0] == '!' {
		return
	}
	first, rest := nextField(line)
	if isIP(first) {
		if len(rest) == 0 {
			p.reject(reasonBareIP, first)
			return
		}
		for len(rest) > 0 {
			var f []byte
			f, rest = nextField(rest)
			p.addName(f, true)
		}
		return
	}
	if len(rest) > 0 {
		// Report why the first field is wrong if it is, as that is the
		// likelier mistake (e.g. "||x^ $third-party").
		reason := reasonExtraFields
		if r := checkName(bytes.TrimSuffix(first, []byte("."))); r != "" {
			reason = r
		}
		p.reject(reason, line)
		return
	}
	p.addName(first, false)
}

// addName validates, normalizes and keeps one name. inHosts tells whether it
// follows an IP address, where a numeric name is a misplaced address.
func (p *parser) addName(tok []byte, inHosts bool) {
	tok = bytes.TrimSuffix(tok, []byte("."))
	if reason := checkName(tok); reason != "" {
		p.reject(reason, tok)
		return
	}
	var buf [maxNameLen]byte
	name := buf[:len(tok)]
	for i, c := range tok {
		name[i] = lower(c)
	}
	if isLoopbackName(name) {
		return
	}
	if isIP(name) {
		reason := reasonBareIP
		if inHosts {
			reason = reasonIPName
		}
		p.reject(reason, tok)
		return
	}
	p.names.add(name)
}

// cutComment drops a comment: '#' at the start of the line or after
// whitespace. A '#' inside a token is left for validation to reject.
func cutComment(line []byte) []byte {
	for i, c := range line {
		if c == '#' && (i == 0 || isSpace(line[i-1])) {
			return line[:i]
		}
	}
	return line
}

// nextField splits off the first whitespace-separated field of b, which has
// no leading whitespace; rest has none either.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && !isSpace(b[i]) {
		i++
	}
	field, rest = b[:i], b[i:]
	for len(rest) > 0 && isSpace(rest[0]) {
		rest = rest[1:]
	}
	return field, rest
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r'
}

// isIP reports whether b is an IPv4 or IPv6 address, without allocating for
// the common sinkhole addresses and for names that cannot be addresses.
func isIP(b []byte) bool {
	switch string(b) {
	case "0.0.0.0", "127.0.0.1", "::", "::1":
		return true
	}
	if len(b) == 0 {
		return false
	}
	if bytes.IndexByte(b, ':') < 0 {
		for _, c := range b { // IPv4 has only digits and dots
			if c != '.' && (c < '0' || c > '9') {
				return false
			}
		}
	}
	_, err := netip.ParseAddr(string(b))
	return err == nil
}

// isLoopbackName reports names that hosts files map to local addresses;
// blocking them would only break the machine, so they are skipped silently.
func isLoopbackName(name []byte) bool {
	switch string(name) {
	case "localhost", "localhost.localdomain", "local", "broadcasthost",
		"ip6-localhost", "ip6-loopback", "ip6-localnet", "ip6-mcastprefix",
		"ip6-allnodes", "ip6-allrouters", "ip6-allhosts", "0.0.0.0":
		return true
	}
	return false
}

// checkName returns why name (trailing dot removed, any case) is not a valid
// entry, or "" if it is.
func checkName(name []byte) string {
	switch {
	case len(name) == 0:
		return reasonEmpty
	case len(name) > maxNameLen:
		return reasonNameTooLong
	}
	label := 0
	for _, c := range name {
		switch {
		case c == '.':
			if label == 0 {
				return reasonEmptyLabel
			}
			label = 0
		case isNameChar(lower(c)):
			label++
			if label > maxLabelLen {
				return reasonLabelLong
			}
		default:
			return syntaxReason(name)
		}
	}
	if label == 0 {
		return reasonEmptyLabel
	}
	return ""
}

// syntaxReason names the list syntax a token with invalid characters seems
// to use, to point at a list configured with the wrong format.
func syntaxReason(tok []byte) string {
	switch {
	case bytes.HasPrefix(tok, []byte("||")), bytes.HasPrefix(tok, []byte("@@")), bytes.IndexByte(tok, '^') >= 0:
		return reasonAdblock
	case bytes.IndexByte(tok, '*') >= 0:
		return reasonWildcard
	case len(tok) > 1 && tok[0] == '/' && tok[len(tok)-1] == '/':
		return reasonRegexp
	}
	return reasonBadChar
}

func isNameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// stringBatch turns names into strings that share one allocation per chunk:
// a million separate small strings cost noticeably more heap and GC work.
// Entries of one list live and die together, so sharing pins nothing extra.
type stringBatch struct {
	buf  []byte
	ends []int
	out  []string
}

func (b *stringBatch) add(name []byte) {
	if len(b.buf)+len(name) > cap(b.buf) {
		b.flush()
		if b.buf == nil {
			b.buf = make([]byte, 0, chunkSize)
		}
	}
	b.buf = append(b.buf, name...)
	b.ends = append(b.ends, len(b.buf))
}

func (b *stringBatch) flush() {
	if len(b.ends) == 0 {
		return
	}
	s := string(b.buf)
	start := 0
	for _, end := range b.ends {
		b.out = append(b.out, s[start:end])
		start = end
	}
	b.buf, b.ends = b.buf[:0], b.ends[:0]
}

// finish returns the names; the slice is kept for the list's lifetime, so
// spare capacity left by append growth is dropped.
func (b *stringBatch) finish() []string {
	b.flush()
	if cap(b.out)-len(b.out) > len(b.out)/8 {
		return slices.Clone(b.out)
	}
	return b.out
}
