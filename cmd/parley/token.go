package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/parley-im/parley/internal/auth"
)

// secretFile is the name of the HS256 secret that parleyd generates in its
// data dir.
const secretFile = "jwt-secret"

// token prints an HS256 token for a user, signed with PARLEY_JWT_SECRET or
// the secret parleyd generated in its data dir.
func (c *cli) token(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	dataDir := fs.String("data-dir", envOr("PARLEY_DATA_DIR", "./data"), "parleyd's data dir, which holds the generated secret ($PARLEY_DATA_DIR)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	pos, err := c.parseFlags(fs, "token [--data-dir DIR] [--ttl 24h] USER", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one USER, got %d arguments", len(pos))
	}
	if *ttl <= 0 {
		return usagef("--ttl must be positive")
	}
	secret, err := readSecret(*dataDir)
	if err != nil {
		return err
	}
	tok, err := (&auth.Tokens{Secret: secret}).Sign(pos[0], *ttl)
	if err != nil {
		return usagef("%v", err)
	}
	_, err = fmt.Fprintln(c.stdout, tok)
	return err
}

// readSecret returns PARLEY_JWT_SECRET when set, else the secret in
// dataDir/jwt-secret.
func readSecret(dataDir string) ([]byte, error) {
	if s := os.Getenv("PARLEY_JWT_SECRET"); s != "" {
		return []byte(s), nil
	}
	path := filepath.Join(dataDir, secretFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no secret: set PARLEY_JWT_SECRET, or run where parleyd keeps its data (--data-dir, now %s; %s does not exist)", dataDir, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, fmt.Errorf("no secret: %s is empty", path)
	}
	return []byte(s), nil
}
