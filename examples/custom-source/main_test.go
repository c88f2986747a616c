package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestPublishesPattern: run publishes a 160x96 H.264 track to a relay on
// loopback (through its http:// development URL), a subscriber of the
// relay gets it with one keyframe every 100 ms, and the frames decode
// (with ffmpeg, when it is there) to the colour bars and the square.
func TestPublishesPattern(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	relay, err := protocol.NewServer(protocol.ServerConfig{Addr: "127.0.0.1:0", TCP: protocol.TCPHTTP})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- relay.Serve(ctx) }()
	defer func() {
		relay.Close()
		<-served
	}()

	pubCtx, stopPublishing := context.WithCancel(ctx)
	published := make(chan error, 1)
	go func() {
		published <- run(pubCtx, fmt.Sprintf("http://127.0.0.1:%d/", relay.Addr().Port), "pattern")
	}()

	local := moq.NewOrigin()
	defer local.Close()
	sub, err := protocol.Connect(ctx, fmt.Sprintf("moql://127.0.0.1:%d", relay.Addr().Port),
		protocol.WithConsume(local), protocol.WithFingerprint(relay.Fingerprint()))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	var frames []sdk.Frame
	err = sdk.Consume(ctx, local, "pattern", sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
		if err := r.WaitCatalog(ctx); err != nil {
			return err
		}
		tracks := r.Tracks()
		if len(tracks) != 1 || tracks[0].Codec != "avc1.42c01e" || tracks[0].Width != 160 || tracks[0].Height != 96 {
			return fmt.Errorf("catalog: %+v", tracks)
		}
		tr, err := r.Subscribe(tracks[0].Name)
		if err != nil {
			return err
		}
		defer tr.Close()
		for len(frames) < 5 {
			f, err := tr.ReadFrame(ctx)
			if err != nil {
				return err
			}
			frames = append(frames, f)
		}
		return nil
	}), sdk.ConsumeOptions{Wait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stopPublishing()
	if err := <-published; err != nil {
		t.Errorf("run: %v", err)
	}

	for i, f := range frames {
		if !f.Keyframe || (i > 0 && f.PTS-frames[i-1].PTS != 100*time.Millisecond) {
			t.Errorf("frame %d: keyframe %v at %v, previous at %v", i, f.Keyframe, f.PTS, frames[max(i-1, 0)].PTS)
		}
	}
	if testkit.CheckWith("ffmpeg") {
		checkDecodes(t, ctx, frames)
	}
}

// checkDecodes decodes the frames with ffmpeg and looks at the luma of
// the first bar (white, 180), the last (black, 16) and the square (235).
func checkDecodes(t *testing.T, ctx context.Context, frames []sdk.Frame) {
	sps, pps := parameterSets(160, 96)
	var annexB bytes.Buffer
	for _, nal := range [][]byte{sps, pps} {
		annexB.Write([]byte{0, 0, 0, 1})
		annexB.Write(nal)
	}
	for _, f := range frames {
		annexB.Write([]byte{0, 0, 0, 1})
		annexB.Write(f.Payload[4:]) // one NAL unit after its 4-byte length
	}
	file := filepath.Join(t.TempDir(), "pattern.h264")
	if err := os.WriteFile(file, annexB.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-xerror", "-f", "h264", "-i", file,
		"-f", "rawvideo", "-pix_fmt", "yuv420p", "-").Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	const frameSize = 160 * 96 * 3 / 2
	if len(out) != len(frames)*frameSize {
		t.Fatalf("ffmpeg decoded %d bytes, want %d frames of 160x96", len(out), len(frames))
	}
	luma := func(x, y int) byte { return out[y*160+x] } // of the first frame
	n := int(frames[0].PTS / (100 * time.Millisecond))
	square := n * 4 % (160 - 32) // the square's left edge in the first frame, as draw places it
	if luma(2, 2) != 180 || luma(157, 2) != 16 || luma(square+16, 48) != 235 {
		t.Errorf("decoded luma: bar %d, bar %d, square %d; want 180, 16, 235", luma(2, 2), luma(157, 2), luma(square+16, 48))
	}
}
