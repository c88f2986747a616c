package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/protocol/auth"
)

const testClip = "../../sources/fmp4/testdata/h264_aac_bframes.mp4"

// TestRecordWaitsForBroadcast: record started before anything is published
// waits, and records the broadcast once it appears.
func TestRecordWaitsForBroadcast(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	startServe(t, ctx, port)
	dir := t.TempDir()
	rec := startProcess(t, ctx, "record", "--duration", "6s", "-o", dir, url, "test/later")
	waitFor(t, ctx, "record to wait", func() bool { return strings.Contains(rec.stderr.String(), "waiting for the broadcast") })
	time.Sleep(time.Second)
	pub := startProcess(t, ctx, "publish", "--loop", "--broadcast", "test/later", testClip, url)
	if code := rec.wait(t, ctx, "record"); code != 0 {
		t.Fatalf("record exited %d:\n%s", code, rec.stderr.String())
	}
	files := strings.Fields(rec.stdout.String())
	if len(files) != 1 {
		t.Fatalf("record printed %q", files)
	}
	if st, err := os.Stat(files[0]); err != nil || st.Size() < 10000 {
		t.Fatalf("%s: %v", files[0], err)
	}
	_ = pub.cmd.Process.Signal(os.Interrupt)
	pub.wait(t, ctx, "publish")
}

// TestRecordFailures: record exits non-zero, saying why, when it recorded
// nothing, when --wait passes, and when its source is lost or ends before
// --duration without reconnecting.
func TestRecordFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	startServe(t, ctx, port)
	dir := t.TempDir()

	wantError(t, `moqbridge: nothing was recorded: broadcast "test/none" did not appear within 2s`,
		"record", "--duration", "2s", "-o", dir, url, "test/none")
	wantError(t, `moqbridge: broadcast "test/none" did not appear within --wait 1s`,
		"record", "--wait", "1s", "-o", dir, url, "test/none")
	wantError(t, `moqbridge: broadcast "test/none" is not on the relay (--wait 0); leave --wait out to wait for it`,
		"record", "--wait", "0", "-o", dir, url, "test/none")
	wantError(t, `moqbridge: invalid argument "-1s" for "--wait" flag: want a duration such as 30s, 0 (do not wait) or forever, got "-1s"`,
		"record", "--wait", "-1s", "-o", dir, url, "test/none")

	t.Run("publisher killed", func(t *testing.T) {
		pub := startProcess(t, ctx, "publish", "--loop", "--broadcast", "test/killed", testClip, url)
		rec := startProcess(t, ctx, "record", "--reconnect=false", "-o", dir, url, "test/killed")
		waitFor(t, ctx, "recording", func() bool { return strings.Contains(rec.stderr.String(), "fmp4: recording") })
		time.Sleep(time.Second)
		_ = pub.cmd.Process.Signal(syscall.SIGKILL)
		if code := rec.wait(t, ctx, "record"); code == 0 {
			t.Fatalf("record exited 0 after its publisher was killed:\n%s", rec.stderr.String())
		}
		if !strings.Contains(rec.stderr.String(), `moqbridge: lost broadcast "test/killed" after `) {
			t.Errorf("record's error does not say the broadcast was lost:\n%s", rec.stderr.String())
		}
		files := strings.Fields(rec.stdout.String())
		if len(files) != 1 {
			t.Fatalf("record printed %q", files)
		}
	})

	t.Run("ends before duration", func(t *testing.T) {
		pub := startProcess(t, ctx, "publish", "--broadcast", "test/short", testClip, url)
		rec := startProcess(t, ctx, "record", "--reconnect=false", "--duration", "60s", "-o", dir, url, "test/short")
		if code := pub.wait(t, ctx, "publish"); code != 0 {
			t.Fatalf("publish exited %d:\n%s", code, pub.stderr.String())
		}
		if code := rec.wait(t, ctx, "record"); code == 0 {
			t.Fatalf("record exited 0 when the broadcast ended before --duration:\n%s", rec.stderr.String())
		}
		if !strings.Contains(rec.stderr.String(), `, before --duration 1m0s`) {
			t.Errorf("record's error does not say the broadcast ended early:\n%s", rec.stderr.String())
		}
	})
}

// TestPublishRefused: a publish the relay will not take is an error at
// once: a path outside the token's put claim, and an invalid path, which
// is refused before connecting.
func TestPublishRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "relay.jwk")
	if code, _, stderr := runCLI(t, ctx, "token", "--generate", "ES256", "--key", keyFile); code != 0 {
		t.Fatal(stderr)
	}
	token, err := auth.Mint(keyFile, auth.Claims{Put: []string{"alice"}, Get: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	startServe(t, ctx, port, "--auth-key", keyFile)
	url := fmt.Sprintf("http://127.0.0.1:%d/?jwt=%s", port, token)
	wantError(t, `moqbridge: the relay does not accept a broadcast at "bob/cam": it asks only for broadcasts under "alice/"; a token's put claim decides where a client may publish`,
		"publish", "--broadcast", "bob/cam", testClip, url)
	wantError(t, `moqbridge: --broadcast "alice/../bob": moq: invalid path: "alice/../bob" has a ".." segment`,
		"publish", "--broadcast", "alice/../bob", testClip, "moql://127.0.0.1:9")
	wantError(t, `moqbridge: --broadcast "alice/\x01": moq: invalid path: "alice/\x01" has a control character at byte 6`,
		"publish", "--broadcast", "alice/\x01", testClip, "moql://127.0.0.1:9")
	long := strings.Repeat("a", 5000)
	code, _, stderr := runCLI(t, ctx, "publish", "--broadcast", long, testClip, "moql://127.0.0.1:9")
	if code == 0 || !strings.Contains(stderr, "moq: invalid path: 5000 bytes, more than") {
		t.Errorf("an over-long path: exit %d, %q", code, stderr)
	}
}

// TestPublishBackup: a second publisher on a live path says it waits as a
// backup, and says it is live once the first one ends.
func TestPublishBackup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	relay := startServe(t, ctx, port)
	first := startProcess(t, ctx, "publish", "--loop", "--broadcast", "test/dup", testClip, url)
	waitFor(t, ctx, "the first publisher", func() bool { return strings.Contains(first.stderr.String(), "msg=publishing") })
	second := startProcess(t, ctx, "publish", "--loop", "--broadcast", "test/dup", testClip, url)
	waitFor(t, ctx, "the second publisher to say it is a backup", func() bool {
		return strings.Contains(second.stderr.String(), "another publisher is live at this path: this one waits as its backup")
	})
	waitFor(t, ctx, "the relay to log the backup", func() bool {
		return strings.Contains(relay.stderr.String(), "waiting as backup")
	})
	_ = first.cmd.Process.Signal(os.Interrupt)
	first.wait(t, ctx, "the first publisher")
	waitFor(t, ctx, "the backup to say it is live", func() bool {
		return strings.Contains(second.stderr.String(), "the publisher live at this path ended: this one is live now")
	})
	if strings.Contains(first.stderr.String(), "backup") {
		t.Errorf("the first publisher thinks it is a backup:\n%s", first.stderr.String())
	}
	_ = second.cmd.Process.Signal(os.Interrupt)
	second.wait(t, ctx, "the second publisher")
}

// TestReconnectGivesUp: a client that cannot get its relay back says why
// and exits non-zero: the relay came back with a new self-signed
// certificate the pinned fingerprint does not match, or it stayed away
// longer than --give-up.
func TestReconnectGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := freePort(t)
	relay := startServe(t, ctx, port)
	url := fmt.Sprintf("moql://127.0.0.1:%d", port)
	pub := startProcess(t, ctx, "publish", "--loop", "--reconnect-max", "500ms", "--fingerprint", relay.fingerprint,
		"--broadcast", "test/pinned", testClip, url)
	waitFor(t, ctx, "publishing", func() bool { return strings.Contains(pub.stderr.String(), "msg=publishing") })
	relay.stop(t, syscall.SIGTERM)
	relay = startServe(t, ctx, port)
	if code := pub.wait(t, ctx, "publish"); code == 0 {
		t.Fatal("publish exited 0")
	}
	want := "moqbridge: lost the relay at " + url + ", and it came back with a certificate that is not trusted (server certificate SHA-256 " +
		relay.fingerprint + " does not match pinned " + pubFingerprint(pub) + "): a relay without --cert makes a new one at every start; " +
		"give it --cert and --key, or use its http:// development URL, which fetches the fingerprint again"
	if got := lastLine(pub.stderr.String()); got != want {
		t.Errorf("publish printed\n\t%s\nwant\n\t%s", got, want)
	}

	rec := startProcess(t, ctx, "record", "--give-up", "2s", "--reconnect-max", "500ms", "-o", t.TempDir(), "--fingerprint", relay.fingerprint, url, "test/none")
	waitFor(t, ctx, "record to wait", func() bool { return strings.Contains(rec.stderr.String(), "waiting for the broadcast") })
	relay.stop(t, syscall.SIGTERM)
	if code := rec.wait(t, ctx, "record"); code == 0 {
		t.Fatal("record exited 0")
	}
	if got, want := lastLine(rec.stderr.String()), "moqbridge: lost the relay at "+url+" and gave up reconnecting after 2s (--give-up)"; got != want {
		t.Errorf("record printed\n\t%s\nwant\n\t%s", got, want)
	}
}

// pubFingerprint is the --fingerprint a process was started with.
func pubFingerprint(p *process) string {
	for i, a := range p.cmd.Args {
		if a == "--fingerprint" && i+1 < len(p.cmd.Args) {
			return p.cmd.Args[i+1]
		}
	}
	return ""
}

// lastLine is the last line of a process's output.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestRecordFrom: by default a recording starts at the group being sent;
// with --from oldest it starts with what the relay still holds from
// before (here the seconds the publisher ran before record started).
func TestRecordFrom(t *testing.T) {
	testkit.MustHaveTools(t, "ffprobe")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	startServe(t, ctx, port)
	pub := startProcess(t, ctx, "publish", "--loop", "--broadcast", "test/from", testClip, url)
	waitFor(t, ctx, "publishing", func() bool { return strings.Contains(pub.stderr.String(), "msg=publishing") })
	time.Sleep(4 * time.Second)
	span := func(from string) float64 {
		t.Helper()
		rec := startProcess(t, ctx, "record", "--from", from, "--duration", "2s", "-o", t.TempDir(), url, "test/from")
		if code := rec.wait(t, ctx, "record"); code != 0 {
			t.Fatalf("record --from %s exited %d:\n%s", from, code, rec.stderr.String())
		}
		files := strings.Fields(rec.stdout.String())
		if len(files) != 1 {
			t.Fatalf("record printed %q", files)
		}
		dts := testkit.PacketTimes(t, ctx, files[0], "v:0")
		return dts[len(dts)-1] - dts[0]
	}
	// Oldest first: the relay fetches the track for its first subscriber
	// from where that one asked to start.
	oldest := span("oldest")
	latest := span("latest")
	t.Logf("video spans %.1fs from the latest group, %.1fs from the oldest", latest, oldest)
	if latest > 3 {
		t.Errorf("--from latest recorded %.1fs in 2s", latest)
	}
	if oldest < 4 {
		t.Errorf("--from oldest recorded %.1fs: the relay's cache of the %s before is missing", oldest, "4s")
	}
	_ = pub.cmd.Process.Signal(os.Interrupt)
	pub.wait(t, ctx, "publish")
}
