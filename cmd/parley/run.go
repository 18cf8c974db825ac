package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// cli is one run of the program: its streams and the command being run.
type cli struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// command is a subcommand: its name, the arguments of its usage line, what
// it does, and its body, which parses its own flags from args.
type command struct {
	name string
	args string
	help string
	run  func(c *cli, ctx context.Context, args []string) error
}

var commands = []command{
	{"token", "USER", "print a token for USER, signed with the server's secret", (*cli).token},
	{"send", "--to PEER|g:GROUP TEXT...", "send a message (--reply-to SEQ, --mention USERS, --file PATH) and print it as stored", (*cli).send},
	{"download", "FILE-ID", "write a file of a message to standard output (-o PATH: to a file)", (*cli).download},
	{"edit", "CONV|PEER|g:GROUP SEQ TEXT...", "replace the text of your message SEQ", (*cli).edit},
	{"delete", "CONV|PEER|g:GROUP SEQ", "delete message SEQ for everyone (yours, or any as a group admin)", (*cli).deleteCmd},
	{"react", "CONV|PEER|g:GROUP SEQ EMOJI", "react to message SEQ (--remove takes the reaction back)", (*cli).react},
	{"listen", "", "print events as they arrive (Ctrl-C stops)", (*cli).listen},
	{"history", "CONV|PEER|g:GROUP", "print a conversation's messages", (*cli).history},
	{"conversations", "", "list your conversations, most recent first", (*cli).conversations},
	{"group", "create|show|add|remove ...", "manage groups", (*cli).group},
	{"chat", "PEER|g:GROUP", "chat: send the lines you type (/reply, /edit, /delete, /react), see the conversation live", (*cli).chat},
	{"version", "", "print the version and VCS revision (also --version)", (*cli).version},
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// run runs the program with args (without the program name) and returns
// the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		c.usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		c.usage(stdout)
		return exitOK
	case "-version", "--version":
		name = "version"
	}
	for _, cmd := range commands {
		if cmd.name != name {
			continue
		}
		err := cmd.run(c, ctx, args[1:])
		var ue *usageError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "parley %s: %v\nRun 'parley %s -h' for usage.\n", name, err, name)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "parley %s: %v\n", name, err)
			return exitRuntime
		}
	}
	fmt.Fprintf(stderr, "parley: unknown command %q\n\n", name)
	c.usage(stderr)
	return exitUsage
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: parley COMMAND [flags] [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-40s %s\n", strings.TrimSpace("parley "+cmd.name+" "+cmd.args), cmd.help)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Environment: PARLEY_URL (MQTT broker, default tcp://localhost:1883),
PARLEY_HTTP (REST API, default http://localhost:8080), PARLEY_TOKEN (your token),
PARLEY_DEVICE (default "cli"). Run 'parley COMMAND -h' for a command's flags.`)
}

// parseOneArg is parseFlags for a command that takes exactly one
// positional argument, described as what in the usage error.
func (c *cli) parseOneArg(fs *flag.FlagSet, synopsis string, args []string, what string) (string, error) {
	pos, err := c.parseFlags(fs, synopsis, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usagef("want one %s, got %d arguments", what, len(pos))
	}
	return pos[0], nil
}

// parseFlags parses args with fs, allowing flags after positional
// arguments ("send hi --to bob"); everything after "--" is positional. It
// returns the positional arguments. -h prints the usage to stdout and
// returns flag.ErrHelp.
func (c *cli) parseFlags(fs *flag.FlagSet, synopsis string, args []string) ([]string, error) {
	// synopsis is the usage line after "parley ".
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(c.stdout, "Usage: parley %s\n\nFlags:\n", synopsis)
			fs.SetOutput(c.stdout)
			fs.PrintDefaults()
			return nil, flag.ErrHelp
		}
		if err != nil {
			return nil, usagef("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
