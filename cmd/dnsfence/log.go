package main

import (
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger builds the main logger and the query logger from the log config, both writing to w.
// The main logger is sampled (a flood of identical warnings, e.g. an upstream down under load, must
// not flood the disk); the query logger is not, since dropping query lines would make it useless.
func newLogger(c LogConfig, w io.Writer) (log, queries *zap.Logger, err error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, nil, fmt.Errorf("log level: %w", err)
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
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	sampled := zapcore.NewSamplerWithOptions(core, time.Second, 100, 100)
	return zap.New(sampled), zap.New(core).Named("query"), nil
}
