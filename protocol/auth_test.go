package protocol

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/auth"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// testAuthorizer returns an authorizer of tokens signed with a fresh HS256
// key, and the key's file for minting them.
func testAuthorizer(t *testing.T) (*auth.Authorizer, string) {
	t.Helper()
	key, err := auth.GenerateKey("HS256")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.jwk")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	az, err := auth.New(auth.Config{KeyFiles: []string{keyFile}})
	if err != nil {
		t.Fatal(err)
	}
	return az, keyFile
}

// TestAuth: a server with JWT auth refuses a connection without a token
// (HTTP 401), accepts a valid one, lets it publish and subscribe inside its
// prefixes, and resets a subscribe outside them with Unauthorized.
func TestAuth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	az, keyFile := testAuthorizer(t)
	srv := testServer(t, ServerConfig{Auth: az})
	base := fmt.Sprintf("https://127.0.0.1:%d/", srv.Addr().Port)
	fp := WithFingerprint(srv.Fingerprint())

	_, err := Dial(ctx, base+"room", fp)
	var he *transport.HTTPError
	if !errors.As(err, &he) || he.Status != 401 {
		t.Fatalf("dial without a token: %v, want HTTP 401", err)
	}

	token, err := auth.Mint(keyFile, auth.Claims{Root: "room", Put: []string{"alice"}, Get: []string{"alice", "public"}})
	if err != nil {
		t.Fatal(err)
	}
	origin := moq.NewOrigin()
	defer origin.Close()
	bw := moq.NewBroadcast()
	tw, _ := bw.CreateTrack("video", 1)
	_ = origin.Publish("alice", bw.Reader())
	_ = origin.Publish("mallory", moq.NewBroadcast().Reader())
	pub, err := Dial(ctx, base+"room?jwt="+token, fp, WithPublish(origin))
	if err != nil {
		t.Fatalf("dial with a valid token: %v", err)
	}
	defer pub.Close()
	// Wire paths are relative to the token's root.
	b := waitAnnounced(t, ctx, srv.Origin(), "room/alice")
	if _, err := srv.Origin().Consume("room/mallory"); err == nil {
		t.Error("a broadcast outside the token's put prefixes reached the relay")
	}
	gw, _ := tw.AppendGroup()
	_ = gw.WriteFrame([]byte("hi"))
	_ = gw.Close()
	tr, err := b.Subscribe("video", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if g, err := tr.NextGroup(ctx); err != nil || g.Sequence() != 0 {
		t.Fatalf("relay reading the authorized broadcast: %v", err)
	}

	sub, err := Dial(ctx, base+"room?jwt="+token, fp)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ok, err := sub.Consume("alice").Subscribe("video", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	if _, err := ok.NextGroup(ctx); err != nil {
		t.Fatalf("subscribe inside the token's get prefixes: %v", err)
	}
	denied, err := sub.Consume("secret").Subscribe("video", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer denied.Close()
	_, err = denied.NextGroup(ctx)
	var se *StreamError
	if !errors.As(err, &se) || se.Code != uint64(wire.CodeUnauthorized) {
		t.Fatalf("subscribe outside the token's get prefixes: %v, want a reset with Unauthorized (6)", err)
	}
}

// TestOriginPolicy: the browser origin allow-list of ServerConfig. Any
// origin may connect by default, with a generated or a configured
// certificate; AllowedOrigins restricts.
func TestOriginPolicy(t *testing.T) {
	req := func(origin, host string) *http.Request {
		r := &http.Request{Header: http.Header{}, Host: host}
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		return r
	}
	for _, c := range []struct {
		name   string
		cfg    ServerConfig
		origin string
		want   bool
	}{
		{"dev allows any", ServerConfig{}, "https://page.example", true},
		{"configured certificate allows any", ServerConfig{CertFile: "c", KeyFile: "k"}, "https://page.example", true},
		{"no origin header", ServerConfig{CertFile: "c", KeyFile: "k"}, "", true},
		{"allow-list hit", ServerConfig{AllowedOrigins: []string{"https://page.example/"}}, "https://PAGE.example", true},
		{"allow-list miss", ServerConfig{AllowedOrigins: []string{"https://page.example"}}, "https://evil.example", false},
		{"allow-list refuses same origin", ServerConfig{AllowedOrigins: []string{"https://page.example"}}, "https://relay.example:4443", false},
		{"allow-list passes no origin header", ServerConfig{AllowedOrigins: []string{"https://page.example"}}, "", true},
		{"wildcard", ServerConfig{CertFile: "c", KeyFile: "k", AllowedOrigins: []string{"*"}}, "https://evil.example", true},
	} {
		check := originPolicy(c.cfg)
		got := check == nil || check(req(c.origin, "relay.example:4443"))
		if got != c.want {
			t.Errorf("%s: allowed %v, want %v", c.name, got, c.want)
		}
	}
}
