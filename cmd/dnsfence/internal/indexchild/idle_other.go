//go:build !linux

package indexchild

import "errors"

func lowerPriority() error { return errors.New("no idle scheduling on this system") }

func peakRSS() int64 { return 0 }

func idleThread(int) error { return nil }
