package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/dnsfence/dnsfence/configs"
)

// queryFile is the query log written to log.query_file.
type queryFile struct {
	logger *zap.Logger
	close  func() error
}

// queryFileFlush is how long a query line may wait in memory before it reaches the file.
const queryFileFlush = time.Second

// openQueryFile opens log.query_file for the query log: JSON lines (time, then the query's
// fields), rotated by lumberjack when the file would pass query_max_size_mb, keeping
// query_max_backups old files (and none older than query_max_age_days, if set). Lines are
// buffered, so a query costs a copy into memory, not a write to disk; close flushes them.
func openQueryFile(c configs.LogConfig, errLog *zap.Logger) (*queryFile, error) {
	// Fail at start, not at the first query, when the file cannot be written.
	f, err := os.OpenFile(c.QueryFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log.query_file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("log.query_file: %w", err)
	}
	rot := &lumberjack.Logger{
		Filename:   c.QueryFile,
		MaxSize:    c.QueryMaxSizeMB,
		MaxBackups: c.QueryMaxBackups,
		MaxAge:     c.QueryMaxAgeDays,
	}
	buf := &zapcore.BufferedWriteSyncer{
		WS:            zapcore.AddSync(reportingWriter{w: rot, log: errLog}),
		FlushInterval: queryFileFlush,
	}
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{
		TimeKey:        "time",
		EncodeTime:     zapcore.RFC3339NanoTimeEncoder,
		EncodeDuration: zapcore.SecondsDurationEncoder,
		LineEnding:     zapcore.DefaultLineEnding,
	})
	return &queryFile{
		logger: zap.New(zapcore.NewCore(enc, buf, zapcore.InfoLevel)),
		close: func() error {
			if err := buf.Stop(); err != nil {
				return fmt.Errorf("query log: %w", err)
			}
			if err := rot.Close(); err != nil {
				return fmt.Errorf("query log: %w", err)
			}
			return nil
		},
	}, nil
}

// reportingWriter reports write errors to the main log and swallows them: the buffer in front of
// it would otherwise keep the first error and drop every later line, so a disk that was full for
// a minute would end the query log for good.
type reportingWriter struct {
	w   io.Writer
	log *zap.Logger
}

func (r reportingWriter) Write(p []byte) (int, error) {
	if _, err := r.w.Write(p); err != nil {
		r.log.Error("query log lines lost", zap.Int("bytes", len(p)), zap.Error(err))
	}
	return len(p), nil
}
