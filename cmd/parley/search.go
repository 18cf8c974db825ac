package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/parley-im/parley/clients/parley"
)

// maxSearchLimit is the most results one search page may have: the
// server's limit.
const maxSearchLimit = 100

// search prints the messages matching the words, newest first: one line
// per result, CONV #SEQ FROM: snippet, the matches between [ and ].
func (c *cli) search(ctx context.Context, args []string) error {
	fs, cf := commandFlags("search", false)
	conv := fs.String("conv", "", "only this conversation (dm:A:B, g:GROUP or a user id)")
	from := fs.String("from", "", "only messages from this user")
	limit := fs.Int("limit", 20, fmt.Sprintf("results per page, 1 to %d", maxSearchLimit))
	cursor := fs.String("cursor", "", "the next page: the cursor printed after a full page")
	pos, err := c.parseFlags(fs, "search [flags] WORDS...", args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("want the words to search for")
	}
	if err := checkRange("--limit", *limit, 1, maxSearchLimit); err != nil {
		return err
	}
	api, rctx, done, err := cf.rest(ctx, c)
	if err != nil {
		return err
	}
	defer done()
	o := parley.SearchOptions{From: *from, Limit: *limit, Cursor: *cursor}
	if *conv != "" {
		o.Conv = convArg(*conv, api.User())
	}
	page, err := api.Search(rctx, strings.Join(pos, " "), o)
	if err != nil {
		return fmt.Errorf("search: %w", cf.restErr(err))
	}
	for _, r := range page.Results {
		if cf.json {
			if err := writeJSON(c.stdout, r); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintf(c.stdout, "%s #%d %s: %s\n", r.Conv, r.Seq, r.Message.From, marked(r.Snippet, r.Highlights)); err != nil {
			return err
		}
	}
	if page.Next != "" && !cf.json {
		fmt.Fprintf(c.stderr, "more: parley search --cursor %s %s\n", page.Next, strings.Join(pos, " "))
	}
	return nil
}

// marked returns snippet on one line with its highlights between [ and ].
func marked(snippet string, hs []parley.Highlight) string {
	var b strings.Builder
	at := 0
	for _, h := range hs {
		if h.Start < at || h.End > len(snippet) || h.Start > h.End {
			continue
		}
		b.WriteString(snippet[at:h.Start])
		b.WriteString("[" + snippet[h.Start:h.End] + "]")
		at = h.End
	}
	b.WriteString(snippet[at:])
	return strings.Join(strings.Fields(b.String()), " ")
}
