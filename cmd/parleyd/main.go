// Command parleyd is the Parley server: an MQTT broker for instant messaging
// that stores every message before acknowledging it.
//
//	parleyd [serve] [flags]         serve (the default)
//	parleyd migrate [flags]         apply schema migrations and exit
//	parleyd token [flags] USER      print a token for USER (--ttl 24h)
//	parleyd version                 print the version (also --version)
//
// Every flag has an environment variable; run parleyd -h for the list. Exit
// status: 0 success, 1 runtime error, 2 invalid flags, environment or
// configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/parley-im/parley/internal/version"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitConfig  = 2
)

// commands are parleyd's subcommands, in the order of its usage.
var commands = []struct{ name, args, help string }{
	{"serve", "[flags]", "run the server (the default when no command is given)"},
	{"migrate", "[flags]", "apply pending schema migrations to the store and exit"},
	{"token", "[flags] USER", "print a token for USER, signed with the server's HS256 secret"},
	{"user", "delete [flags] USER", "delete USER's account: messages erased, data removed, tokens revoked"},
	{"version", "", "print the version and VCS revision (also parleyd --version)"},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs parleyd with args (without the program name) and returns the exit
// status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		switch a := args[0]; a {
		case "serve", "migrate", "token", "user":
			cmd, args = a, args[1:]
		case "version", "-version", "--version":
			if len(args) > 1 {
				fmt.Fprintf(stderr, "parleyd version: unexpected arguments %q\n", args[1:])
				return exitConfig
			}
			fmt.Fprintln(stdout, "parleyd", version.Read())
			return exitOK
		case "help":
			usage(stdout)
			return exitOK
		default:
			if !strings.HasPrefix(a, "-") {
				fmt.Fprintf(stderr, "parleyd: unknown command %q; run parleyd -h for the commands\n", a)
				return exitConfig
			}
		}
	}
	m := NewMain()
	m.Stdout, m.Stderr = stdout, stderr
	if err := m.ParseFlags(cmd, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "parleyd: %v\n", err)
		return exitConfig
	}
	var err error
	switch cmd {
	case "migrate":
		err = m.Migrate(ctx)
	case "token":
		err = m.Token()
	case "user":
		err = m.DeleteUser(ctx, m.Args[1])
	default:
		if err = m.Run(ctx); err == nil {
			<-ctx.Done()
			m.Logger.Info("shutting down")
			err = m.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "parleyd: %v\n", err)
		_ = m.Close()
		var ce *ConfigError
		if errors.As(err, &ce) {
			return exitConfig
		}
		return exitRuntime
	}
	return exitOK
}

// usage prints the commands; each command's -h adds its flags.
func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage:")
	for _, c := range commands {
		name := c.name
		if name == "serve" {
			name = "[serve]"
		}
		fmt.Fprintf(w, "  %-33s %s\n", strings.TrimSpace("parleyd "+name+" "+c.args), c.help)
	}
	fmt.Fprintln(w, `
Run 'parleyd COMMAND -h' for the flags of a command. Every flag has an
environment variable (shown as $PARLEY_...); a flag wins over it.
Exit status: 0 success, 1 runtime error, 2 invalid flags, environment or
configuration.`)
}

// ConfigError is an error in the configuration itself (a value that cannot
// work whatever the environment): parleyd exits 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// configErrorf returns a *ConfigError formatted as fmt.Errorf does.
func configErrorf(format string, args ...any) error {
	return &ConfigError{fmt.Errorf(format, args...)}
}
