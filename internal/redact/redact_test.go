package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

func TestToken(t *testing.T) {
	for in, want := range map[string]string{
		"/room?jwt=eyJhbGci.eyJzdWIi.c2ln":    "/room?jwt=REDACTED",
		"/room?x=1&jwt=abc.def.ghi&y=2":       "/room?x=1&jwt=REDACTED&y=2",
		"https://relay:4443/live?jwt=abc":     "https://relay:4443/live?jwt=REDACTED",
		`dial "https://h/r?jwt=abc": refused`: `dial "https://h/r?jwt=REDACTED": refused`,
		"no token here":                       "no token here",
		"/room?notjwt=abc":                    "/room?notjwt=abc",
		"jwt=abc":                             "jwt=REDACTED",
	} {
		if got := Token(in); got != want {
			t.Errorf("Token(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRedactTokens: no line a redacting logger writes carries the token,
// wherever it was: the message, a string, an error, a URL, a group, or an
// attribute bound with With.
func TestTokenLogger(t *testing.T) {
	const secret = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0.c2lnbmF0dXJl"
	var buf bytes.Buffer
	log := TokenLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	u, _ := url.Parse("https://relay.example:4443/room?jwt=" + secret)
	log.With("url", u.String()).Debug("handling request ?jwt="+secret,
		"uri", "/room?jwt="+secret,
		"err", errors.New(`dial "`+u.String()+`": refused`),
		"u", u,
		slog.Group("req", "uri", "/room?jwt="+secret))
	TokenLogger(log).Info("twice wrapped", "uri", "/?jwt="+secret)
	out := buf.String()
	if strings.Contains(out, secret) || strings.Contains(out, "c2VjcmV0") {
		t.Fatalf("the token reached the log:\n%s", out)
	}
	if n := strings.Count(out, "jwt=REDACTED"); n != 7 {
		t.Errorf("%d redactions, want 7:\n%s", n, out)
	}
}
