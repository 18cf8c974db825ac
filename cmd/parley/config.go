package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
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
	fs.DurationVar(&cf.timeout, "timeout", 30*time.Second, "give up connecting or waiting for the server after this long")
}

// check reports missing configuration as a usage error.
func (cf *config) check() error {
	if cf.token == "" {
		return usagef("no token: set PARLEY_TOKEN or --token (get one with 'parley token USER' or './bin/parleyd token USER')")
	}
	return nil
}

func (cf *config) logger(c *cli) *slog.Logger {
	level := slog.LevelWarn
	if cf.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
}

// options returns the client options for device.
func (cf *config) options(c *cli, device string) parley.Options {
	return parley.Options{Broker: cf.url, HTTP: cf.http, Token: cf.token, Device: device, Logger: cf.logger(c)}
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

// dial connects as device, giving up after the timeout.
func (cf *config) dial(ctx context.Context, c *cli, o parley.Options) (*parley.Client, error) {
	if err := cf.check(); err != nil {
		return nil, err
	}
	if _, err := parley.TokenSubject(cf.token); err != nil {
		return nil, usagef("%v", err)
	}
	dctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	cl, err := parley.Dial(dctx, o)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cf.url, err)
	}
	return cl, nil
}
