package main

import (
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dnsfence/dnsfence/configs"
)

// loggers are the logs a running dnsfence writes.
type loggers struct {
	// main is sampled: a flood of identical warnings (an upstream down under load) must not
	// flood the disk.
	main *zap.Logger
	// policy (the "would have blocked" lines) and queries are not: dropping lines would make
	// them useless.
	policy, queries *zap.Logger
	// close flushes and closes the query log file, if any.
	close func() error
}

// newLoggers builds the logs from the log config: everything on w, except the query log when
// log.query_file names a file.
func newLoggers(c configs.LogConfig, w io.Writer) (loggers, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return loggers{}, fmt.Errorf("log level: %w", err)
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
	l := loggers{
		main:   zap.New(zapcore.NewSamplerWithOptions(core, time.Second, 100, 100)),
		policy: zap.New(core).Named("policy"),
		close:  func() error { return nil },
	}
	if c.QueryFile == "" {
		// log.queries is the opt-in: log.level does not silence it.
		l.queries = zap.New(zapcore.NewCore(enc, out, zapcore.InfoLevel)).Named("query")
		return l, nil
	}
	f, err := openQueryFile(c, l.main)
	if err != nil {
		return loggers{}, err
	}
	l.queries, l.close = f.logger, f.close
	return l, nil
}
