package main

import (
	"context"
	"net/url"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/protocol/auth"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestServe runs `moqbridge serve` on loopback, reads the connect
// information it prints, and connects to it with the printed fingerprint.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quicURL, fp := runServe(t, ctx)
	sess, err := protocol.Dial(ctx, quicURL, protocol.WithFingerprint(fp))
	if err != nil {
		t.Fatalf("dial %s with the printed fingerprint: %v", quicURL, err)
	}
	if sess.Version() != protocol.Lite04 {
		t.Errorf("negotiated %s, want moq-lite-04", sess.Version())
	}
	_ = sess.Close()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, context.Background(), "version")
	if code != 0 || !strings.HasPrefix(out, "moqbridge ") || strings.Contains(out, "dev\n") {
		t.Fatalf("version exited %d printing %q", code, out)
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		if want := versionString("", info) + "\n"; out != want {
			t.Fatalf("version printed %q, want %q", out, want)
		}
	}
	rev := []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "79d6274e1f2a"}, {Key: "vcs.modified", Value: "true"}}
	for _, tc := range []struct {
		override string
		info     *debug.BuildInfo
		want     string
	}{
		{"", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: rev}, "moqbridge (devel) revision 79d6274e1f2a (modified)"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: rev[:2]}, "moqbridge (devel) revision 79d6274e1f2a"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}}, "moqbridge v0.3.0"},
		{"v1.0.0", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "moqbridge v1.0.0"},
		{"", nil, "moqbridge (unknown)"},
	} {
		if got := versionString(tc.override, tc.info); got != tc.want {
			t.Errorf("versionString(%q, %+v) = %q, want %q", tc.override, tc.info, got, tc.want)
		}
	}
}

// TestToken generates a key, mints a token, and checks the relay's
// authorizer accepts it for the granted path.
func TestToken(t *testing.T) {
	dir := t.TempDir()
	key := dir + "/k.jwk"
	run := func(args ...string) string {
		t.Helper()
		var out strings.Builder
		cmd := newRootCommand()
		cmd.SetOut(&out)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("moqbridge %v: %v", args, err)
		}
		return strings.TrimSpace(out.String())
	}
	run("token", "--generate", "EdDSA", "--key", key, "--public", dir+"/k.pub.jwk")
	tok := run("token", "--key", key, "--root", "live", "--put", "alice", "--get", "", "--expires", "1h")
	az, err := auth.New(auth.Config{KeyFiles: []string{dir + "/k.pub.jwk"}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := az.Authorize(&url.URL{Path: "/live", RawQuery: "jwt=" + tok})
	if err != nil {
		t.Fatalf("minted token refused: %v", err)
	}
	if g.Root != "live" || len(g.Publish) != 1 || g.Publish[0] != "alice" {
		t.Fatalf("grant %+v", g)
	}
}

// TestDescription: the help promises only what exists: RTMP and RTP
// ingest, restream and RTP out; every command it names is there.
func TestDescription(t *testing.T) {
	root := newRootCommand()
	if want := "MOQ Lite relay with RTMP and RTP ingest, RTMP restream, RTP out, and fMP4 publish and record"; root.Short != want {
		t.Errorf("short description %q, want %q", root.Short, want)
	}
	for _, name := range []string{"serve", "publish", "record", "restream", "rtp-out"} {
		if c, _, err := root.Find([]string{name}); err != nil || c.Name() != name {
			t.Errorf("the description names %q, which is not a command", name)
		}
	}
}
