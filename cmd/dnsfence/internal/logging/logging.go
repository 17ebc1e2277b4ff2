// Package logging builds the logs a running dnsfence writes from the log: section: the main log
// (sampled), the policy log and the query log, on stderr or, for queries, a rotated file. What
// goes into them is decided by their users, not here.
package logging

import (
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dnsfence/dnsfence/configs"
)

// Loggers are the logs a running dnsfence writes.
type Loggers struct {
	// Main is sampled: a flood of identical warnings (an upstream down under load) must not
	// flood the disk.
	Main *zap.Logger
	// Policy (the "would have blocked" lines) and Queries are not: dropping lines would make
	// them useless.
	Policy, Queries *zap.Logger
	// Close flushes and closes the query log file, if any.
	Close func() error
}

// New builds the logs from the log config: everything on w, except the query log when
// log.query_file names a file.
func New(c configs.LogConfig, w io.Writer) (Loggers, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return Loggers{}, fmt.Errorf("log level: %w", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "json" {
		enc = zapcore.NewJSONEncoder(encCfg)
	} else {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		encCfg.EncodeDuration = zapcore.StringDurationEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	out := zapcore.Lock(zapcore.AddSync(w))
	core := zapcore.NewCore(enc, out, level)
	l := Loggers{
		Main:   zap.New(zapcore.NewSamplerWithOptions(core, time.Second, 100, 100)),
		Policy: zap.New(core).Named("policy"),
		Close:  func() error { return nil },
	}
	if c.QueryFile == "" {
		// log.queries is the opt-in: log.level does not silence it.
		l.Queries = zap.New(zapcore.NewCore(enc, out, zapcore.InfoLevel)).Named("query")
		return l, nil
	}
	f, err := openQueryFile(c, l.Main)
	if err != nil {
		return Loggers{}, err
	}
	l.Queries, l.Close = f.logger, f.close
	return l, nil
}
