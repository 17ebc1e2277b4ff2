package resolver

import (
	"errors"
	"fmt"

	"github.com/miekg/dns"
)

// Errors the terminal stage fails with, for errors.Is in the stages above it (cache, Handler).
var (
	ErrUpstreamRcode   = errors.New("upstream answered with an error rcode")
	ErrUpstreamsFailed = errors.New("no upstream answered")
)

// RcodeError is an upstream reply whose rcode (SERVFAIL, REFUSED, FORMERR) makes us try the next one.
type RcodeError struct{ Rcode int }

func (e *RcodeError) Error() string {
	return fmt.Sprintf("upstream answered %s", dns.RcodeToString[e.Rcode])
}

// Is makes errors.Is(err, ErrUpstreamRcode) true.
func (e *RcodeError) Is(target error) bool { return target == ErrUpstreamRcode }
