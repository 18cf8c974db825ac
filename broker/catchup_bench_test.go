package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/historytest"
	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/internal/testkit"
)

// BenchmarkCatchUp measures how long a known device takes to receive 10,000
// messages it missed over 100 conversations, from connect to the last one
// (issue target: under 2 s). Run with:
//
//	go test -run '^$' -bench CatchUp -benchtime 3x ./broker/
func BenchmarkCatchUp(b *testing.B) {
	for _, store := range []string{"sqlite", "postgres"} {
		b.Run(store, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				var s history.Store
				if store == "sqlite" {
					s = testkit.OpenSQLite(b)
				} else {
					s = testkit.OpenPostgres(b, pgtest.DB(b))
				}
				e := setup(b, s, func(o *brokerOptions) { o.CatchupLimit = 1000 })
				bob := e.dial("bob", "bob", dialOpts{})
				bob.close()
				batch := make([]history.NewMessage, 0, 1000)
				for c := 0; c < 100; c++ {
					for m := 0; m < 100; m++ {
						batch = append(batch, historytest.NewMsg(history.DirectConvID("bob", fmt.Sprintf("u%03d", c)), fmt.Sprintf("u%03d", c), "", `{"text":"you missed this"}`))
						if len(batch) == cap(batch) {
							if _, err := s.AppendBatch(context.Background(), batch); err != nil {
								b.Fatal(err)
							}
							batch = batch[:0]
						}
					}
				}
				b.StartTimer()
				start := time.Now()
				bob = e.dial("bob", "bob", dialOpts{v5: true})
				col := newCollector()
				col.drain(b, bob, 10000)
				b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/catchup")
				bob.close()
			}
		})
	}
}
