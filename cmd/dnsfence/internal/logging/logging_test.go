package logging

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dnsfence/dnsfence/configs"
)

// TestNew: the main and policy logs go to w in the configured format; the query log goes to
// log.query_file as JSON lines once closed, and below log.level too (it is the opt-in).
func TestNew(t *testing.T) {
	var w bytes.Buffer
	file := filepath.Join(t.TempDir(), "queries.log")
	l, err := New(configs.LogConfig{Level: "error", Format: "json", QueryFile: file, QueryMaxSizeMB: 1}, &w)
	if err != nil {
		t.Fatal(err)
	}
	l.Main.Info("below the level")
	l.Policy.Error("would have blocked")
	l.Queries.Info("query", zap.String("name", "example.org."))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if out := w.String(); strings.Contains(out, "below the level") || !strings.Contains(out, `"logger":"policy"`) || strings.Contains(out, "example.org") {
		t.Errorf("main output:\n%s", out)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(data); !strings.HasPrefix(s, `{"time":`) || !strings.Contains(s, `"name":"example.org."`) {
		t.Errorf("query file:\n%s", s)
	}
	if _, err := New(configs.LogConfig{Level: "loud"}, &w); err == nil {
		t.Error("an unknown level was accepted")
	}
	if _, err := New(configs.LogConfig{Level: "info", QueryFile: filepath.Join(t.TempDir(), "missing", "q.log")}, &w); err == nil ||
		!strings.Contains(err.Error(), "log.query_file") {
		t.Errorf("unwritable query file: %v", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestReportingWriter: a failed write is logged and swallowed, so the buffer in front keeps going.
func TestReportingWriter(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	n, err := reportingWriter{w: failingWriter{}, log: zap.New(core)}.Write([]byte("line\n"))
	if n != 5 || err != nil {
		t.Errorf("Write = %d, %v; want 5, nil", n, err)
	}
	if logs.FilterMessage("query log lines lost").Len() != 1 {
		t.Errorf("not logged: %v", logs.All())
	}
}
