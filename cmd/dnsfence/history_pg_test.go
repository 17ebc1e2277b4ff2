package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsfence/dnsfence/resolver/history"
	"github.com/dnsfence/dnsfence/resolver/resolvertest"
)

// pgServer is a throwaway PostgreSQL cluster on a loopback port.
type pgServer struct {
	bin, data, log, port, runAs string
}

// startPostgres creates and starts a cluster from Debian's postgresql package (initdb + pg_ctl)
// in a temp directory, as the postgres (or nobody) user when running as root, since initdb
// refuses root. It skips without PostgreSQL, except in CI.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("PostgreSQL not installed; .ci/run should install the postgresql package")
		}
		t.Skip("PostgreSQL not installed (Debian: apt-get install postgresql)")
	}
	pg := &pgServer{bin: filepath.Dir(bins[len(bins)-1])}
	dir, err := os.MkdirTemp("", "dnsfence-pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		for _, name := range []string{"postgres", "nobody"} {
			if u, err := user.Lookup(name); err == nil {
				uid, _ := strconv.Atoi(u.Uid)
				gid, _ := strconv.Atoi(u.Gid)
				if err := os.Chown(dir, uid, gid); err != nil {
					t.Fatal(err)
				}
				pg.runAs = name
				break
			}
		}
		if pg.runAs == "" {
			t.Skip("running as root without a postgres or nobody user for initdb")
		}
	}
	pg.data, pg.log = filepath.Join(dir, "data"), filepath.Join(dir, "postgres.log")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, pg.port, _ = net.SplitHostPort(l.Addr().String())
	l.Close()
	pg.run(t, "initdb", "-D", pg.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	pg.start(t)
	t.Cleanup(func() { _ = pg.cmd("pg_ctl", "-D", pg.data, "-m", "immediate", "stop").Run() })
	return pg
}

func (pg *pgServer) cmd(name string, args ...string) *exec.Cmd {
	path := filepath.Join(pg.bin, name)
	if pg.runAs != "" {
		return exec.Command("runuser", append([]string{"-u", pg.runAs, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (pg *pgServer) run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := pg.cmd(name, args...).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(pg.log)
		t.Fatalf("%s %v: %v\n%s\n%s", name, args, err, out, log)
	}
}

// start starts the server and waits until it takes connections (pg_ctl -w).
func (pg *pgServer) start(t *testing.T) {
	t.Helper()
	pg.run(t, "pg_ctl", "-D", pg.data, "-l", pg.log, "-w", "-t", "30", "-o",
		fmt.Sprintf("-p %s -c listen_addresses=127.0.0.1 -k %s -c fsync=off", pg.port, filepath.Dir(pg.data)), "start")
}

// kill stops the server at once, as a crash would.
func (pg *pgServer) kill(t *testing.T) {
	t.Helper()
	pg.run(t, "pg_ctl", "-D", pg.data, "-m", "immediate", "-w", "stop")
}

func (pg *pgServer) url() string {
	return "postgres://postgres@127.0.0.1:" + pg.port + "/postgres?sslmode=disable&connect_timeout=5"
}

// TestBinaryHistoryPostgres: two dnsfence instances write to one PostgreSQL database and the
// report merges them; with the database killed, DNS answers as fast, attempts past the buffer
// are counted as dropped, and writing resumes when it is back.
func TestBinaryHistoryPostgres(t *testing.T) {
	pg := startPostgres(t)
	up := resolvertest.Start(t, resolvertest.A("192.0.2.53"))
	dir := t.TempDir()
	cfgFor := func(name string) string {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return historyConfig(t, d, up.Addr, "  postgres_url: \""+pg.url()+"\"\n  flush_interval: 100ms\n  instance: "+name+
			"\n  max_buffered_rows: 2\n")
	}
	cfgA, cfgB := cfgFor("edge-a"), cfgFor("edge-b")
	a, b := startBinary(t, "-config", cfgA), startBinary(t, "-config", cfgB)
	blocked(t, a.dnsAddr, "www.alipay.com")
	blocked(t, a.dnsAddr, "www.alipay.com")
	blocked(t, b.dnsAddr, "alipay.com")
	blocked(t, b.dnsAddr, "msf.3g.qq.com")
	sum := waitReport(t, cfgA, func(s history.Summary) bool {
		return countFor(s, "alipay", "blocked") == 3 && countFor(s, "qq", "blocked") == 1
	}, "-since", "1d")
	for _, e := range sum.Entries {
		if e.App == "alipay" && strings.Join(e.Instances, ",") != "edge-a,edge-b" {
			t.Errorf("alipay entry %+v: want it merged from edge-a and edge-b", e)
		}
	}

	// The database dies: DNS answers as before, the store is reported down.
	pg.kill(t)
	waitMetric(t, a.httpAddr, "dnsfence_history_store_up", 0)
	for _, name := range []string{"www.alipay.com", "forwarded.example", "www.alipay.com"} {
		start := time.Now()
		r := resolvertest.Exchange(t, "udp", a.dnsAddr, resolvertest.Query(name, dns.TypeA, false))
		if d := time.Since(start); d > time.Second || r == nil {
			t.Errorf("%s took %v with the database down", name, d)
		}
	}
	// Two rows fit in the buffer (alipay above, then vmate); three more apps are dropped.
	for _, name := range []string{"vmate.com", "ushareit.com", "intsig.net", "wps.cn"} {
		blocked(t, a.dnsAddr, name)
	}
	waitMetric(t, a.httpAddr, "dnsfence_history_dropped_events_total", 3)
	if v := value(scrape(t, a.httpAddr), "dnsfence_history_buffer_fill_ratio"); v != 1 {
		t.Errorf("buffer_fill_ratio %v with the buffer full", v)
	}

	// Back: the buffered rows are written.
	pg.start(t)
	waitMetric(t, a.httpAddr, "dnsfence_history_store_up", 1)
	sum = waitReport(t, cfgB, func(s history.Summary) bool {
		return countFor(s, "alipay", "blocked") == 5 && countFor(s, "vmate", "blocked") == 1
	}, "-since", "1d")
	if n := countFor(sum, "shareit", "blocked") + countFor(sum, "camscanner", "blocked") + countFor(sum, "wps-office", "blocked"); n != 0 {
		t.Errorf("%d dropped attempts were written", n)
	}

	// A database written by a newer dnsfence is refused.
	stopBinary(t, a)
	stopBinary(t, b)
	db, err := sql.Open("pgx", pg.url())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE schema_version SET version = 42`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := history.OpenPostgres(ctx, pg.url()); !errors.Is(err, history.ErrNewerSchema) {
		t.Errorf("newer schema: %v", err)
	}
}

// waitMetric polls /metrics until name reaches want.
func waitMetric(t *testing.T, httpAddr, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := value(scrape(t, httpAddr), name)
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, v, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
