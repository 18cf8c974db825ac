package broker_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	packets3 "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/golang-jwt/jwt/v5"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/testkit"
)

func signed(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(sub string, exp time.Duration) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": time.Now().Add(exp).Unix()}
}

// TestConnectRefusals: every way of failing CONNECT gets the CONNACK code the
// docs promise, on v5 and v3.1.1.
func TestConnectRefusals(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"alice","exp":9999999999}`)) + "."
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	cases := []struct {
		name, clientID, username, password string
		v5, v3                             byte
	}{
		{"NoPassword", "alice", "alice", "", 0x86, 0x04},
		{"Garbage", "alice", "", "not-a-jwt", 0x86, 0x04},
		{"Expired", "alice", "", signed(t, jwt.SigningMethodHS256, testSecret, claims("alice", -time.Hour)), 0x86, 0x04},
		{"NoExp", "alice", "", signed(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "alice"}), 0x86, 0x04},
		{"WrongKey", "alice", "", signed(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret!!"), claims("alice", time.Hour)), 0x86, 0x04},
		{"AlgNone", "alice", "", none, 0x86, 0x04},
		{"RS256WithoutKey", "alice", "", signed(t, jwt.SigningMethodRS256, rsaKey, claims("alice", time.Hour)), 0x86, 0x04},
		{"BadSub", "a/b", "", signed(t, jwt.SigningMethodHS256, testSecret, claims("a/b", time.Hour)), 0x86, 0x04},
		{"UsernameMismatch", "alice", "bob", testkit.Token(t, "alice"), 0x87, 0x05},
		{"OtherUsersClientID", "bob", "", testkit.Token(t, "alice"), 0x85, 0x02},
		{"OtherUsersPrefix", "bob/phone", "", testkit.Token(t, "alice"), 0x85, 0x02},
		{"PrefixOfName", "alice2", "", testkit.Token(t, "alice"), 0x85, 0x02},
		{"BadDevice", "alice/ph one", "", testkit.Token(t, "alice"), 0x85, 0x02},
		{"EmptyClientID", "", "", testkit.Token(t, "alice"), 0x85, 0x02},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, ca, err := e.connectV5(tc.clientID, tc.username, tc.password)
			if err == nil || ca == nil || ca.ReasonCode != tc.v5 {
				t.Fatalf("v5: connack %+v, err %v; want reason %#x", ca, err, tc.v5)
			}
			// MQTT 3.1.1 needs a user name with a password.
			username := tc.username
			if username == "" {
				username = "alice"
			}
			_, err = e.connectV3(tc.clientID, username, tc.password)
			want := map[byte]error{0x04: packets3.ErrorRefusedBadUsernameOrPassword, 0x05: packets3.ErrorRefusedNotAuthorised, 0x02: packets3.ErrorRefusedIDRejected}[tc.v3]
			if !errors.Is(err, want) {
				t.Fatalf("v3: %v, want %v", err, want)
			}
		})
	}
	// The same user's own ids connect fine.
	for _, id := range []string{"alice", "alice/phone", "alice/a.b_c-1"} {
		if _, _, err := e.connectV5(id, "alice", testkit.Token(t, "alice")); err != nil {
			t.Fatalf("connect %s: %v", id, err)
		}
	}
}

// TestPublicKeyTokens: RS256, ES256 and EdDSA tokens verify against the
// configured public key, and an HS256 token signed with the public key's
// bytes (algorithm confusion) does not.
func TestPublicKeyTokens(t *testing.T) {
	for _, tc := range testkit.NewKeys(t).Algorithms() {
		t.Run(tc.Name, func(t *testing.T) {
			tokens := &auth.Tokens{PublicKey: tc.Public}
			user, err := tokens.Verify(signed(t, tc.Method, tc.Key, claims("alice", time.Hour)))
			if err != nil || user != "alice" {
				t.Fatalf("Verify = %q, %v", user, err)
			}
			if _, err := tokens.Verify(signed(t, tc.Method, tc.Key, claims("alice", -time.Minute))); !errors.Is(err, auth.ErrTokenExpired) {
				t.Fatalf("expired: %v", err)
			}
			// Algorithm confusion: HS256 keyed with anything must fail when
			// only a public key is configured.
			if _, err := tokens.Verify(signed(t, jwt.SigningMethodHS256, []byte("public key bytes"), claims("alice", time.Hour))); err == nil {
				t.Fatal("HS256 token accepted with only a public key configured")
			}
		})
	}
}

// TestSubscribeACL: a user subscribes only to its own inbox; wildcard filters
// that could cover inboxes are refused; plain topics follow the ACL file.
func TestSubscribeACL(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t), withACL(t, "* readwrite devices/{user}/#\nalice read sensors/#\n"))
	alice5, alice3 := e.dialV5("alice/5", "alice"), e.dialV3("alice/3", "alice")
	cases := []struct {
		filter string
		ok     bool
	}{
		{"im/inbox/alice", true},
		{"im/inbox/bob", false},
		{"im/inbox/+", false},
		{"im/#", false},
		{"#", false},
		{"+/inbox/alice", false},
		{"+/+/bob", false},
		{"im/+/bob", false},
		{"$share/g/im/inbox/alice", false},
		{"im/send/u/bob", false},
		{"devices/alice/#", true},
		{"devices/bob/temp", false},
		{"devices/+/temp", false},
		{"sensors/#", true},
		{"sensors/kitchen", true},
		{"other/topic", false},
		{"$SYS/#", false},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			got5, got3 := alice5.subscribe(tc.filter, 1), alice3.subscribe(tc.filter, 1)
			if tc.ok && (got5 != 1 || got3 != 1) {
				t.Fatalf("SUBACK v5 %#x v3 %#x, want granted QoS 1", got5, got3)
			}
			// MQTT 5: 0x87 under Parley's prefix, 0x80 for a plain filter
			// the ACL denies (see TestPahoSubscribeFailure).
			want5 := byte(0x80)
			if strings.HasPrefix(tc.filter, "im/") || strings.HasPrefix(tc.filter, "$share/g/im/") {
				want5 = 0x87
			}
			if !tc.ok && (got5 != want5 || got3 != 0x80) {
				t.Fatalf("SUBACK v5 %#x v3 %#x, want %#x and 0x80", got5, got3, want5)
			}
		})
	}
	// Plain MQTT between users on ACL-allowed topics.
	bob := e.dialV5("bob", "bob")
	alice5.subscribe("devices/alice/temp", 1)
	if code, _ := bob.publish("devices/alice/temp", 1, `{"t":21}`); code != 0x87 {
		t.Fatalf("bob publishing to alice's device topic: %#x, want 0x87", code)
	}
	alice3.send("devices/alice/temp", 1, `{"t":22}`)
	if ev := alice5.next(); ev.topic != "devices/alice/temp" {
		t.Fatalf("got %+v", ev)
	}
}

// TestRefusedTokenClaims: a token with a crit header or issued in the future
// is refused end to end: CONNACK 0x86 on v5, 0x04 on v3.1.1, 401 over REST.
func TestRefusedTokenClaims(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	crit := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("alice", time.Hour))
	crit.Header["crit"] = []string{"exp"}
	critToken, err := crit.SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(10 * time.Minute)
	cases := []struct{ name, token string }{
		{"CritHeader", critToken},
		{"IssuedInFuture", signed(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{
			"sub": "alice", "iat": future.Unix(), "exp": future.Add(time.Hour).Unix()})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, ca, err := e.connectV5("alice", "", tc.token); err == nil || ca == nil || ca.ReasonCode != 0x86 {
				t.Fatalf("v5: connack %+v, err %v; want reason 0x86", ca, err)
			}
			if _, err := e.connectV3("alice", "alice", tc.token); !errors.Is(err, packets3.ErrorRefusedBadUsernameOrPassword) {
				t.Fatalf("v3: %v, want %v", err, packets3.ErrorRefusedBadUsernameOrPassword)
			}
			req, err := http.NewRequest("GET", e.http+"/v1/conversations", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tc.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("REST: status %d, want 401", resp.StatusCode)
			}
		})
	}
}
