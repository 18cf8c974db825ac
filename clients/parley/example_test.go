package parley_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/parley-im/parley/clients/parley"
)

// The examples run against a server that TestMain starts in-process:
// exampleBroker and exampleHTTP are its URLs, and exampleToken(user) returns
// a token as `parleyd token USER` prints it.

// Two users exchange a direct message.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	alice, err := parley.Dial(ctx, parley.Options{
		Broker: exampleBroker, HTTP: exampleHTTP, Token: exampleToken("alice"), Device: "phone",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := parley.Dial(ctx, parley.Options{
		Broker: exampleBroker, HTTP: exampleHTTP, Token: exampleToken("bob"), Device: "laptop",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	m, err := alice.Send(ctx, parley.User("bob"), "hi bob")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("alice sent #%d in %s\n", m.Seq, m.Conv)

	for ev := range bob.Events() {
		if ev.Kind == parley.EventMessage {
			fmt.Printf("bob got #%d from %s: %s\n", ev.Message.Seq, ev.Message.From, ev.Message.Text())
			break
		}
	}
	// Output:
	// alice sent #1 in dm:alice:bob
	// bob got #1 from alice: hi bob
}

// A handler receives the events of a client in order, one at a time.
func ExampleOptions_handler() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	got := make(chan parley.Message, 1)
	carol, err := parley.Dial(ctx, parley.Options{
		Broker: exampleBroker, HTTP: exampleHTTP, Token: exampleToken("carol"), Device: "desk",
		Handler: func(ev parley.Event) {
			if ev.Kind == parley.EventMessage && ev.Message.From != "carol" {
				got <- ev.Message
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer carol.Close()
	dave := exampleDial(ctx, "dave")
	defer dave.Close()

	if _, err := dave.Send(ctx, parley.User("carol"), map[string]any{"lat": 48.85, "lon": 2.35}, parley.WithType("location")); err != nil {
		log.Fatal(err)
	}
	m := <-got
	var loc struct{ Lat, Lon float64 }
	if err := m.Decode(&loc); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s sent a %s: %.2f, %.2f\n", m.From, m.Type, loc.Lat, loc.Lon)
	// Output:
	// dave sent a location: 48.85, 2.35
}

// Groups are made over REST; their messages go over MQTT. A user who is not
// a member gets ErrNotMember.
func ExampleClient_Send_group() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	erin := exampleDial(ctx, "erin")
	defer erin.Close()
	mallory := exampleDial(ctx, "mallory")
	defer mallory.Close()

	g, err := erin.CreateGroup(ctx, parley.NewGroup{ID: "book-club", Name: "Book club", Members: []string{"frank"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created", g.Conv, "with", len(g.Members), "members")

	m, err := erin.Send(ctx, parley.Group("book-club"), "next week: Dune")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("sent #%d (#1 is the group.created message)\n", m.Seq)

	_, err = mallory.Send(ctx, parley.Group("book-club"), "let me in")
	if errors.Is(err, parley.ErrNotMember) {
		fmt.Println("mallory:", err)
	}
	// Output:
	// created g:book-club with 2 members
	// sent #2 (#1 is the group.created message)
	// mallory: parley: not_member: you are not a member of group "book-club"
}

// History pages through a conversation over REST, here from the first
// message forward.
func ExampleAPI_History() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	gina := exampleDial(ctx, "gina")
	defer gina.Close()
	for _, s := range []string{"one", "two", "three"} {
		if _, err := gina.Send(ctx, parley.User("hank"), s); err != nil {
			log.Fatal(err)
		}
	}

	// A program that needs no MQTT connection uses NewAPI.
	hank, err := parley.NewAPI(ctx, parley.Options{HTTP: exampleHTTP, Token: exampleToken("hank")})
	if err != nil {
		log.Fatal(err)
	}
	defer hank.CloseIdleConnections()
	opts := parley.HistoryOptions{Forward: true, Limit: 2}
	for {
		page, err := hank.History(ctx, parley.DirectConv("gina", "hank"), opts)
		if err != nil {
			log.Fatal(err)
		}
		for _, m := range page.Messages {
			fmt.Printf("#%d %s: %s\n", m.Seq, m.From, m.Text())
		}
		if page.Next == 0 {
			break
		}
		opts.After = page.Next
	}
	// Output:
	// #1 gina: one
	// #2 gina: two
	// #3 gina: three
}

// A reply, an edit, a reaction and a delete; the other user's client folds
// the change events into the messages it shows.
func ExampleApply() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ivy := exampleDial(ctx, "ivy")
	defer ivy.Close()
	jay := exampleDial(ctx, "jay")
	defer jay.Close()

	m, err := ivy.Send(ctx, parley.User("jay"), "lunch at 12?")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := jay.Reply(ctx, parley.User("ivy"), m.Seq, "sure"); err != nil {
		log.Fatal(err)
	}
	if _, err := ivy.Edit(ctx, parley.User("jay"), m.Seq, "lunch at 1?"); err != nil {
		log.Fatal(err)
	}
	if _, err := jay.React(ctx, parley.User("ivy"), m.Seq, "👍"); err != nil {
		log.Fatal(err)
	}
	if _, err := jay.Edit(ctx, parley.User("ivy"), m.Seq, "mine now"); errors.Is(err, parley.ErrNotAllowed) {
		fmt.Println("jay may not edit ivy's message")
	}

	// jay's client: 4 messages, of which 2 change the first one.
	var shown []parley.Message
	for n := 0; n < 4; {
		ev := <-jay.Events()
		if ev.Kind == parley.EventMessage {
			shown = parley.Apply(shown, ev.Message, jay.User())
			n++
		}
	}
	for _, s := range shown {
		line := fmt.Sprintf("#%d %s: %s", s.Seq, s.From, s.Text())
		if s.ReplyTo != 0 {
			line += fmt.Sprintf(" (reply to #%d)", s.ReplyTo)
		}
		if !s.EditedAt.IsZero() {
			line += " (edited)"
		}
		if r, ok := s.Reactions["👍"]; ok {
			line += fmt.Sprintf(" 👍 %d, mine: %v", r.Count, r.Me)
		}
		fmt.Println(line)
	}
	// Output:
	// jay may not edit ivy's message
	// #1 ivy: lunch at 1? (edited) 👍 1, mine: true
	// #2 jay: sure (reply to #1)
}

// exampleDial connects device "a" of user to the example server as Example
// does, and exits when it cannot.
func exampleDial(ctx context.Context, user string) *parley.Client {
	c, err := parley.Dial(ctx, parley.Options{Broker: exampleBroker, HTTP: exampleHTTP, Token: exampleToken(user), Device: "a"})
	if err != nil {
		log.Fatal(err)
	}
	return c
}
