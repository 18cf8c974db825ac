package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/parley-im/parley/internal/blob"
	"github.com/parley-im/parley/internal/s3test"
)

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.Stop()
	os.Exit(code)
}

// testStore is the conformance suite of blob.Store.
func testStore(t *testing.T, s blob.Store) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	t.Run("PutOpenSeek", func(t *testing.T) {
		if err := s.Put(ctx, "fa0001", bytes.NewReader(data), int64(len(data)), "text/plain"); err != nil {
			t.Fatal(err)
		}
		r, err := s.Open(ctx, "fa0001")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Seek(5000, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, data[5000:]) {
			t.Fatalf("read after seek: %d bytes, %v", len(got), err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		if _, err := s.Open(ctx, "fa0002"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Open missing = %v", err)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		if err := s.Delete(ctx, "fa0001"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(ctx, "fa0001"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Open deleted = %v", err)
		}
		if err := s.Delete(ctx, "fa0001"); err != nil {
			t.Fatalf("Delete missing = %v", err)
		}
	})
}

func TestDir(t *testing.T) {
	d := &blob.Dir{Path: t.TempDir()}
	testStore(t, d)
	if err := d.Put(context.Background(), "fa0003", bytes.NewReader([]byte("short")), 6, ""); err == nil {
		t.Fatal("Put of fewer bytes than size succeeded")
	}
	if _, err := d.Open(context.Background(), "fa0003"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("a failed Put left a blob: %v", err)
	}
	if err := d.Put(context.Background(), "../x", bytes.NewReader(nil), 0, ""); err == nil {
		t.Fatal("Put with a path in the key succeeded")
	}
}

func TestS3(t *testing.T) {
	endpoint := s3test.Endpoint(t)
	s3test.Bucket(t, endpoint, "conformance")
	s, err := blob.NewS3(blob.S3Config{Endpoint: endpoint, Bucket: "conformance", AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	testStore(t, s)
}
