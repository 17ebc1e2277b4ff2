package upstream

import "time"

// Test hooks for the connection pools of plain (udp://, tcp://) upstreams.

// IdleConns returns how many UDP and TCP connections u keeps idle.
func IdleConns(u Upstream) (udp, tcp int) {
	p := u.(*plainUpstream)
	return p.udp.idleCount(), p.tcp.idleCount()
}

// SetUDPLifetime changes how long u uses one UDP socket.
func SetUDPLifetime(u Upstream, d time.Duration) { u.(*plainUpstream).udp.maxAge = d }
