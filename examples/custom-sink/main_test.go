package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
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

// tone is a live source of 100-byte Opus packets, one every 20 ms (40
// kbit/s), for frames packets; then the broadcast ends.
func tone(frames int) sdk.Source {
	return sdk.SourceFunc(func(ctx context.Context, w *sdk.BroadcastWriter) error {
		track, err := sdk.OpusFromChannels(2)
		if err != nil {
			return err
		}
		tw, err := w.AddTrack(track)
		if err != nil {
			return err
		}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		payload := make([]byte, 100)
		payload[0] = 0xfc
		for i := range frames {
			if err := tw.WriteFrame(sdk.Frame{PTS: time.Duration(i) * 20 * time.Millisecond, Keyframe: true, Payload: payload}); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
		return nil
	})
}

// TestPrintsStats: run, pointed at a relay on loopback before the
// broadcast exists, waits for it, prints the frames and the 40 kbit/s of
// its one track while it plays, and returns when it ends.
func TestPrintsStats(t *testing.T) {
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

	var out testkit.LogBuffer
	ran := make(chan error, 1)
	go func() {
		ran <- run(ctx, fmt.Sprintf("http://127.0.0.1:%d/", relay.Addr().Port), "live/tone", 200*time.Millisecond, &out)
	}()

	origin := moq.NewOrigin()
	defer origin.Close()
	pub, err := protocol.Connect(ctx, fmt.Sprintf("moql://127.0.0.1:%d", relay.Addr().Port),
		protocol.WithPublish(origin), protocol.WithFingerprint(relay.Fingerprint()))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := sdk.Publish(ctx, origin, "live/tone", tone(50), sdk.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-ran; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	line := regexp.MustCompile(`^live/tone audio0 opus 48000 Hz: (\d+) frames, ([0-9.]+) kbit/s$`)
	var counts []int
	for _, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unexpected line %q in\n%s", l, out.String())
		}
		n, _ := strconv.Atoi(m[1])
		counts = append(counts, n)
		if n > 1 && m[2] != "40.0" {
			t.Errorf("%q: want 40.0 kbit/s", l)
		}
	}
	// A line every 200 ms of the second it plays, the counts growing, and
	// a last one at the end with most of the 50 frames (the subscription
	// starts at the group being sent when it is made).
	t.Log(out.String())
	last := counts[len(counts)-1]
	if len(counts) < 3 || counts[0] > counts[len(counts)-2] || last < 25 || last > 50 {
		t.Errorf("frame counts %v", counts)
	}
}
