package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

// TestServeRTMP: `moqbridge serve --rtmp` ingests what ffmpeg publishes
// over RTMP into its relay, where `moqbridge record` finds the broadcast
// live/test over MOQ and records its H.264 and AAC tracks.
func TestServeRTMP(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	serve := newRootCommand()
	serve.SetOut(pw)
	serve.SetArgs([]string{"serve", "--listen", "127.0.0.1:0", "--tcp", "off", "--log-level", "warn",
		"--rtmp", "127.0.0.1:0", "--rtmp-key", "test"})
	served := make(chan error, 1)
	go func() {
		served <- serve.ExecuteContext(runCtx)
		_ = pw.Close()
	}()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	var quicURL, fp, rtmpURL string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if m := regexp.MustCompile(`moql://\S+`).FindString(line); m != "" {
			quicURL = m
		}
		if m := regexp.MustCompile(`rtmp://\S+/<app>`).FindString(line); m != "" {
			rtmpURL = strings.TrimSuffix(m, "/<app>")
		}
		if _, h, ok := strings.Cut(line, "SHA-256: "); ok {
			fp = h
		}
		if strings.Contains(line, "Ctrl-C") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if quicURL == "" || rtmpURL == "" || len(fp) != 64 {
		t.Fatalf("banner: relay %q, RTMP %q, fingerprint %q", quicURL, rtmpURL, fp)
	}
	if _, err := hex.DecodeString(fp); err != nil {
		t.Fatal(err)
	}

	ffmpeg := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=sample_rate=48000",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30", "-c:a", "aac",
		"-t", "5", "-f", "flv", rtmpURL+"/live/test")
	var ffOut strings.Builder
	ffmpeg.Stdout, ffmpeg.Stderr = &ffOut, &ffOut
	if err := ffmpeg.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := ffmpeg.Wait(); err != nil {
			t.Errorf("ffmpeg: %v\n%s", err, ffOut.String())
		}
	}()

	dir := t.TempDir()
	var out strings.Builder
	rec := newRootCommand()
	rec.SetOut(&out)
	rec.SetArgs([]string{"record", "--reconnect=false", "--wait", "15s", "-o", dir, "--fingerprint", fp, quicURL, "live/test"})
	if err := rec.ExecuteContext(ctx); err != nil {
		t.Fatalf("record: %v", err)
	}
	files := strings.Fields(out.String())
	if len(files) == 0 {
		t.Fatal("record printed no file")
	}
	if !strings.HasPrefix(files[0], dir+string(filepath.Separator)) {
		t.Fatalf("recorded %q outside %s", files[0], dir)
	}
	if b, err := exec.Command("ffmpeg", "-v", "error", "-i", files[0], "-f", "null", "-").CombinedOutput(); err != nil || len(b) > 0 {
		t.Errorf("the recording does not decode cleanly: %v\n%s", err, b)
	}
	b, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", files[0]).CombinedOutput()
	if got := strings.Join(strings.Fields(string(b)), ","); err != nil || got != "h264,aac" {
		t.Errorf("recorded streams %q (%v), want h264,aac", got, err)
	}
}

// TestServeRTMPReconnect: ffmpeg publishes H.264 + AAC to `moqbridge
// serve --rtmp`, stops, and publishes again a second later with the same
// stream key (its timestamps from 0 again), within the linger window;
// `moqbridge record`, subscribed over MOQ all along, writes one file:
// judged clean by check-fmp4.sh, holding every frame ffmpeg sent (less at
// most the first GOP), its decode times increasing in both streams across
// the reconnect, the second run right after the first. The relay logs
// that the publisher returned.
func TestServeRTMPReconnect(t *testing.T) {
	testkit.MustHaveTools(t, "ffmpeg", "ffprobe")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	port, rtmpPort := freePort(t), freePort(t)
	relay := startServe(t, ctx, port, "--tcp", "off", "--rtmp", fmt.Sprintf("127.0.0.1:%d", rtmpPort),
		"--rtmp-key", "test", "--rtmp-linger", "3s")
	dir := t.TempDir()
	rec := startProcess(t, ctx, "record", "--wait", "30s", "-o", dir, "--fingerprint", relay.fingerprint,
		fmt.Sprintf("moql://127.0.0.1:%d", port), "live/test")

	const seconds, fps, gop = 4, 30, 30
	push := func() {
		t.Helper()
		out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
			"-re", "-f", "lavfi", "-i", fmt.Sprintf("testsrc=size=320x240:rate=%d", fps), "-f", "lavfi", "-i", "sine=sample_rate=48000",
			"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", fmt.Sprint(gop), "-c:a", "aac",
			"-t", fmt.Sprint(seconds), "-f", "flv", fmt.Sprintf("rtmp://127.0.0.1:%d/live/test", rtmpPort)).CombinedOutput()
		if err != nil {
			t.Fatalf("ffmpeg: %v\n%s", err, out)
		}
	}
	push()
	time.Sleep(time.Second)
	push()

	// The broadcast ends when the linger window passes; so does the
	// recording.
	if code := rec.wait(t, ctx, "record"); code != 0 {
		t.Fatalf("record exited %d:\n%s", code, rec.stderr.String())
	}
	files := strings.Fields(rec.stdout.String())
	if len(files) != 1 {
		t.Fatalf("record wrote %q, want one file continued across the reconnect", files)
	}
	for _, want := range []string{"rtmp: publisher gone; the broadcast waits for it to return", "rtmp: publisher returned; the broadcast continues",
		"rtmp: broadcast ended: its publisher did not return"} {
		if !strings.Contains(relay.stderr.String(), want) {
			t.Errorf("relay log lacks %q:\n%s", want, relay.stderr.String())
		}
	}

	check := filepath.Join("..", "..", "..", "shared", "tools", "check-fmp4.sh")
	if _, err := os.Stat(check); err == nil {
		for _, stream := range []string{"v:0", "a:0"} {
			out, err := exec.CommandContext(ctx, "sh", check, files[0], stream).CombinedOutput()
			t.Logf("check-fmp4.sh %s:\n%s", stream, out)
			// ffprobe 5.1 reports no duration for the first AAC packet of a
			// fragmented file, ffmpeg's own fMP4 output included: one is
			// not a fault of the file.
			badDuration := "bad_duration=0"
			if stream == "a:0" && strings.Contains(string(out), "bad_duration=1 ") {
				badDuration = "bad_duration=1 "
			}
			if err != nil || !strings.Contains(string(out), "non_increasing_dts=0") || !strings.Contains(string(out), "decode=clean") ||
				!strings.Contains(string(out), "first_is_key=yes") || !strings.Contains(string(out), badDuration) ||
				!strings.Contains(string(out), "missing_ts=0") {
				t.Errorf("check-fmp4.sh judges %s %s unclean: %v", files[0], stream, err)
			}
		}
	} else {
		t.Logf("%s not found: decoding with ffmpeg only", check)
		if out, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-i", files[0], "-f", "null", "-").CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("the recording does not decode cleanly: %v\n%s", err, out)
		}
	}

	sent := map[string]int{"v:0": 2 * seconds * fps, "a:0": 2 * seconds * 48000 / 1024}
	perGOP := map[string]int{"v:0": gop, "a:0": 48000 / 1024}
	for _, stream := range []string{"v:0", "a:0"} {
		dts := testkit.PacketTimes(t, ctx, files[0], stream)
		// ffmpeg's AAC encoder adds a frame or two of priming and flushing
		// per run.
		if n := len(dts); n < sent[stream]-perGOP[stream] || n > sent[stream]+6 {
			t.Errorf("%s: %d packets recorded, ffmpeg sent about %d", stream, n, sent[stream])
		}
		var jump float64
		for i := 1; i < len(dts); i++ {
			if dts[i] <= dts[i-1] {
				t.Fatalf("%s packet %d: dts %.3f after %.3f", stream, i, dts[i], dts[i-1])
			}
			jump = max(jump, dts[i]-dts[i-1])
		}
		// The second run follows the first without a hole (and not at 0,
		// nor on top of it): no step longer than a few frames' (the
		// reconnect took about a second).
		if jump > 0.2 {
			t.Errorf("%s: a step of %.3fs between packets, want the second run right after the first", stream, jump)
		}
		t.Logf("%s: %d packets over %.2fs, the reconnect a step of %.3fs", stream, len(dts), dts[len(dts)-1]-dts[0], jump)
	}
}

// TestServeRTMPFlagErrors: RTMP options without --rtmp, an address that
// does not parse, negative caps and lingers, a template without
// placeholders and a key rule without a key are refused before anything
// listens.
func TestServeRTMPFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--rtmp-key", "alice"}, "--rtmp-key needs --rtmp or --rtmps"},
		{[]string{"--rtmp-linger", "1s"}, "--rtmp-linger needs --rtmp or --rtmps"},
		{[]string{"--rtmp", "256.0.0.1:1935"}, "--rtmp: rtmp: listen on 256.0.0.1:1935"},
		{[]string{"--rtmp", "127.0.0.1:0", "--rtmp-max-conns", "-1"}, "--rtmp-max-conns: -1 is negative"},
		{[]string{"--rtmp", "127.0.0.1:0", "--rtmp-max-conns-per-addr", "-1"}, "--rtmp-max-conns-per-addr: -1 is negative"},
		{[]string{"--rtmp", "127.0.0.1:0", "--rtmp-linger", "-1s"}, "--rtmp-linger: -1s is negative"},
		{[]string{"--rtmp", "127.0.0.1:0", "--rtmp-path", "live"}, "has neither {app} nor {key}"},
		{[]string{"--rtmp", "127.0.0.1:0", "--rtmp-key", "live/*="}, "no key after '='"},
		{[]string{"--rtmp", "127.0.0.1:0", "--rtmp-key", "[=k"}, "--rtmp-key: rtmp: key rule \"[\": syntax error in pattern"},
	} {
		cmd := newRootCommand()
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(append([]string{"serve", "--listen", "127.0.0.1:0", "--tcp", "off"}, c.args...))
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %v: %v, want an error with %q", c.args, err, c.want)
		}
	}
}

// TestServeRTMPToken: with auth on, an RTMP publisher presents a token
// made by `moqbridge token` in its stream key, as KEY?jwt=TOKEN (the
// broadcast is the template's path, which the token must allow) or as the
// whole key (the broadcast is the one path the token allows); a token for
// another path, a forged one and none at all are refused and logged with
// the publisher's address, without the token; a --rtmp-key key needs no
// token.
func TestServeRTMPToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	secret := filepath.Join(t.TempDir(), "hmac.key")
	if err := os.WriteFile(secret, []byte(strings.Repeat("0123456789abcdef", 2)), 0o600); err != nil {
		t.Fatal(err)
	}
	token := func(args ...string) string {
		t.Helper()
		var out strings.Builder
		cmd := newRootCommand()
		cmd.SetOut(&out)
		cmd.SetArgs(append([]string{"token", "--secret", secret}, args...))
		if err := cmd.Execute(); err != nil {
			t.Fatalf("token %v: %v", args, err)
		}
		return strings.TrimSpace(out.String())
	}
	alice := token("--put", "live/alice")
	bobRoot := token("--root", "live/bob", "--put", "")

	port, rtmpPort := freePort(t), freePort(t)
	relay := startServe(t, ctx, port, "--tcp", "off", "--auth-secret", secret,
		"--rtmp", fmt.Sprintf("127.0.0.1:%d", rtmpPort), "--rtmp-key", "live/*=s3cret")
	base := fmt.Sprintf("rtmp://127.0.0.1:%d/live", rtmpPort)
	publish := func(key string) error {
		u, err := url.Parse(base + "#" + key)
		if err != nil {
			t.Fatal(err)
		}
		c := &gortmplib.Client{URL: u, Publish: true}
		if err := c.Initialize(ctx); err != nil {
			return err
		}
		c.Close()
		return nil
	}
	for _, c := range []struct {
		key  string
		path string // "" when refused
	}{
		{"alice?jwt=" + alice, "live/alice"},
		{bobRoot, "live/bob"},
		{"s3cret", "live/s3cret"},
		{"static", ""},
		{"carol?jwt=" + alice, ""},
		{"alice?jwt=" + alice[:len(alice)-4] + "AAAA", ""},
		{"alice", ""},
	} {
		err := publish(c.key)
		if c.path != "" && err != nil {
			t.Errorf("key %.20s…: refused: %v", c.key, err)
		}
		if c.path == "" && err == nil {
			t.Errorf("key %.20s…: accepted", c.key)
		}
	}
	waitFor(t, ctx, "the refusals in the log", func() bool {
		return strings.Count(relay.stderr.String(), "rtmp: refused") == 4
	})
	log := relay.stderr.String()
	for _, want := range []string{"path=live/alice", "path=live/bob", "the token does not allow publishing at live/carol",
		"path=live/s3cret", "unauthorized: bad signature", "stream key not allowed, and it carries no token (KEY?jwt=TOKEN)"} {
		if !strings.Contains(log, want) {
			t.Errorf("relay log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, alice) || strings.Contains(log, bobRoot) {
		t.Errorf("a token reached the log:\n%s", log)
	}
}

// TestServeRTMPS: --rtmps serves RTMP over TLS with the relay's
// certificate, whose fingerprint the banner printed; a publisher over TLS
// gets its broadcast.
func TestServeRTMPS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	port, rtmpsPort := freePort(t), freePort(t)
	relay := startServe(t, ctx, port, "--tcp", "off", "--rtmps", fmt.Sprintf("127.0.0.1:%d", rtmpsPort))
	u, _ := url.Parse(fmt.Sprintf("rtmps://127.0.0.1:%d/live#tls", rtmpsPort))
	var seen string
	c := &gortmplib.Client{URL: u, Publish: true, TLSConfig: &tls.Config{
		InsecureSkipVerify: true, // pinned below, as a fingerprint-pinning client does
		VerifyConnection: func(cs tls.ConnectionState) error {
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			seen = hex.EncodeToString(sum[:])
			return nil
		},
	}}
	if err := c.Initialize(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if seen != relay.fingerprint {
		t.Errorf("RTMPS certificate %s, the relay's is %s", seen, relay.fingerprint)
	}
	waitFor(t, ctx, "the publish in the log", func() bool {
		return strings.Contains(relay.stderr.String(), "path=live/tls")
	})
}

// TestPublishRTMPPull: `moqbridge publish rtmp://…` plays a stream that
// ffmpeg serves over RTMP into the relay as live/x (named after the URL),
// where `moqbridge record` records it cleanly.
func TestPublishRTMPPull(t *testing.T) {
	testkit.MustHaveTools(t, "ffmpeg", "ffprobe")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port, rtmpPort := freePort(t), freePort(t)
	relay := startServe(t, ctx, port, "--tcp", "off")
	ffmpeg := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=sample_rate=48000",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30", "-c:a", "aac",
		"-t", "20", "-f", "flv", "-listen", "1", fmt.Sprintf("rtmp://127.0.0.1:%d/live/x", rtmpPort))
	if err := ffmpeg.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = ffmpeg.Process.Kill()
		_ = ffmpeg.Wait()
	}()
	relayURL := fmt.Sprintf("moql://127.0.0.1:%d", port)
	// ffmpeg serves one client (no probing for its port, then): publish
	// retries until it listens.
	pub := startProcess(t, ctx, "publish", "--fingerprint", relay.fingerprint, fmt.Sprintf("rtmp://127.0.0.1:%d/live/x", rtmpPort), relayURL)
	dir := t.TempDir()
	rec := startProcess(t, ctx, "record", "--wait", "20s", "--duration", "6s", "-o", dir, "--fingerprint", relay.fingerprint, relayURL, "live/x")
	if code := rec.wait(t, ctx, "record"); code != 0 {
		t.Fatalf("record exited %d:\n%s\npublish:\n%s", code, rec.stderr.String(), pub.stderr.String())
	}
	files := strings.Fields(rec.stdout.String())
	if len(files) != 1 {
		t.Fatalf("record wrote %q", files)
	}
	if out, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-i", files[0], "-f", "null", "-").CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("the recording does not decode cleanly: %v\n%s", err, out)
	}
	for _, stream := range []string{"v:0", "a:0"} {
		if n := len(testkit.PacketTimes(t, ctx, files[0], stream)); n < 40 {
			t.Errorf("%s: %d packets", stream, n)
		}
	}
	if !strings.Contains(pub.stderr.String(), "rtmp pull: playing") {
		t.Errorf("publish log:\n%s", pub.stderr.String())
	}
}

// TestServeRecord: `serve --record DIR` writes what ffmpeg publishes over
// RTMP to a fragmented MP4 file by itself, in process: one clean file with
// every frame, closed when the broadcast ends; options without --record
// are refused.
func TestServeRecord(t *testing.T) {
	testkit.MustHaveTools(t, "ffmpeg", "ffprobe")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port, rtmpPort := freePort(t), freePort(t)
	dir := t.TempDir()
	relay := startServe(t, ctx, port, "--tcp", "off", "--rtmp", fmt.Sprintf("127.0.0.1:%d", rtmpPort),
		"--rtmp-linger", "0", "--record", dir, "--record-prefix", "live")
	out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=sample_rate=48000",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30", "-c:a", "aac",
		"-t", "4", "-f", "flv", fmt.Sprintf("rtmp://127.0.0.1:%d/live/rec", rtmpPort)).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	waitFor(t, ctx, "the recording to close", func() bool {
		return strings.Contains(relay.stderr.String(), "fmp4: segment closed")
	})
	files, _ := filepath.Glob(filepath.Join(dir, "live", "rec", "*.mp4"))
	if len(files) != 1 {
		t.Fatalf("recorded %v, want one file:\n%s", files, relay.stderr.String())
	}
	for _, stream := range []string{"v:0", "a:0"} {
		c := testkit.CheckFMP4(t, files[0], stream)
		t.Logf("%s: %+v", stream, c)
		if stream == "v:0" && c.Packets != 120 {
			t.Errorf("video: %d packets, ffmpeg sent 120", c.Packets)
		}
	}
	relay.stop(t, syscall.SIGTERM)
	if code := relay.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("serve exited %d:\n%s", code, relay.stderr.String())
	}

	for _, args := range [][]string{{"--record-prefix", "live"}, {"--record", dir, "--record-segment", "-1s"}} {
		cmd := newRootCommand()
		cmd.SetOut(io.Discard)
		cmd.SetArgs(append([]string{"serve", "--listen", "127.0.0.1:0", "--tcp", "off"}, args...))
		if err := cmd.Execute(); err == nil {
			t.Errorf("serve %v: no error", args)
		}
	}
}
