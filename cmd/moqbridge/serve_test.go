package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/protocol/auth"
)

// runServe runs `moqbridge serve` with args (plus a loopback listen
// address) until the test ends and returns the raw QUIC URL and the
// certificate fingerprint it printed.
func runServe(t *testing.T, ctx context.Context, args ...string) (string, [32]byte) {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	cmd := newRootCommand()
	cmd.SetOut(pw)
	cmd.SetArgs(append([]string{"serve", "--listen", "127.0.0.1:0", "--log-level", "warn"}, args...))
	done := make(chan error, 1)
	go func() {
		done <- cmd.ExecuteContext(runCtx)
		_ = pw.Close()
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	var quicURL string
	var fp [32]byte
	sc := bufio.NewScanner(pr)
	quicRe := regexp.MustCompile(`moql://\S+`)
	for sc.Scan() {
		line := sc.Text()
		if m := quicRe.FindString(line); m != "" {
			quicURL = m
		}
		if _, hexFP, ok := strings.Cut(line, "SHA-256: "); ok {
			b, err := hex.DecodeString(hexFP)
			if err != nil || len(b) != 32 {
				t.Fatalf("printed fingerprint %q: %v", hexFP, err)
			}
			copy(fp[:], b)
		}
		if strings.Contains(line, "Ctrl-C") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if quicURL == "" {
		t.Fatal("serve printed no moql:// URL")
	}
	return quicURL, fp
}

// TestServeBudgetFlags: the admission flags reach the relay: with
// --max-sessions-per-addr 1 a second session from loopback is refused with
// BoundsExceeded.
func TestServeBudgetFlags(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, fp := runServe(t, ctx, "--max-sessions-per-addr", "1", "--max-sessions", "0", "--max-pending", "8",
		"--idle-timeout", "3s", "--keep-alive", "500ms", "--tcp", "off",
		"--max-streams", "64", "--max-session-buffer", "8MiB", "--max-server-buffer", "64MiB")
	// Two sessions from one address: whichever the relay admits second
	// (normally the second dialed) is closed with BoundsExceeded.
	var sessions [2]*protocol.Session
	for i := range sessions {
		s, err := protocol.Dial(ctx, url, protocol.WithFingerprint(fp))
		if err != nil {
			var se *protocol.SessionError
			if i == 1 && errors.As(err, &se) && se.Code == 11 {
				return // refused during the dial
			}
			t.Fatalf("dial %d: %v", i, err)
		}
		defer s.Close()
		sessions[i] = s
	}
	var ended *protocol.Session
	select {
	case <-sessions[0].Done():
		ended = sessions[0]
	case <-sessions[1].Done():
		ended = sessions[1]
	case <-ctx.Done():
		t.Fatal("two sessions from one address with --max-sessions-per-addr 1")
	}
	var se *protocol.SessionError
	if err := ended.Err(); !errors.As(err, &se) || se.Code != 11 {
		t.Fatalf("session over the per-address budget ended with %v, want a close with BoundsExceeded (11)", err)
	}
}

// TestServeFlagErrors: inconsistent liveness and budget flags are refused
// before the relay starts.
func TestServeFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--keep-alive", "5s", "--idle-timeout", "5s"},
		{"--idle-timeout", "0s"},
		{"--max-sessions", "-3"},
		{"--max-streams", "0"},
		{"--max-session-buffer", "0"},
		{"--max-session-buffer", "1GiB", "--max-server-buffer", "256MiB"},
		{"--max-server-buffer", "lots"},
	} {
		cmd := newRootCommand()
		cmd.SetOut(io.Discard)
		cmd.SetArgs(append([]string{"serve", "--listen", "127.0.0.1:0"}, args...))
		if err := cmd.Execute(); err == nil {
			t.Errorf("serve %v: no error", args)
		}
	}
}

func TestBudgetFlag(t *testing.T) {
	for _, c := range []struct{ in, want int }{{0, -1}, {5, 5}} {
		if got, err := budgetFlag("x", c.in); err != nil || got != c.want {
			t.Errorf("budgetFlag(%d) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestByteSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		out  string
	}{
		{"1048576", 1 << 20, "1MiB"},
		{"64MiB", 64 << 20, "64MiB"},
		{"64 mib", 64 << 20, "64MiB"},
		{"1G", 1 << 30, "1GiB"},
		{"1536KiB", 1536 << 10, "1536KiB"},
		{"1000", 1000, "1000"},
	} {
		var b byteSize
		if err := b.Set(c.in); err != nil || int(b) != c.want || b.String() != c.out {
			t.Errorf("Set(%q) = %d (%s), %v; want %d (%s)", c.in, int(b), b.String(), err, c.want, c.out)
		}
	}
	for _, bad := range []string{"", "0", "-1MiB", "1.5MiB", "MiB", "9999999999GiB"} {
		var b byteSize
		if err := b.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}

// TestServeAuthSecret: a relay run with --auth-secret admits a session
// whose token was signed with that secret (auth.MintSecret, as "moqbridge
// token" would) and refuses one without a token.
func TestServeAuthSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secret := filepath.Join(t.TempDir(), "hmac.key")
	if err := os.WriteFile(secret, []byte(strings.Repeat("0123456789abcdef", 2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url, fp := runServe(t, ctx, "--auth-secret", secret, "--tcp", "off")
	base := strings.Replace(url, "moql://", "https://", 1) + "/room"
	if s, err := protocol.Dial(ctx, base, protocol.WithFingerprint(fp)); err == nil {
		s.Close()
		t.Fatal("a session without a token was admitted")
	} else if !strings.Contains(err.Error(), "401") {
		t.Fatalf("dial without a token: %v, want HTTP 401", err)
	}
	token, err := auth.MintSecret(secret, auth.Claims{Root: "room", Get: []string{""}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := protocol.Dial(ctx, base+"?jwt="+token, protocol.WithFingerprint(fp))
	if err != nil {
		t.Fatalf("dial with a token signed with the secret: %v", err)
	}
	s.Close()
}

// TestServeReloadsCertificate: serve with --cert and --key reads them
// again on SIGHUP and on SIGUSR1 (/certificate.sha256 follows), and goes on
// serving; without a certificate of its own, a SIGHUP is logged, not the
// end of the process.
func TestServeReloadsCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCertificate(t, certFile, keyFile)
	port := freePort(t)
	p, _ := startWithBanner(t, ctx, nil, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--cert", certFile, "--key", keyFile)
	served := func() string { return servedCertificate(ctx, port) }
	if got := served(); got != first {
		t.Fatalf("/certificate.sha256 is %q, want the file's %s", got, first)
	}
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1} {
		next := writeCertificate(t, certFile, keyFile)
		_ = p.cmd.Process.Signal(sig)
		waitFor(t, ctx, fmt.Sprintf("the new certificate after %v", sig), func() bool { return served() == next })
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, ctx, "moqbridge serve"); code != 0 {
		t.Fatalf("moqbridge serve exited %d:\n%s", code, p.stderr.String())
	}

	dev, _ := startWithBanner(t, ctx, nil, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	_ = dev.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, ctx, "the SIGHUP logged", func() bool {
		return strings.Contains(dev.stderr.String(), "no certificate to reload")
	})
	_ = dev.cmd.Process.Signal(syscall.SIGTERM)
	if code := dev.wait(t, ctx, "moqbridge serve"); code != 0 {
		t.Fatalf("moqbridge serve (development certificate) exited %d:\n%s", code, dev.stderr.String())
	}
}
