package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/protocol"
)

// runCLI runs moqbridge with args as main does and returns its exit status
// and what it printed on stdout and stderr.
func runCLI(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	code := run(ctx, append([]string{"--log-level", "error"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// wantError runs moqbridge with args and checks it fails with exactly the
// message want on stderr.
func wantError(t *testing.T, want string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, _, stderr := runCLI(t, ctx, args...)
	if code == 0 {
		t.Errorf("moqbridge %q: exit status 0, want an error", args)
	}
	if got := strings.TrimSuffix(stderr, "\n"); got != want {
		t.Errorf("moqbridge %q printed\n\t%s\nwant\n\t%s", args, got, want)
	}
}

// TestRecordRefusesBadValues: negative durations and sizes, unknown
// placeholders and names that leave -o are refused before connecting.
func TestRecordRefusesBadValues(t *testing.T) {
	dir := t.TempDir()
	url := "moql://127.0.0.1:9"
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--duration", "-3s"}, "moqbridge: --duration -3s: must not be negative (0 turns it off)"},
		{[]string{"--segment", "-1m"}, "moqbridge: --segment -1m0s: must not be negative (0 turns it off)"},
		{[]string{"--max-bytes", "-5"}, "moqbridge: --max-bytes -5: must not be negative (0 turns it off)"},
		{[]string{"--from", "start"}, `moqbridge: --from "start": want latest (from the group being sent now) or oldest (what the relay still holds from before)`},
		{[]string{"--name", "{path}/{date}.mp4"}, `moqbridge: --name "{path}/{date}.mp4": unknown placeholder "{date}"; the placeholders are {path}, {start}, {start:LAYOUT} (a Go time layout) and {seq}`},
		{[]string{"--name", "{path}/{seq.mp4"}, `moqbridge: --name "{path}/{seq.mp4": unclosed "{seq.mp4"; the placeholders are {path}, {start}, {start:LAYOUT} (a Go time layout) and {seq}`},
		{[]string{"--name", "../../x.mp4"}, `moqbridge: --name "../../x.mp4": the file would be outside the -o directory; use a relative name without ".."`},
		{[]string{"--name", "{path}/../../{seq}.mp4"}, `moqbridge: --name "{path}/../../{seq}.mp4": the file would be outside the -o directory; use a relative name without ".."`},
		{[]string{"--name", "/tmp/{seq}.mp4"}, `moqbridge: --name "/tmp/{seq}.mp4": the file would be outside the -o directory; use a relative name without ".."`},
	} {
		wantError(t, tc.want, append(append([]string{"record", "-o", dir}, tc.flags...), url, "live")...)
	}
	if err := checkFileTemplate("{path}/{start:2006/01/02}/{seq}-{start}.mp4"); err != nil {
		t.Errorf("a valid template refused: %v", err)
	}
}

// TestMissingArguments: a missing argument is named.
func TestMissingArguments(t *testing.T) {
	wantError(t, `moqbridge: publish needs INPUT and URL, got 1 argument (see "moqbridge publish --help")`, "publish", "clip.mp4")
	wantError(t, `moqbridge: record needs URL and BROADCAST, got 0 arguments (see "moqbridge record --help")`, "record", "-o", t.TempDir())
}

// TestPublishChecksInput: an input that is not an MP4 file is refused
// before dialling (the URL has nothing listening).
func TestPublishChecksInput(t *testing.T) {
	dir := t.TempDir()
	txt := filepath.Join(dir, "hello.txt")
	if err := os.WriteFile(txt, []byte("hello world\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.mp4")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wantError(t, "moqbridge: "+txt+": not an MP4 file", "publish", txt, "moql://127.0.0.1:9")
	wantError(t, "moqbridge: "+empty+": empty file, not an MP4 file", "publish", empty, "moql://127.0.0.1:9")
	wantError(t, "moqbridge: "+dir+": is a directory, not an MP4 file", "publish", dir, "moql://127.0.0.1:9")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing took %v: it dialled first", d)
	}
}

// TestURLMistakes: a URL without a scheme, an untrusted certificate and
// an unreachable relay each say what to do.
func TestURLMistakes(t *testing.T) {
	dir := t.TempDir()
	schemes := "use moql://HOST:PORT (QUIC), https://HOST:PORT/ (WebTransport), ws:// or wss:// (WebSocket), "
	wantError(t, `moqbridge: "127.0.0.1:4443" is not a relay URL: `+schemes+
		`e.g. moql://127.0.0.1:4443, or http://127.0.0.1:4443/ for a development relay (moqbridge serve)`,
		"record", "-o", dir, "127.0.0.1:4443", "live")
	wantError(t, `moqbridge: "relay.example" is not a relay URL: `+schemes+
		`e.g. moql://localhost:4443, or http://localhost:4443/ for a development relay (moqbridge serve)`,
		"publish", "../../sources/fmp4/testdata/h264_aac_bframes.mp4", "relay.example")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, url, _ := startRelay(t, ctx)
	host := strings.TrimPrefix(url, "moql://")
	wantError(t, `moqbridge: the relay's certificate is not trusted (x509: certificate signed by unknown authority): `+
		`pass --fingerprint HEX with the SHA-256 that "moqbridge serve" prints, or use http://`+host+`/ against a development relay`,
		"record", "-o", dir, "--duration", "5s", url, "live")

	// Nothing answers on the discard port: the dial is bounded by the
	// duration and reported as such.
	start := time.Now()
	wantError(t, "moqbridge: could not reach the relay at moql://127.0.0.1:9 within 1s: is it running, and is the address right?",
		"record", "-o", dir, "--duration", "1s", "moql://127.0.0.1:9", "live")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("unreachable relay took %v", d)
	}
}

// TestFingerprintHelp: the --fingerprint help is not turned into a
// placeholder by backticks.
func TestFingerprintHelp(t *testing.T) {
	for _, c := range []string{"publish", "record"} {
		_, out, _ := runCLI(t, context.Background(), c, "--help")
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "--fingerprint") {
				line = strings.Join(strings.Fields(l), " ")
			}
		}
		want := `--fingerprint string accept exactly the server certificate with this SHA-256 (hex), as printed by "moqbridge serve"`
		if line != want {
			t.Errorf("%s --help:\n\t%s\nwant\n\t%s", c, line, want)
		}
	}
}

// TestRelayShutDown: a publisher told not to reconnect whose relay stops
// reports "relay shut down", not the transport's close error.
func TestRelayShutDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, url, fp := startRelay(t, ctx)
	ann := srv.Origin().Announced("test/stop")
	defer ann.Close()
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, _, stderr := runCLI(t, ctx, "publish", "--loop", "--reconnect=false", "--broadcast", "test/stop", "--fingerprint", fp,
			"../../sources/fmp4/testdata/h264_aac_bframes.mp4", url)
		done <- result{code, stderr}
	}()
	if _, err := ann.Next(ctx); err != nil {
		t.Fatal(err)
	}
	_ = srv.Close()
	r := <-done
	if want := "moqbridge: relay shut down\n"; r.code == 0 || r.stderr != want {
		t.Fatalf("publish exited %d printing %q, want %q", r.code, r.stderr, want)
	}
}

func TestExplainSessionClose(t *testing.T) {
	err := fmt.Errorf("relay session ended: %w", &protocol.SessionError{Code: codeClosed, Reason: "server shutting down", Remote: true})
	if got := explain(err); got != errRelayShutDown {
		t.Errorf("explain(%v) = %v", err, got)
	}
	other := &protocol.SessionError{Code: codeClosed, Reason: "session stream reset", Remote: true}
	if got := explain(other); got != other {
		t.Errorf("explain(%v) = %v", other, got)
	}
}

// TestTokenKeyErrors: token names the flag of a signing key it cannot use
// and points a raw secret to --secret and a JWK to --key.
func TestTokenKeyErrors(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "hmac.key")
	if err := os.WriteFile(secret, []byte(strings.Repeat("0123456789abcdef", 4)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	jwk := filepath.Join(dir, "relay.jwk")
	if code, _, stderr := runCLI(t, context.Background(), "token", "--generate", "HS256", "--key", jwk); code != 0 {
		t.Fatalf("token --generate: %s", stderr)
	}
	wantError(t, "moqbridge: --key "+secret+": not a JWK or PEM key; if it is a raw HMAC secret, pass it as --secret "+secret,
		"token", "--key", secret, "--put", "a")
	wantError(t, "moqbridge: --secret "+jwk+": a JWK, not a raw secret; pass it as --key "+jwk,
		"token", "--secret", jwk, "--put", "a")
	wantError(t, "moqbridge: --key FILE (a JWK or PEM key) or --secret FILE (a raw HMAC secret) is required", "token", "--put", "a")
	wantError(t, "moqbridge: --key and --secret: give one signing key, not both", "token", "--key", jwk, "--secret", secret)
	for _, flag := range []string{"--key", "--secret"} {
		file := jwk
		if flag == "--secret" {
			file = secret
		}
		code, out, stderr := runCLI(t, context.Background(), "token", flag, file, "--put", "a")
		if code != 0 || strings.Count(out, ".") != 2 {
			t.Errorf("token %s: exit %d, %q %q", flag, code, out, stderr)
		}
	}
}
