// Package s3test starts a real S3-compatible server for tests: SeaweedFS's
// `weed mini`, installed by scripts/install-weed.sh (make test and .ci/run
// run it). Without the binary a test is skipped locally and fails when CI
// is set, so that CI never passes without the S3 tests.
package s3test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/internal/blob"
	"github.com/parley-im/parley/internal/testport"
)

// Credentials of the test server (also passed as the AWS variables).
const (
	AccessKey = "parleytest"
	SecretKey = "parleytestsecret"
)

// Binary returns the path of the weed binary: $PARLEY_WEED, bin/weed of the
// repository, or weed on PATH; "" when there is none.
func Binary() string {
	if p := os.Getenv("PARLEY_WEED"); p != "" {
		return p
	}
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if p := filepath.Join(d, "bin", "weed"); fileExists(p) {
				return p
			}
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	p, _ := exec.LookPath("weed")
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

var (
	once     sync.Once
	endpoint string
	startErr error
	cmd      *exec.Cmd
	dataDir  string
)

// Endpoint returns the URL of a running S3 server shared by the tests of the
// package (started on first use, stopped by Stop in TestMain), skipping tb
// (or failing it under CI) when weed is not installed.
func Endpoint(tb testing.TB) string {
	tb.Helper()
	bin := Binary()
	if bin == "" {
		msg := "seaweedfs: weed is not installed: run scripts/install-weed.sh (make test does)"
		if os.Getenv("CI") != "" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	once.Do(func() { endpoint, startErr = start(bin) })
	if startErr != nil {
		tb.Fatalf("seaweedfs: %v", startErr)
	}
	return endpoint
}

// Stop stops the server, if one was started, and removes its data.
func Stop() {
	if cmd != nil && cmd.Process != nil {
		cmd.Process.Kill()
		cmd.Wait()
		cmd = nil
	}
	if dataDir != "" {
		os.RemoveAll(dataDir)
		dataDir = ""
	}
}

func start(bin string) (string, error) {
	dir, err := os.MkdirTemp("", "parley-weed-*")
	if err != nil {
		return "", err
	}
	dataDir = dir
	var ports [4]int
	for i := range ports {
		if ports[i], err = testport.Free(); err != nil {
			return "", err
		}
	}
	cfg := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`{"identities":[{"name":"parley","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`, AccessKey, SecretKey)), 0o600); err != nil {
		return "", err
	}
	cmd = exec.Command(bin, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir="+dir,
		fmt.Sprintf("-master.port=%d", ports[0]), fmt.Sprintf("-volume.port=%d", ports[1]), fmt.Sprintf("-filer.port=%d", ports[2]),
		"-s3", fmt.Sprintf("-s3.port=%d", ports[3]), "-s3.config="+cfg, "-volume.max=0", "-master.volumeSizeLimitMB=64")
	log, _ := os.Create(filepath.Join(dir, "weed.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return "", err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", ports[3])
	s3, err := blob.NewS3(blob.S3Config{Endpoint: url, Bucket: "parley-probe", AccessKey: AccessKey, SecretKey: SecretKey})
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = s3.CreateBucket(ctx)
		cancel()
		if err == nil {
			return url, nil
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "weed.log"))
			Stop()
			return "", fmt.Errorf("weed did not serve S3 within 90s: %v\n%s", err, tail(b))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func tail(b []byte) []byte {
	if len(b) > 4000 {
		return b[len(b)-4000:]
	}
	return b
}

// Bucket creates a new bucket named name on the server at endpoint.
func Bucket(tb testing.TB, endpoint, name string) {
	tb.Helper()
	s3, err := blob.NewS3(blob.S3Config{Endpoint: endpoint, Bucket: name, AccessKey: AccessKey, SecretKey: SecretKey})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s3.CreateBucket(context.Background()); err != nil {
		tb.Fatal(err)
	}
}
