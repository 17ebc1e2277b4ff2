package history

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkHistoryWeekSize writes a realistic week for a home or small-office network into a
// fresh SQLite file and reports its rows and bytes per 1,000 attempts:
// 40 devices, 12 of them with 1-3 of the curated apps, each app phoning home a few times (1-12)
// an hour while its device is on (16 h a day), hourly buckets, one instance, full client
// addresses. Run: go test ./resolver/history -run '^$' -bench WeekSize -benchtime 1x
func BenchmarkHistoryWeekSize(b *testing.B) {
	apps := []string{"alipay", "camscanner", "qq", "qq-wallet", "shareit", "vmate", "wechat-pay", "wps-office"}
	for b.Loop() {
		rng := rand.New(rand.NewPCG(1, 2))
		path := filepath.Join(b.TempDir(), "history.db")
		s, err := OpenSQLite(context.Background(), path, SQLiteOptions{})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
		var attempts, rows int64
		for d := range 12 {
			client := fmt.Sprintf("192.168.1.%d", 20+d)
			var mine []string
			for _, i := range rng.Perm(len(apps))[:1+rng.IntN(3)] {
				mine = append(mine, apps[i])
			}
			for h := range 7 * 24 {
				if h%24 < 7 || h%24 == 23 { // off at night
					continue
				}
				bucket := start.Add(time.Duration(h) * time.Hour)
				var batch []Row
				for _, app := range mine {
					n := int64(1 + rng.IntN(12))
					attempts += n
					batch = append(batch, Row{Bucket: bucket, Instance: "router", Client: client, App: app, List: app,
						Outcome: "blocked", Count: n, FirstSeen: bucket.Add(time.Minute), LastSeen: bucket.Add(50 * time.Minute)})
				}
				if err := s.Write(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
				rows += int64(len(batch))
			}
		}
		db := s.(*sqlStore).db
		if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			b.Fatal(err)
		}
		if _, err := db.Exec(`VACUUM`); err != nil {
			b.Fatal(err)
		}
		s.Close()
		st, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(attempts), "attempts/week")
		b.ReportMetric(float64(rows), "rows/week")
		b.ReportMetric(float64(st.Size()), "bytes/week")
		b.ReportMetric(float64(rows)*1000/float64(attempts), "rows/1000attempts")
		b.ReportMetric(float64(st.Size())*1000/float64(attempts), "bytes/1000attempts")
		b.ReportMetric(float64(st.Size())/float64(rows), "bytes/row")
	}
}
