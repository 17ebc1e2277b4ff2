//go:build !linux

package egress

import (
	"context"
	"net/netip"
	"time"
)

// Supported reports whether this platform has an nftables backend.
const Supported = false

// Owner is a stub: egress needs Linux.
type Owner struct{}

// Start fails: egress needs Linux.
func Start(*Ruleset, Options) (*Owner, error) { return nil, ErrUnsupported }

// Check fails: egress needs Linux.
func Check() error { return ErrUnsupported }

// Apply does nothing.
func (*Owner) Apply(*Ruleset) {}

// Learn does nothing.
func (*Owner) Learn(string, []netip.Addr, time.Duration) bool { return false }

// Status reports ErrUnsupported.
func (*Owner) Status() error { return ErrUnsupported }

// Counters reports ErrUnsupported.
func (*Owner) Counters(context.Context) (map[string]Counter, error) { return nil, ErrUnsupported }

// Elements reports nothing.
func (*Owner) Elements(context.Context) map[string]int { return nil }

// Explain reports nothing.
func (*Owner) Explain(context.Context, netip.Addr) []Hit { return nil }

// Close does nothing.
func (*Owner) Close() error { return nil }
