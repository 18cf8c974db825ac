// Command parley is the command-line client of Parley: it gets tokens, sends
// messages, prints events as they arrive, reads history and conversations,
// manages groups, and chats interactively.
//
//	parley token USER                    print a token (needs the server's secret)
//	parley send --to PEER|g:GROUP TEXT   send a message (--reply-to SEQ, --mention USERS, --file PATH)
//	parley download FILE-ID [-o PATH]    write a file of a message
//	parley edit CONV|PEER SEQ TEXT       replace the text of your message SEQ
//	parley delete CONV|PEER SEQ          delete message SEQ for everyone
//	parley react CONV|PEER SEQ EMOJI     react to message SEQ (--remove takes it back)
//	parley listen [--json]               print events as they arrive
//	parley history CONV|PEER|g:GROUP     print a conversation's messages
//	parley conversations                 list your conversations
//	parley group create|show|add|remove  manage groups
//	parley chat PEER|g:GROUP             chat: type lines (and /reply, /edit, /delete,
//	                                     /react), see the conversation live
//
// Configuration comes from flags and the environment: PARLEY_URL (MQTT
// broker, default tcp://localhost:1883), PARLEY_HTTP (REST API, default
// http://localhost:8080), PARLEY_TOKEN and PARLEY_DEVICE (default "cli").
// Exit codes: 0 success, 1 runtime error, 2 usage error. See docs/cli.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
