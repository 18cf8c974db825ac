package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/parley-im/parley/internal/auth"
)

// secretFile is the name of the generated HS256 secret in the data dir.
const secretFile = "jwt-secret"

// secret returns the server's HS256 secret: configured, or (embedded store
// only, with no public key) generated once and kept in the data dir with
// mode 0600. Only serve calls it: token never creates a secret.
func (m *Main) secret() ([]byte, error) {
	if m.Config.JWTSecret != "" {
		return []byte(m.Config.JWTSecret), nil
	}
	if m.Config.JWTPublicKey != "" || m.Config.DatabaseURL != "" {
		return nil, nil // Run has checked that a key or secret is set with PostgreSQL
	}
	if s, err := m.readSecret(); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	if err := os.MkdirAll(m.Config.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create the data dir %s (PARLEY_DATA_DIR): %w", m.Config.DataDir, unwrapPath(err))
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	s := hex.EncodeToString(raw[:])
	path := filepath.Join(m.Config.DataDir, secretFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return m.secret() // another process generated it first
	}
	if err != nil {
		return nil, fmt.Errorf("write JWT secret: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(s + "\n"); err != nil {
		return nil, fmt.Errorf("write JWT secret: %w", err)
	}
	return []byte(s), f.Sync()
}

// readSecret reads the generated secret from the data dir. The error wraps
// fs.ErrNotExist when there is none (no file, or an empty one).
func (m *Main) readSecret() ([]byte, error) {
	path := filepath.Join(m.Config.DataDir, secretFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read JWT secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, fmt.Errorf("%s is empty: %w", path, fs.ErrNotExist)
	}
	return []byte(s), nil
}

// unwrapPath drops the *fs.PathError around err, whose path the caller names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Token prints a token for the user in Args[0], signed with
// PARLEY_JWT_SECRET or the secret the server generated in the data dir. It
// never creates a secret: a token signed with a new one would be refused.
func (m *Main) Token() error {
	secret := []byte(m.Config.JWTSecret)
	if len(secret) == 0 {
		var err error
		if secret, err = m.readSecret(); errors.Is(err, fs.ErrNotExist) {
			return m.noSecret()
		} else if err != nil {
			return err
		}
	}
	tok, err := (&auth.Tokens{Secret: secret}).Sign(m.Args[0], m.Config.TokenTTL)
	if err != nil {
		return &ConfigError{fmt.Errorf("token: %w", err)}
	}
	_, err = fmt.Fprintln(m.Stdout, tok)
	return err
}

// noSecret is Token's error without a secret: where it looked and how to
// point it at the server's.
func (m *Main) noSecret() error {
	path := filepath.Join(m.Config.DataDir, secretFile)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if m.Config.DatabaseURL != "" || m.Config.JWTPublicKey != "" {
		return fmt.Errorf("token: no HS256 secret: PARLEY_JWT_SECRET is not set and there is no %s; "+
			"set PARLEY_JWT_SECRET (or -jwt-secret) to the secret the server uses", path)
	}
	return fmt.Errorf("token: no HS256 secret: PARLEY_JWT_SECRET is not set and there is no %s "+
		"(the server generates it on its first start); point token at the server's data dir with "+
		"-data-dir DIR or PARLEY_DATA_DIR, or set PARLEY_JWT_SECRET to the server's secret", path)
}
