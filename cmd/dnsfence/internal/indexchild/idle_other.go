//go:build !linux

package indexchild

import (
	"errors"
	"os"
)

func lowerPriority() error { return errors.New("no idle scheduling on this system") }

func peakRSS(*os.ProcessState) int64 { return 0 }
