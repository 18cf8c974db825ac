package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Auth is how a node authenticates to NATS and secures the connection. The
// zero value uses neither credentials (beyond a user and password in the URL)
// nor TLS (unless the URL or the server asks for it).
type Auth struct {
	// CredsFile is a NATS credentials file (.creds): a user JWT and its NKey
	// seed, as nsc writes them. It is read again at every reconnect, so it may
	// be rotated in place.
	CredsFile string
	// NKeyFile is a file holding the NKey seed of a user (SU...) that the
	// server lists in its nkey users. At most one of CredsFile and NKeyFile.
	NKeyFile string
	// TLS, when set, makes the connection use TLS with this configuration:
	// RootCAs to verify the server, Certificates for a client certificate.
	// The server name defaults to the host of the URL.
	TLS *tls.Config
}

// Options checks a, reading its files, and returns the NATS connection
// options it stands for. Errors name the file at fault.
func (a Auth) Options() ([]nats.Option, error) {
	var opts []nats.Option
	if a.CredsFile != "" && a.NKeyFile != "" {
		return nil, errors.New("natsbus: set a credentials file or an NKey seed file, not both")
	}
	if a.CredsFile != "" {
		if err := checkCreds(a.CredsFile); err != nil {
			return nil, fmt.Errorf("natsbus: credentials file %s: %w", a.CredsFile, err)
		}
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	if a.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(a.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("natsbus: NKey seed file %s: %w", a.NKeyFile, err)
		}
		opts = append(opts, opt)
	}
	if a.TLS != nil {
		opts = append(opts, nats.Secure(a.TLS))
	}
	return opts, nil
}

// checkCreds reads a credentials file and checks that it holds a user JWT
// and a user NKey seed.
func checkCreds(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	defer clear(b)
	tok, err := nkeys.ParseDecoratedJWT(b)
	if err != nil {
		return err
	}
	if _, err := jwt.DecodeUserClaims(tok); err != nil {
		return fmt.Errorf("no valid user JWT: %w", err)
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return fmt.Errorf("no user NKey seed: %w", err)
	}
	kp.Wipe()
	return nil
}

// redact hides the passwords of the comma-separated NATS URLs in s, for
// logs and errors.
func redact(s string) string {
	urls := strings.Split(s, ",")
	for i, u := range urls {
		if p, err := url.Parse(strings.TrimSpace(u)); err == nil && p.User != nil {
			if _, has := p.User.Password(); has {
				urls[i] = p.Redacted()
			} else {
				p.User = url.User("xxxxx") // a bare user is a token
				urls[i] = p.String()
			}
		}
	}
	return strings.Join(urls, ",")
}
