package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/parley-im/parley/clients/parley"
)

// config is how to reach the server and as whom, from flags and PARLEY_*
// variables (a flag wins over its variable).
type config struct {
	url     string
	http    string
	token   string
	device  string
	json    bool
	verbose bool
	timeout time.Duration

	// Set by dialFlags, for the commands that connect over MQTT.
	connectTimeout time.Duration
	wait           bool
}

// envOr returns the value of the environment variable env when it is set
// (even to ""), def otherwise.
func envOr(env, def string) string {
	if v, ok := os.LookupEnv(env); ok {
		return v
	}
	return def
}

// flags registers the connection and output flags on fs.
func (cf *config) flags(fs *flag.FlagSet) {
	fs.StringVar(&cf.url, "url", envOr("PARLEY_URL", parley.DefaultBroker), "MQTT broker URL: tcp://HOST:1883 or ws://HOST:8083/mqtt ($PARLEY_URL)")
	fs.StringVar(&cf.http, "http", envOr("PARLEY_HTTP", parley.DefaultHTTP), "REST API base URL ($PARLEY_HTTP)")
	fs.StringVar(&cf.token, "token", os.Getenv("PARLEY_TOKEN"), "your token, from 'parley token USER' or 'parleyd token USER' ($PARLEY_TOKEN)")
	fs.StringVar(&cf.device, "device", envOr("PARLEY_DEVICE", "cli"), "device name: the MQTT client id is USER/DEVICE ($PARLEY_DEVICE)")
	fs.BoolVar(&cf.json, "json", false, "print JSON, one object per line")
	fs.BoolVar(&cf.verbose, "v", false, "log connection details to stderr")
	fs.DurationVar(&cf.timeout, "timeout", 30*time.Second, "give up waiting for the server (with --wait, also connecting) after this long")
}

// commandFlags returns the flag set of command name with the connection and
// output flags on it, and with dial also the flags of the commands that
// connect over MQTT.
func commandFlags(name string, dial bool) (*flag.FlagSet, *config) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cf := &config{}
	cf.flags(fs)
	if dial {
		cf.dialFlags(fs)
	}
	return fs, cf
}

// defaultConnectTimeout is the default of --connect-timeout.
const defaultConnectTimeout = 5 * time.Second

// dialFlags registers the flags of the commands that connect over MQTT.
func (cf *config) dialFlags(fs *flag.FlagSet) {
	fs.DurationVar(&cf.connectTimeout, "connect-timeout", defaultConnectTimeout, "give up a connection attempt after this long")
	fs.BoolVar(&cf.wait, "wait", false, "when the server cannot be reached, keep trying until --timeout instead of failing at once")
}

// check reports missing configuration as a usage error.
func (cf *config) check() error {
	if cf.token == "" {
		return usagef("no token: set PARLEY_TOKEN or --token (get one with 'parley token USER' or './bin/parleyd token USER')")
	}
	return nil
}

// logger returns the SDK's logger: its connection diagnostics go to
// standard error with -v, nowhere otherwise (the commands say what matters
// in their own words).
func (cf *config) logger(c *cli) *slog.Logger {
	if !cf.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// options returns the client options for device.
func (cf *config) options(c *cli, device string) parley.Options {
	return parley.Options{Broker: cf.url, HTTP: cf.http, Token: cf.token, Device: device, Logger: cf.logger(c),
		ConnectTimeout: cf.connectTimeout, FailFast: !cf.wait}
}

// rest returns the REST client and a context that ends with the timeout;
// done releases both.
func (cf *config) rest(ctx context.Context, c *cli) (api *parley.API, rctx context.Context, done func(), err error) {
	if err := cf.check(); err != nil {
		return nil, nil, nil, err
	}
	api, err = parley.NewAPI(ctx, cf.options(c, cf.device))
	if err != nil {
		return nil, nil, nil, usagef("%v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, cf.timeout)
	return api, rctx, func() { cancel(); api.CloseIdleConnections() }, nil
}

// dial connects with o. Without --wait it makes one attempt, bounded by
// --connect-timeout; with --wait it keeps trying until --timeout.
func (cf *config) dial(ctx context.Context, c *cli, o parley.Options) (*parley.Client, error) {
	if err := cf.check(); err != nil {
		return nil, err
	}
	if _, err := parley.TokenSubject(cf.token); err != nil {
		return nil, usagef("%v", err)
	}
	if cf.connectTimeout <= 0 {
		return nil, usagef("--connect-timeout must be positive, got %v", cf.connectTimeout)
	}
	limit := cf.timeout
	if !cf.wait {
		limit = cf.connectTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cl, err := parley.Dial(dctx, o)
	switch {
	case err == nil:
		return cl, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case cf.wait && dctx.Err() != nil:
		return nil, fmt.Errorf("cannot connect to %s: still no connection after --timeout %v", cf.url, limit)
	case dctx.Err() != nil:
		return nil, fmt.Errorf("cannot connect to %s: no answer within --connect-timeout %v; is parleyd running? (--wait keeps trying)", cf.url, limit)
	case isNetwork(err):
		return nil, fmt.Errorf("cannot connect to %s: %s; is parleyd running? (--wait keeps trying)", cf.url, unreachable(err))
	}
	return nil, fmt.Errorf("connect to %s: %w", cf.url, err)
}

// restErr shortens the error of a REST call that could not reach the
// server to one line that says so.
func (cf *config) restErr(err error) error {
	if isNetwork(err) {
		return fmt.Errorf("cannot reach %s: %s; is parleyd running?", cf.http, unreachable(err))
	}
	return err
}

// isNetwork reports whether err is a failure to reach the server, as
// opposed to a refusal by it.
func isNetwork(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) || errors.As(err, &dns)
}

// unreachable says in a few words why the server could not be reached:
// "connection refused", "no such host", ...
func unreachable(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err.Error()
	}
	return err.Error()
}
