// Command parleyd is the Parley server: an MQTT broker for instant messaging
// that stores every message before acknowledging it.
//
//	parleyd [flags]                 serve
//	parleyd migrate [flags]         apply schema migrations and exit
//	parleyd token [flags] USER      print a token for USER (--ttl 24h)
//
// Every flag has an environment variable; run parleyd -h for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	m := NewMain()
	m.Stdout, m.Stderr = os.Stdout, os.Stderr
	cmd := "serve"
	if len(args) > 0 && (args[0] == "migrate" || args[0] == "token" || args[0] == "serve") {
		cmd, args = args[0], args[1:]
	}
	if err := m.ParseFlags(cmd, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "parleyd:", err)
		return 2
	}
	var err error
	switch cmd {
	case "migrate":
		err = m.Migrate(ctx)
	case "token":
		err = m.Token()
	default:
		if err = m.Run(ctx); err == nil {
			<-ctx.Done()
			m.Logger.Info("shutting down")
			err = m.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "parleyd:", err)
		_ = m.Close()
		return 1
	}
	return 0
}
