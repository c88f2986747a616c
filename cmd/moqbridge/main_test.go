package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestServe runs `moqbridge serve` on loopback, reads the connect
// information it prints, and connects to it with the printed fingerprint.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	cmd := newRootCommand()
	cmd.SetOut(pw)
	cmd.SetArgs([]string{"serve", "--listen", "127.0.0.1:0", "--log-level", "warn"})
	done := make(chan error, 1)
	go func() {
		done <- cmd.ExecuteContext(runCtx)
		_ = pw.Close()
	}()

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
	sess, err := protocol.Dial(ctx, quicURL, protocol.WithFingerprint(fp))
	if err != nil {
		t.Fatalf("dial %s with the printed fingerprint: %v", quicURL, err)
	}
	if sess.Version() != protocol.Lite04 {
		t.Errorf("negotiated %s, want moq-lite-04", sess.Version())
	}
	_ = sess.Close()
	stop()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

func TestVersion(t *testing.T) {
	var out strings.Builder
	cmd := newRootCommand()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "moqbridge ") {
		t.Fatalf("version printed %q", out.String())
	}
}
