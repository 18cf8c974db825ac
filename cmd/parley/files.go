package main

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/parley-im/parley/clients/parley"
)

// fileList is the repeatable --file flag of send.
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(s string) error { *f = append(*f, s); return nil }

// uploadFiles uploads each file of paths and returns their references,
// named after the files' base names.
func (cf *config) uploadFiles(ctx context.Context, c *cli, paths []string) ([]parley.AttachmentRef, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	api, rctx, done, err := cf.rest(ctx, c)
	if err != nil {
		return nil, err
	}
	defer done()
	var refs []parley.AttachmentRef
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		up, err := uploadOne(rctx, api, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("upload %s: %w", p, cf.restErr(err))
		}
		refs = append(refs, parley.AttachmentRef{ID: up.ID, Name: filepath.Base(p)})
	}
	return refs, nil
}

// uploadOne uploads f with the media type of its extension, or else the
// one its first bytes suggest.
func uploadOne(ctx context.Context, api *parley.API, f *os.File) (parley.Upload, error) {
	st, err := f.Stat()
	if err != nil {
		return parley.Upload{}, err
	}
	ct := mime.TypeByExtension(strings.ToLower(filepath.Ext(f.Name())))
	if ct == "" {
		head := make([]byte, 512)
		n, _ := io.ReadFull(f, head)
		ct = http.DetectContentType(head[:n])
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return parley.Upload{}, err
		}
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil && strings.HasPrefix(mt, "image/") {
		ct = mt // parameters such as charset mean nothing to images
	}
	return api.Upload(ctx, ct, f, st.Size())
}

// download writes a file of a message (an attachment's id or thumbnail) to
// --output, or to standard output.
func (c *cli) download(ctx context.Context, args []string) error {
	fs, cf := commandFlags("download", false)
	out := fs.String("output", "", "write the file here instead of standard output")
	fs.StringVar(out, "o", "", "short for --output")
	id, err := c.parseOneArg(fs, "download [flags] FILE-ID", args, "file id (an attachment's id or thumbnail)")
	if err != nil {
		return err
	}
	api, rctx, done, err := cf.rest(ctx, c)
	if err != nil {
		return err
	}
	defer done()
	rc, err := api.Download(rctx, id)
	if err != nil {
		return fmt.Errorf("download %s: %w", id, cf.restErr(err))
	}
	defer rc.Close()
	var w io.Writer = c.stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("download %s: %w", id, err)
	}
	if *out != "" {
		return closeFile(w.(*os.File))
	}
	return nil
}

func closeFile(f *os.File) error {
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}
