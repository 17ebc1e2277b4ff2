package upstream

import "time"

// Test hooks for plain (udp://, tcp://) upstreams.

// IdleConns returns how many TCP connections u keeps idle.
func IdleConns(u Upstream) int { return u.(*plainUpstream).tcp.idleCount() }

// UDPSockets returns how many UDP sockets u has open.
func UDPSockets(u Upstream) int { return u.(*plainUpstream).udp.sockets() }

// SetUDPLifetime changes how long u uses one UDP socket.
func SetUDPLifetime(u Upstream, d time.Duration) {
	m := u.(*plainUpstream).udp
	m.mu.Lock()
	m.lifetime = d
	m.mu.Unlock()
}
