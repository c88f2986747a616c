package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

// TestRTPOut: a relay in process, a publish of an H.264 + Opus clip, and
// rtp-out to loopback ports. A first rtp-out, its arguments in the order
// the issue writes them (BROADCAST URL), prints the SDP on stdout; ffmpeg
// opens it and binds the ports; a second rtp-out, writing the same SDP to
// a file, sends to it; ffmpeg copies three seconds of both tracks into a
// file that decodes cleanly.
func TestRTPOut(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, url, fp := startRelay(t, ctx)
	publishFile(t, ctx, url, fp, "test/rtp", "h264_opus.mp4")
	port := testkit.FreeUDPPorts(t, 4)
	dest := fmt.Sprintf("127.0.0.1:%d", port)
	dir := t.TempDir()

	code, stdout, stderr := runCLI(t, ctx, "rtp-out", "--fingerprint", fp, "--duration", "1s", "--dest", dest, "test/rtp", url)
	if code != 0 {
		t.Fatalf("rtp-out exited %d: %s", code, stderr)
	}
	for _, want := range []string{"v=0\r\n", fmt.Sprintf("m=video %d RTP/AVP 96\r\n", port), fmt.Sprintf("m=audio %d RTP/AVP 97\r\n", port+2),
		"c=IN IP4 127.0.0.1\r\n", "a=rtpmap:96 H264/90000\r\n", "a=rtpmap:97 opus/48000/2\r\n"} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("the SDP on stdout lacks %q:\n%s", want, stdout)
		}
	}
	sdp := filepath.Join(dir, "in.sdp")
	if err := os.WriteFile(sdp, []byte(stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.mkv")
	var ffErr testkit.LogBuffer
	ff := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-v", "error", "-nostdin", "-protocol_whitelist", "file,udp,rtp",
		"-i", sdp, "-t", "3", "-c", "copy", "-y", out)
	ff.Stderr = &ffErr
	if err := ff.Start(); err != nil {
		t.Fatal(err)
	}
	ffDone := make(chan error, 1)
	go func() { ffDone <- ff.Wait() }()
	defer func() {
		_ = ff.Process.Kill()
		<-ffDone
	}()
	if err := testkit.WaitUDPBound(ctx, port, port+2); err != nil {
		t.Fatal(err)
	}

	outSDP := filepath.Join(dir, "out.sdp")
	type result struct {
		code   int
		stderr string
	}
	sent := make(chan result, 1)
	go func() {
		code, _, stderr := runCLI(t, ctx, "rtp-out", "--fingerprint", fp, "--duration", "6s", "--dest", dest, "--sdp", outSDP, url, "test/rtp")
		sent <- result{code, stderr}
	}()
	select {
	case err := <-ffDone:
		ffDone <- err
		if err != nil || strings.TrimSpace(ffErr.String()) != "" {
			t.Fatalf("ffmpeg: %v\n%s", err, ffErr.String())
		}
	case <-ctx.Done():
		t.Fatal("ffmpeg did not finish")
	}
	if r := <-sent; r.code != 0 {
		t.Fatalf("rtp-out exited %d: %s", r.code, r.stderr)
	}
	written, err := os.ReadFile(outSDP)
	if err != nil || !strings.Contains(string(written), fmt.Sprintf("m=video %d RTP/AVP 96\r\n", port)) {
		t.Errorf("--sdp file: %v\n%s", err, written)
	}

	b, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", out).CombinedOutput()
	if got := strings.Join(strings.Fields(string(b)), ","); err != nil || got != "h264,opus" {
		t.Fatalf("streams %q (%v), want h264,opus", got, err)
	}
	if b, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-xerror", "-i", out, "-f", "null", "-").CombinedOutput(); err != nil || len(bytes.TrimSpace(b)) > 0 {
		t.Errorf("%s does not decode cleanly: %v\n%s", out, err, b)
	}
	for _, stream := range []string{"v:0", "a:0"} {
		if dts := testkit.PacketTimes(t, ctx, out, stream); len(dts) < 2 || dts[len(dts)-1]-dts[0] < 2.5 {
			t.Errorf("%s: %d packets, want 3 s", stream, len(dts))
		}
	}
}

// TestRTPOutRefusesBadValues: a missing or bad --dest and bad flag values
// are refused before connecting, with a message that names the problem.
func TestRTPOutRefusesBadValues(t *testing.T) {
	relay := "moql://127.0.0.1:9"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{relay}, `moqbridge: rtp-out needs URL and BROADCAST, got 1 argument (see "moqbridge rtp-out --help")`},
		{[]string{relay, "live"}, `moqbridge: rtp-out needs --dest HOST:PORT, where the RTP goes (e.g. --dest 127.0.0.1:5004)`},
		{[]string{"--dest", "127.0.0.1", relay, "live"},
			`moqbridge: --dest: rtp: destination "127.0.0.1": want HOST:PORT, e.g. 127.0.0.1:5004, 239.0.0.1:5004 or [::1]:5004`},
		{[]string{"--dest", "127.0.0.1:0", relay, "live"},
			`moqbridge: --dest: rtp: destination "127.0.0.1:0": port "0" is not a number from 1 to 65535`},
		{[]string{"--dest", "0.0.0.0:5004", "live", relay},
			`moqbridge: --dest: rtp: destination "0.0.0.0:5004": 0.0.0.0 is not an address to send to`},
		{[]string{"--dest", "127.0.0.1:5004", "--mtu", "64", relay, "live"},
			`moqbridge: --mtu 64: want 128 to 65507 bytes (the largest UDP payload, RTP header included)`},
		{[]string{"--dest", "127.0.0.1:5004", "--ttl", "0", relay, "live"}, `moqbridge: --ttl 0: want 1 to 255`},
		{[]string{"--dest", "127.0.0.1:5004", "--max-delay", "-1s", relay, "live"},
			`moqbridge: --max-delay -1s: must not be negative (0 turns it off)`},
		{[]string{"--dest", "127.0.0.1:5004", "localhost:4443", "live"},
			`moqbridge: "localhost:4443" is not a relay URL: use moql://HOST:PORT (QUIC), https://HOST:PORT/ (WebTransport), ws:// or wss:// (WebSocket), e.g. moql://localhost:4443, or http://localhost:4443/ for a development relay (moqbridge serve)`},
	} {
		wantError(t, tc.want, append([]string{"rtp-out"}, tc.args...)...)
	}
}
