package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestServeRTMP: `moqbridge serve --rtmp` ingests what ffmpeg publishes
// over RTMP into its relay, where `moqbridge record` finds the broadcast
// live/test over MOQ and records its H.264 and AAC tracks.
func TestServeRTMP(t *testing.T) {
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("MOQBRIDGE_INTEROP") == "require" {
				t.Fatalf("%s not found and MOQBRIDGE_INTEROP=require", tool)
			}
			t.Skipf("%s not found; set MOQBRIDGE_INTEROP=require to make this a failure", tool)
		}
	}
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

// TestServeRTMPFlagErrors: --rtmp-key needs --rtmp, with auth on --rtmp
// needs stream keys (RTMP publishers carry no token), and the connection
// cap is not negative.
func TestServeRTMPFlagErrors(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "hmac.key")
	if err := os.WriteFile(secret, []byte(strings.Repeat("0123456789abcdef", 2)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--rtmp-key", "alice"},
		{"--rtmp", "127.0.0.1:0", "--auth-secret", secret},
		{"--rtmp", "256.0.0.1:1935"},
		{"--rtmp", "127.0.0.1:0", "--rtmp-max-conns", "-1"},
	} {
		cmd := newRootCommand()
		cmd.SetOut(io.Discard)
		cmd.SetArgs(append([]string{"serve", "--listen", "127.0.0.1:0", "--tcp", "off"}, args...))
		if err := cmd.Execute(); err == nil {
			t.Errorf("serve %v: no error", args)
		}
	}
}
