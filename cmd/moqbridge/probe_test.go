package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// publishFile runs `moqbridge publish --loop` of a test clip at path until
// the test ends, and waits until the relay announces it.
func publishFile(t *testing.T, ctx context.Context, url, fp, path, clip string) {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	cmd := newRootCommand()
	cmd.SetArgs([]string{"--log-level", "error", "publish", "--loop", "--broadcast", path, "--fingerprint", fp, "../../sources/fmp4/testdata/" + clip, url})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("publish %s: %v", clip, err)
		}
	})
}

// TestProbe: probe against a relay serving an H.264+AAC and an H.264+Opus
// broadcast names them, their tracks, codecs, resolution, sample rates and
// channels, and measures a bitrate and group rate, in text and in JSON.
func TestProbe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, url, fp := startRelay(t, ctx)
	publishFile(t, ctx, url, fp, "test/aac", "h264_aac_bframes.mp4")
	publishFile(t, ctx, url, fp, "test/opus", "h264_opus.mp4")
	for _, path := range []string{"test/aac", "test/opus"} {
		ann := srv.Origin().Announced(path)
		if _, err := ann.Next(ctx); err != nil {
			t.Fatal(err)
		}
		ann.Close()
	}

	code, stdout, stderr := runCLI(t, ctx, "probe", "--fingerprint", fp, "--duration", "2s", url)
	if code != 0 {
		t.Fatalf("probe: exit status %d: %s", code, stderr)
	}
	t.Logf("probe printed:\n%s", stdout)
	for _, want := range []string{"moq-lite-", "over quic", "announced  2 broadcasts", "broadcast test/aac", "broadcast test/opus",
		"avc1.", "mp4a.40.2", "opus", "48000 Hz 2 ch", " kb/s"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the text report lacks %q", want)
		}
	}
	if !regexp.MustCompile(`video\s+avc1\.\w+\s+\d+x\d+`).MatchString(stdout) {
		t.Error("the text report gives no resolution for the video track")
	}

	code, stdout, stderr = runCLI(t, ctx, "probe", "--fingerprint", fp, "--duration", "2s", "--json", url, "test/opus")
	if code != 0 {
		t.Fatalf("probe --json: exit status %d: %s", code, stderr)
	}
	var report probeReport
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("probe --json printed %q: %v", stdout, err)
	}
	if report.Transport != "quic" || !strings.HasPrefix(report.Version, "moq-lite-") || len(report.Announced) != 2 {
		t.Errorf("report %+v: want quic, a moq-lite version and 2 broadcasts announced", report)
	}
	if len(report.Broadcasts) != 1 || report.Broadcasts[0].Path != "test/opus" {
		t.Fatalf("broadcasts %+v, want test/opus only", report.Broadcasts)
	}
	var video, audio bool
	for _, tr := range report.Broadcasts[0].Tracks {
		if tr.Bitrate <= 0 || tr.Groups == 0 || tr.Frames == 0 {
			t.Errorf("track %s: bitrate %.0f, %d groups, %d frames: nothing measured", tr.Name, tr.Bitrate, tr.Groups, tr.Frames)
		}
		switch {
		case tr.Kind == "video" && strings.HasPrefix(tr.Codec, "avc1.") && tr.Width > 0 && tr.Height > 0:
			video = true
		case tr.Kind == "audio" && tr.Codec == "opus" && tr.SampleRate == 48000 && tr.Channels > 0:
			audio = true
		}
	}
	if !video || !audio {
		t.Errorf("tracks %+v: want an H.264 video track with its size and an Opus audio track", report.Broadcasts[0].Tracks)
	}

	code, stdout, stderr = runCLI(t, ctx, "probe", "--fingerprint", fp, "--duration", "0", "--prefix", "other", url, "test/aac")
	if code != 0 || !strings.Contains(stdout, `announced  0 broadcasts under "other"`) || !strings.Contains(stdout, "broadcast test/aac") ||
		!strings.Contains(stdout, "mp4a.40.2") {
		t.Errorf("a named broadcast outside --prefix: exit status %d, %q, %q", code, stdout, stderr)
	}

	code, _, stderr = runCLI(t, ctx, "probe", "--fingerprint", fp, "--duration", "0", url, "test/none")
	if code == 0 || !strings.Contains(stderr, "not on the relay: test/none") {
		t.Errorf("a broadcast that is not there: exit status %d, %q", code, stderr)
	}
}

// TestProbeFailures: an unreachable relay and an untrusted certificate
// fail with a non-zero status and say so.
func TestProbeFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	silent := fmt.Sprintf("moql://%s", pc.LocalAddr())
	defer pc.Close()
	code, _, stderr := runCLI(t, ctx, "probe", "--connect-timeout", "500ms", silent)
	if code == 0 || !strings.Contains(stderr, "could not reach the relay") {
		t.Errorf("an unreachable relay: exit status %d, %q", code, stderr)
	}
	_, url, _ := startRelay(t, ctx)
	code, _, stderr = runCLI(t, ctx, "probe", url)
	if code == 0 || !strings.Contains(stderr, "certificate is not trusted") {
		t.Errorf("an untrusted certificate: exit status %d, %q", code, stderr)
	}
}
