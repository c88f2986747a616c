package protocol

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

// TestServerInfoLog: at info level the relay says what happens, one line
// each: a session starting (remote, transport, version) and ending, a
// broadcast going live and ending.
func TestServerInfoLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs testkit.LogBuffer
	srv := testServer(t, ServerConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	pub, bw, _ := publishTrack(t, ctx, srv, "webtransport", "live/logged", "video")
	waitAnnounced(t, ctx, srv.Origin(), "live/logged")
	_ = bw.Close()
	_ = pub.Close()
	want := []*regexp.Regexp{
		regexp.MustCompile(`level=INFO msg="moq session started" remote=127\.0\.0\.1:\d+ transport=webtransport version=moq-lite-04`),
		regexp.MustCompile(`level=INFO msg="moq broadcast live" path=live/logged`),
		regexp.MustCompile(`level=INFO msg="moq broadcast ended" path=live/logged`),
		regexp.MustCompile(`level=INFO msg="moq session ended" remote=127\.0\.0\.1:\d+ reason=`),
	}
	for {
		out := logs.String()
		missing := 0
		for _, re := range want {
			if !re.MatchString(out) {
				missing++
			}
		}
		if missing == 0 {
			if n := strings.Count(out, `msg="moq broadcast live"`); n != 1 {
				t.Errorf("%d broadcast-live lines, want 1:\n%s", n, out)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the relay's info log lacks %d of the expected lines:\n%s", missing, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServerLogsBackup: a second publisher of a live path is told apart in
// the relay's log: it waits as a backup.
func TestServerLogsBackup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs testkit.LogBuffer
	srv := testServer(t, ServerConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	publishTrack(t, ctx, srv, "quic", "live/twice", "video")
	waitAnnounced(t, ctx, srv.Origin(), "live/twice")
	publishTrack(t, ctx, srv, "quic", "live/twice", "video")
	backup := regexp.MustCompile(`level=INFO msg="moq broadcast waiting as backup" remote=127\.0\.0\.1:\d+ .*path=live/twice`)
	for !backup.MatchString(logs.String()) {
		if ctx.Err() != nil {
			t.Fatalf("no backup line in the relay's log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), `msg="moq broadcast live" path=live/twice`); n != 1 {
		t.Errorf("%d broadcast-live lines for one live path, want 1:\n%s", n, logs.String())
	}
}
