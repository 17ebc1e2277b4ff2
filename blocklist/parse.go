// Package blocklist loads lists of blocked (and allowed) domains and answers
// whether a query name is covered by one of them.
//
// A domain entry blocks the name itself and every name below it: entry
// example.com matches example.com and a.b.example.com, but not
// notexample.com. See Kind for the other rules.
package blocklist

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

const (
	maxNameLen  = 253 // RFC 1035 limit on a name in text form, without the trailing dot
	maxLabelLen = 63
	maxLineLen  = 4 << 10
	maxExamples = 5
	maxExample  = 80 // bytes of offending text quoted in an example

	readBufSize = 64 << 10 // a line that does not fit is over maxLineLen anyway
)

// ErrNoValidEntries is returned, wrapped, by Parse when the input holds
// invalid or unsupported lines but no valid rule: a corrupted or wrong-format
// file must not silently replace a good list with nothing.
var ErrNoValidEntries = errors.New("no valid entries")

// Kind is what a rule does.
type Kind uint8

// Rule kinds. Allow rules win over block rules whatever their lists: see Set.
const (
	Block       Kind = iota // the name and every name below it: "a.com", "0.0.0.0 a.com", "||a.com^"
	BlockBelow              // only names below it: "*.a.com", "||*.a.com^"
	Allow                   // allows the name and every name below it: "@@||a.com^", or a domain in an allowlist
	AllowBelow              // allows only names below it: "@@||*.a.com^", or "*.a.com" in an allowlist
	Regexp                  // blocks names the RE2 expression matches: "/^ad[0-9]+\\./"
	AllowRegexp             // allows names the expression matches: "@@/…/", or "/…/" in an allowlist
	numKinds
)

var kindNames = [numKinds]string{"block", "block-below", "allow", "allow-below", "regexp", "allow-regexp"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// allowing returns the kind a rule has in an allowlist, where every rule allows.
func (k Kind) allowing() Kind {
	switch k {
	case Block:
		return Allow
	case BlockBelow:
		return AllowBelow
	case Regexp:
		return AllowRegexp
	}
	return k
}

// IsAllow reports whether the kind allows rather than blocks.
func (k Kind) IsAllow() bool { return k == Allow || k == AllowBelow || k == AllowRegexp }

// Rule is one parsed rule.
type Rule struct {
	Kind  Kind
	Value string // a lowercase ASCII name, or the expression of a Regexp rule (without slashes)
	Line  int
}

// String formats the rule in the syntax that states its kind.
func (r Rule) String() string { return formatRule(r.Kind, r.Value) }

func formatRule(k Kind, v string) string {
	switch k {
	case BlockBelow:
		return "*." + v
	case Allow:
		return "@@||" + v + "^"
	case AllowBelow:
		return "@@||*." + v + "^"
	case Regexp:
		return "/" + v + "/"
	case AllowRegexp:
		return "@@/" + v + "/"
	}
	return v
}

// Stats describes one Parse run.
type Stats struct {
	Lines       int           // lines read
	Rules       int           // valid rules, duplicates included
	Kinds       [numKinds]int // valid rules by kind
	Invalid     int           // rejected lines, or names in a hosts line
	Unsupported int           // well-formed adblock rules dnsfence cannot honour (modifiers, cosmetic, paths)
	Examples    []string      // the first few rejections, as "path:line: reason: text"
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
	reasonBadChar     = "invalid character"
	reasonIDN         = "invalid internationalized name"
	reasonBadRegexp   = "invalid regular expression"
	reasonWildcard    = "wildcard other than a leading *."

	// Unsupported, counted apart from invalid lines.
	reasonModifiers = "unsupported: adblock rule with $modifiers"
	reasonCosmetic  = "unsupported: cosmetic (element hiding) rule"
	reasonURLRule   = "unsupported: adblock rule for a URL, not a domain"
)

var utf8BOM = []byte("\xef\xbb\xbf")

// Parse reads a list and returns its rules. Each line is one of: a domain;
// a hosts-file line ("IP name..."); an adblock/AdGuard basic rule "||d^" or
// exception "@@||d^"; a wildcard "*.d" (names below d only); a regular
// expression "/re/" (RE2). Comments start with '#' or '!' at the beginning of
// a line, or with '#' after whitespace. Names are lowercased, lose a trailing
// dot, and internationalized names become punycode; loopback names such as
// localhost are skipped silently. Adblock rules with modifiers ("$third-party")
// and cosmetic rules are counted in Stats.Unsupported; anything else that is
// not a valid rule is counted in Stats.Invalid.
//
// name identifies the input (usually its path) in Stats.Examples and errors.
// A read error is returned wrapped; so is ErrNoValidEntries when the input has
// rejected lines and no rule. Comment-only or empty input is not an error.
func Parse(r io.Reader, name string) ([]Rule, Stats, error) {
	var rules []Rule
	st, err := scan(r, name, func(k Kind, v []byte, line int) {
		rules = append(rules, Rule{Kind: k, Value: string(v), Line: line})
	})
	if err != nil {
		return nil, st, err
	}
	return rules, st, nil
}

// CheckList returns an error unless r parses to at least one rule; it fits Fetcher.Check.
func CheckList(r io.Reader) error {
	st, err := scan(r, "download", func(Kind, []byte, int) {})
	if err == nil && st.Rules == 0 {
		err = fmt.Errorf("%w: the list has no rules", ErrNoValidEntries)
	}
	return err
}

// emitFunc receives each valid rule; value is only valid during the call.
type emitFunc func(kind Kind, value []byte, line int)

// scan parses r, calling emit for every rule; see Parse.
func scan(r io.Reader, name string, emit emitFunc) (Stats, error) {
	p := parser{name: name, emit: emit}
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
			return p.st, fmt.Errorf("read %s: %w", name, err)
		}
	}
	if p.st.Rules == 0 && p.st.Invalid+p.st.Unsupported > 0 {
		return p.st, fmt.Errorf("%w: %d invalid and %d unsupported lines, e.g. %s",
			ErrNoValidEntries, p.st.Invalid, p.st.Unsupported, p.st.Examples[0])
	}
	return p.st, nil
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
	name string
	st   Stats
	emit emitFunc
	buf  [maxNameLen]byte
}

func (p *parser) reject(reason string, text []byte) {
	if strings.HasPrefix(reason, "unsupported") {
		p.st.Unsupported++
	} else {
		p.st.Invalid++
	}
	if len(p.st.Examples) >= maxExamples {
		return
	}
	suffix := ""
	if len(text) > maxExample {
		text, suffix = text[:maxExample], "..."
	}
	p.st.Examples = append(p.st.Examples, fmt.Sprintf("%s:%d: %s: %q%s", p.name, p.st.Lines, reason, text, suffix))
}

func (p *parser) add(k Kind, v []byte) {
	p.st.Rules++
	p.st.Kinds[k]++
	p.emit(k, v, p.st.Lines)
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
	switch {
	case len(line) == 0 || line[0] == '!':
		return
	case line[0] == '[' && line[len(line)-1] == ']':
		return // an adblock header such as [Adblock Plus 2.0]
	case bytes.IndexByte(line, '#') >= 0 && isCosmetic(line): // cutComment left only a '#' inside a token
		p.reject(reasonCosmetic, line)
		return
	}
	allow := len(line) > 1 && line[0] == '@' && line[1] == '@'
	if allow || line[0] == '|' || (bytes.IndexByte(line, '^') >= 0 || bytes.IndexByte(line, '$') >= 0) && !bytes.ContainsAny(line, " \t") {
		p.parseAdblock(line, allow)
		return
	}
	if len(line) > 2 && line[0] == '/' && line[len(line)-1] == '/' {
		p.addRegexp(line[1:len(line)-1], Regexp, line)
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
			p.addName(f, true, false)
		}
		return
	}
	if len(rest) > 0 {
		// Report why the first field is wrong if it is, as that is the
		// likelier mistake (e.g. a name followed by a stray word).
		reason := reasonExtraFields
		if _, r := p.normalize(bytes.TrimSuffix(first, []byte("."))); r != "" {
			reason = r
		}
		p.reject(reason, line)
		return
	}
	p.addName(first, false, false)
}

// parseAdblock handles "||d^", "@@||d^", "||*.d^", "@@/re/" and rejects what
// it cannot honour: a DNS filter sees names, not URLs, element hiding or
// request types.
func (p *parser) parseAdblock(line []byte, allow bool) {
	body := line
	if allow {
		body = body[2:]
	}
	if len(body) > 2 && body[0] == '/' && body[len(body)-1] == '/' {
		k := Regexp
		if allow {
			k = AllowRegexp
		}
		p.addRegexp(body[1:len(body)-1], k, line)
		return
	}
	if bytes.IndexByte(body, '$') >= 0 {
		p.reject(reasonModifiers, line)
		return
	}
	if !bytes.HasPrefix(body, []byte("||")) {
		p.reject(reasonURLRule, line)
		return
	}
	body = body[2:]
	body = bytes.TrimSuffix(body, []byte("|"))
	body = bytes.TrimSuffix(body, []byte("^"))
	if bytes.ContainsAny(body, "/^|:?=&") {
		p.reject(reasonURLRule, line)
		return
	}
	p.addName(body, false, allow)
}

func (p *parser) addRegexp(expr []byte, k Kind, line []byte) {
	if _, err := compileRule(string(expr)); err != nil {
		p.reject(reasonBadRegexp, line)
		return
	}
	p.add(k, expr)
}

// addName validates, normalizes and keeps one name; a leading "*." makes it
// a rule for the names below. inHosts tells whether it follows an IP address,
// where a numeric name is a misplaced address.
func (p *parser) addName(tok []byte, inHosts, allow bool) {
	written := tok // rejections quote the name as the list has it, not as trimmed here
	below := bytes.HasPrefix(tok, []byte("*."))
	if below {
		tok = tok[2:]
	}
	tok = bytes.TrimSuffix(tok, []byte("."))
	if bytes.IndexByte(tok, '*') >= 0 {
		p.reject(reasonWildcard, written)
		return
	}
	name, reason := p.normalize(tok)
	if reason != "" {
		p.reject(reason, written)
		return
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
	k := Block
	switch {
	case below && allow:
		k = AllowBelow
	case below:
		k = BlockBelow
	case allow:
		k = Allow
	}
	p.add(k, name)
}

// normalize lowercases a name into p.buf, converting an internationalized name
// to punycode, and returns why it is not a valid entry if it is not.
func (p *parser) normalize(tok []byte) ([]byte, string) {
	for _, c := range tok {
		if c >= utf8.RuneSelf {
			ascii, err := idna.Lookup.ToASCII(string(tok))
			if err != nil {
				return nil, reasonIDN
			}
			tok = []byte(ascii)
			break
		}
	}
	if reason := checkName(tok); reason != "" {
		return nil, reason
	}
	name := p.buf[:len(tok)]
	for i, c := range tok {
		name[i] = lower(c)
	}
	return name, ""
}

// isCosmetic reports element-hiding and scriptlet rules ("example.com##.ad").
func isCosmetic(line []byte) bool {
	for _, m := range [...]string{"##", "#@#", "#?#", "#$#", "#%#"} {
		if bytes.Contains(line, []byte(m)) {
			return true
		}
	}
	return false
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
			return reasonBadChar
		}
	}
	if label == 0 {
		return reasonEmptyLabel
	}
	return ""
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
