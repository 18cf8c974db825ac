package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/parley-im/parley/clients/parley"
)

const groupUsage = `group create [--id ID] NAME [MEMBER...]   create a group (you are its owner)
       parley group show GROUP                         print a group and its members
       parley group add [--role admin] GROUP USER      add a member, or change a member's role
       parley group remove GROUP USER                  remove a member (yourself: leave)`

// group manages groups over REST.
func (c *cli) group(ctx context.Context, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" && args[0] != "-help" {
		return usagef("want a subcommand: create, show, add or remove")
	}
	sub, args := args[0], args[1:]
	fs, cf := commandFlags("group "+sub, false)
	var id, role *string
	switch sub {
	case "create":
		id = fs.String("id", "", "group id (1 to 64 of A-Z a-z 0-9 . _ -); default generated")
	case "add":
		role = fs.String("role", "member", "member or admin")
	case "show", "remove":
	case "-h", "--help", "-help":
		fmt.Fprintln(c.stdout, "Usage: parley "+groupUsage)
		return flag.ErrHelp
	default:
		return usagef("unknown subcommand %q: want create, show, add or remove", sub)
	}
	pos, err := c.parseFlags(fs, groupUsage, args)
	if err != nil {
		return err
	}
	want := map[string]int{"show": 1, "add": 2, "remove": 2}
	switch n, fixed := want[sub]; {
	case sub == "create" && len(pos) == 0:
		return usagef("group create: want a NAME")
	case fixed && len(pos) != n:
		return usagef("group %s: want %d arguments, got %d", sub, n, len(pos))
	}
	api, rctx, done, err := cf.rest(ctx, c)
	if err != nil {
		return err
	}
	defer done()
	group := strings.TrimPrefix(pos[0], "g:")
	switch sub {
	case "create":
		g, err := api.CreateGroup(rctx, parley.NewGroup{ID: *id, Name: pos[0], Members: pos[1:]})
		if err != nil {
			return fmt.Errorf("create group: %w", cf.restErr(err))
		}
		return c.printGroup(cf.json, "created ", g)
	case "show":
		g, err := api.Group(rctx, group)
		if err != nil {
			return fmt.Errorf("group %s: %w", group, cf.restErr(err))
		}
		return c.printGroup(cf.json, "", g)
	case "add":
		ch, err := api.AddMember(rctx, group, pos[1], *role)
		if err != nil {
			return fmt.Errorf("add %s to %s: %w", pos[1], group, cf.restErr(err))
		}
		return c.printChange(cf.json, ch)
	default:
		ch, err := api.RemoveMember(rctx, group, pos[1])
		if err != nil {
			return fmt.Errorf("remove %s from %s: %w", pos[1], group, cf.restErr(err))
		}
		return c.printChange(cf.json, ch)
	}
}

func (c *cli) printGroup(asJSON bool, prefix string, g parley.GroupInfo) error {
	if asJSON {
		return writeJSON(c.stdout, map[string]any{"id": g.ID, "conv": g.Conv, "name": g.Name, "created_by": g.CreatedBy,
			"created_at": g.CreatedAt.UTC().Format(tsLayout), "members": g.Members})
	}
	_, err := fmt.Fprintf(c.stdout, "%s%s %q: %s\n", prefix, g.Conv, g.Name, members(g.Members))
	return err
}

func (c *cli) printChange(asJSON bool, ch parley.MemberChange) error {
	if asJSON {
		return writeJSON(c.stdout, map[string]any{"members": ch.Members, "message": toMessageJSON("", ch.Message)})
	}
	_, err := fmt.Fprintf(c.stdout, "#%d %s\nmembers: %s\n", ch.Message.Seq, messageLine(ch.Message, false), members(ch.Members))
	return err
}

func members(ms []parley.Member) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.User
		if m.Role != "member" {
			parts[i] += " (" + m.Role + ")"
		}
	}
	return strings.Join(parts, ", ")
}
