package protocol

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/protocol/auth"
)

// TestTokensNotLogged: with debug logging on, a relay that accepts one
// token and refuses another writes neither into its log, though the
// HTTP/3 server logs every request URI and refusals quote what failed;
// the client's log redacts its own token too.
func TestTokensNotLogged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	az, keyFile := testAuthorizer(t)
	var relayLog, clientLog testkit.LogBuffer
	debug := &slog.HandlerOptions{Level: slog.LevelDebug}
	srv := testServer(t, ServerConfig{Auth: az, Logger: slog.New(slog.NewTextHandler(&relayLog, debug))})
	token, err := auth.Mint(keyFile, auth.Claims{Root: "room", Get: []string{""}})
	if err != nil {
		t.Fatal(err)
	}
	forged := "eyJhbGciOiJIUzI1NiJ9.eyJyb290Ijoicm9vbSJ9.Zm9yZ2Vk"
	base := fmt.Sprintf("https://127.0.0.1:%d/room?jwt=", srv.Addr().Port)
	sess, err := Dial(ctx, base+token, WithFingerprint(srv.Fingerprint()), WithLogger(slog.New(slog.NewTextHandler(&clientLog, debug))))
	if err != nil {
		t.Fatal(err)
	}
	_ = sess.Close()
	if _, err := Dial(ctx, base+forged, WithFingerprint(srv.Fingerprint())); err == nil {
		t.Fatal("a forged token was accepted")
	}
	// Raw QUIC: a refused connection is closed once the relay has read
	// the token.
	quicBase := fmt.Sprintf("moql://127.0.0.1:%d/?jwt=", srv.Addr().Port)
	if q, err := Dial(ctx, quicBase+forged, WithFingerprint(srv.Fingerprint())); err == nil {
		select {
		case <-q.Done():
		case <-ctx.Done():
			t.Fatal("a forged token was accepted over raw QUIC")
		}
		_ = q.Close()
	}
	_ = srv.Close()
	logs := relayLog.String() + clientLog.String()
	if !strings.Contains(logs, "jwt=REDACTED") {
		t.Errorf("no redacted request in the logs; the test saw nothing to redact:\n%s", logs)
	}
	for _, secret := range []string{token, forged, strings.Split(token, ".")[2], "Zm9yZ2Vk"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a token reached the logs:\n%s", logs)
		}
	}
}
