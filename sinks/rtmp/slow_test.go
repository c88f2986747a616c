//go:build unix

package rtmp

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testclip"
	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// smallBuffers makes sockets with small kernel buffers, so that a receiver
// that stops reading holds up the sender's writes within a second.
func smallBuffers(opt int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 4096) })
		if err != nil {
			return err
		}
		return serr
	}
}

// TestSlowReceiver: the receiver stops reading for 3 s. The sink's writes
// block, its queue fills and whole GOPs are dropped (counted and logged),
// while its reading of the broadcast goes on at the broadcast's pace
// without skipping a group; once the receiver reads again, what it gets
// after the gap starts at a keyframe.
func TestSlowReceiver(t *testing.T) {
	ctx := testkit.Context(t, 40*time.Second)
	origin := testclip.Publish(t, testclip.Path("h264_aac_bframes.mp4"), "live/x")
	srv := startServer(t, serverOptions{listen: &net.ListenConfig{Control: smallBuffers(syscall.SO_RCVBUF)}})
	lb := &testkit.LogBuffer{}
	sink := newSink(t, srv.url("slow"), lb, Config{
		MaxQueueDelay: 500 * time.Millisecond,
		WriteTimeout:  10 * time.Second,
		DialContext:   (&net.Dialer{Control: smallBuffers(syscall.SO_SNDBUF)}).DialContext,
	})
	b, err := sdk.WaitBroadcast(ctx, origin, "live/x", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sdk.NewBroadcastReaderFrom(b, moq.FromOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sink.Run(runCtx, r) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	conn := srv.waitConn(t, ctx, 1)
	lb.WaitLogContext(t, ctx, "rtmp: publishing")
	time.Sleep(time.Second)
	read := func() uint64 {
		var n uint64
		for _, st := range r.Stats() {
			n += st.Frames
		}
		return n
	}
	before := read()
	srv.gate.shut()
	shutAt := time.Now()
	time.Sleep(3 * time.Second)
	during := read() - before
	srv.gate.open()
	lb.WaitLogContext(t, ctx, "rtmp: the server does not keep up: dropping frames up to the next keyframe")
	time.Sleep(2 * time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	done <- nil

	// The sink read on at the broadcast's pace (30 video + 47 audio
	// frames a second) and skipped nothing.
	if during < 150 {
		t.Errorf("the sink read %d frames in the 3 s the receiver did not read", during)
	}
	for name, st := range r.Stats() {
		if st.Skipped != 0 {
			t.Errorf("track %s: %d groups skipped: the sink's reading fell behind", name, st.Skipped)
		}
	}
	st := sink.Stats()
	t.Logf("stats %+v", st)
	if st.DroppedGOPs == 0 || st.DroppedFrames == 0 || st.Connections != 1 {
		t.Errorf("stats %+v, want GOPs dropped on one connection", st)
	}

	// What arrived: decode times increase, and after the gap left by the
	// dropped GOPs the video goes on at a keyframe.
	_, frames := conn.snapshot()
	var video []rxFrame
	for _, f := range frames {
		if f.video {
			video = append(video, f)
		}
	}
	checkTimes(t, video)
	gaps := 0
	for i := 1; i < len(video); i++ {
		if video[i].dts-video[i-1].dts > 300*time.Millisecond {
			gaps++
			if !video[i].key {
				t.Errorf("video frame %d after a gap of %v is not a keyframe", i, video[i].dts-video[i-1].dts)
				for j := max(0, i-5); j < min(len(video), i+5); j++ {
					t.Logf("frame %d: dts %v pts %v key %v at %v", j, video[j].dts, video[j].pts, video[j].key, video[j].at.Sub(shutAt))
				}
			}
		}
	}
	if gaps == 0 {
		t.Errorf("no gap in the %d video frames received", len(video))
	}
	last := video[len(video)-1]
	if !last.at.After(shutAt.Add(3 * time.Second)) {
		t.Errorf("nothing received after the receiver read again")
	}
}
