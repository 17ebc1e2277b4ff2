package admin

import (
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/dnsfence/dnsfence/metrics"
	"github.com/dnsfence/dnsfence/resolver"
)

// MaxPause bounds a pause, so a forgotten one cannot switch blocking off for good.
const MaxPause = 24 * time.Hour

// Pauser pauses blocking for the admin API. It owns the resolver.Pause every chain shares (so a
// pause survives config reloads), the dnsfence_blocking_paused gauge, the log lines, and the
// timer that resumes blocking at the deadline.
type Pauser struct {
	pause resolver.Pause
	m     *metrics.Metrics
	log   *zap.Logger

	mu    sync.Mutex
	until time.Time // zero while not paused
	timer *time.Timer
}

func NewPauser(m *metrics.Metrics, log *zap.Logger) *Pauser {
	m.Paused(false)
	return &Pauser{m: m, log: log}
}

// start pauses blocking for d (replacing any pause in progress) and returns when it ends; by
// says who asked, for the log.
func (p *Pauser) Start(d time.Duration, by string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	until := time.Now().Add(d)
	p.pause.Set(until)
	if p.timer != nil {
		p.timer.Stop()
	}
	p.until = until
	p.timer = time.AfterFunc(d, func() { p.expire(until) })
	p.m.Paused(true)
	p.log.Warn("blocking paused: every blocklist match is answered normally",
		zap.Duration("for", d), zap.Time("until", until), zap.String("by", by))
	return until
}

// resume ends a pause; it reports whether there was one.
func (p *Pauser) Resume(by string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resumeLocked("resumed by " + by)
}

// expire is the timer's: it resumes blocking unless the pause it was set for was replaced or
// ended meanwhile.
func (p *Pauser) expire(until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.until.Equal(until) {
		p.resumeLocked("pause ended")
	}
}

func (p *Pauser) resumeLocked(reason string) bool {
	if p.until.IsZero() {
		return false
	}
	p.pause.Clear()
	p.until = time.Time{}
	p.timer.Stop()
	p.timer = nil
	p.m.Paused(false)
	p.log.Info("blocking resumed", zap.String("reason", reason))
	return true
}

// state says whether blocking is paused now, and until when.
func (p *Pauser) State() (paused bool, until time.Time) {
	until = p.pause.Until(time.Now())
	return !until.IsZero(), until
}

// stop stops the timer at shutdown.
func (p *Pauser) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timer != nil {
		p.timer.Stop()
	}
}

// Pause is the resolver.Pause the Pauser sets, for every chain's policy stage.
func (p *Pauser) Pause() *resolver.Pause { return &p.pause }
