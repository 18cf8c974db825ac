package broker_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"testing"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/s3test"
	"github.com/parley-im/parley/internal/testkit"
)

// BenchmarkUpload measures POST /v1/uploads over loopback HTTP, one upload
// at a time, on the SQLite store with each blob store (docs/benchmarks.md):
//
//	go test -run '^$' -bench BenchmarkUpload -benchtime 20x ./broker/
func BenchmarkUpload(b *testing.B) {
	stores := []struct {
		name string
		opt  func(b *testing.B) func(*broker.Options)
	}{
		{"dir", func(b *testing.B) func(*broker.Options) {
			dir := b.TempDir()
			return func(o *broker.Options) { o.BlobDir = dir }
		}},
		{"s3", func(b *testing.B) func(*broker.Options) {
			endpoint := s3test.Endpoint(b)
			b.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
			b.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
			s3test.Bucket(b, endpoint, "bench")
			return func(o *broker.Options) { o.S3Endpoint, o.S3Bucket = endpoint, "bench" }
		}},
	}
	for _, st := range stores {
		for _, size := range []int{1 << 20, 20 << 20} {
			b.Run(fmt.Sprintf("%s/%dMiB", st.name, size>>20), func(b *testing.B) {
				e := setup(b, testkit.OpenSQLite(b), st.opt(b), func(o *broker.Options) { o.UploadTTL = 1 })
				data := make([]byte, size)
				rand.Read(data)
				tok := testkit.Token(b, "alice")
				b.SetBytes(int64(size))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					req, _ := http.NewRequest("POST", e.http+"/v1/uploads", bytes.NewReader(data))
					req.Header.Set("Authorization", "Bearer "+tok)
					req.Header.Set("Content-Type", "application/octet-stream")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != 201 {
						b.Fatalf("upload: %d", resp.StatusCode)
					}
				}
				b.StopTimer()
				// Leave no files behind (UploadTTL is 1ns).
				e.b.CollectFiles(b.Context())
			})
		}
	}
}
