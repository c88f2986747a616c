package rtmp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/sdk"
)

// frame is a test frame of track i at t milliseconds.
func frame(i int, ms int, key bool, size int) item {
	return item{track: i, key: key, f: sdk.Frame{PTS: time.Duration(ms) * time.Millisecond, Keyframe: key, Payload: make([]byte, size)}}
}

func popAll(t *testing.T, q *queue) []int {
	t.Helper()
	var out []int
	for {
		q.mu.Lock()
		n := q.len()
		q.mu.Unlock()
		if n == 0 {
			return out
		}
		it, err := q.pop(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, int(it.f.PTS/time.Millisecond))
	}
}

// TestQueue: without a connection the queue keeps the current GOP from
// its keyframe; with one it drops, once full, up to the next keyframe
// that fits, which is marked as resuming; going offline empties it; after
// close it hands out what is left.
func TestQueue(t *testing.T) {
	q := newQueue(1000, 100*time.Millisecond)
	q.push(frame(0, 0, false, 10)) // no keyframe yet
	q.push(frame(0, 10, true, 10))
	q.push(frame(0, 20, false, 10))
	q.push(frame(0, 30, true, 10)) // a newer GOP replaces it
	q.push(frame(0, 40, false, 10))
	if got := popAll(t, q); !equal(got, []int{30, 40}) {
		t.Fatalf("offline queue gave %v, want the latest GOP [30 40]", got)
	}
	if _, _, offline := q.counters(); offline != 3 {
		t.Errorf("offline %d, want 3", offline)
	}

	q = newQueue(1000, 100*time.Millisecond)
	q.setLive(true)
	q.push(frame(0, 0, true, 10))
	if _, err := q.pop(context.Background()); err != nil { // the connection started
		t.Fatal(err)
	}
	for ms := 10; ms <= 110; ms += 10 {
		q.push(frame(0, ms, false, 10))
	}
	if !q.push(frame(0, 120, false, 10)) { // 110 ms after the oldest queued: full
		t.Fatal("a frame beyond the span was not dropped")
	}
	q.push(frame(0, 130, false, 10)) // dropped: waiting for a keyframe
	q.push(frame(0, 140, true, 10))  // does not fit either: another GOP
	if got := popAll(t, q); len(got) != 11 || got[10] != 110 {
		t.Fatalf("live queue gave %v", got)
	}
	q.push(frame(0, 150, false, 10))
	q.push(frame(0, 160, true, 10))
	q.push(frame(0, 170, false, 10))
	it, _ := q.pop(context.Background())
	if !it.key || !it.gap || it.f.PTS != 160*time.Millisecond {
		t.Fatalf("after the drop: %+v, want the keyframe at 160 ms marked as a gap", it)
	}
	if frames, gops, _ := q.counters(); frames != 4 || gops != 2 {
		t.Errorf("dropped %d frames, %d GOPs; want 4 and 2", frames, gops)
	}
	q.setLive(false)
	if got := popAll(t, q); got != nil {
		t.Errorf("offline after a connection: %v left", got)
	}
	q.push(frame(0, 200, true, 2000)) // bigger than the byte bound: kept alone
	q.close()
	if it, err := q.pop(context.Background()); err != nil || it.f.PTS != 200*time.Millisecond {
		t.Fatalf("after close: %v %v", it.f.PTS, err)
	}
	if _, err := q.pop(context.Background()); !errors.Is(err, errQueueClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// TestQueueReusesItsArray: a queue that never empties does not grow.
func TestQueueReusesItsArray(t *testing.T) {
	q := newQueue(1<<20, time.Hour)
	q.setLive(true)
	q.push(frame(0, 0, true, 1))
	for ms := 1; ms < 10000; ms++ {
		q.push(frame(0, ms, false, 1))
		if _, err := q.pop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if c := cap(q.items); c > 16 {
		t.Errorf("the queue's array grew to %d items holding %d", c, q.len())
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPick: the largest video and an AAC track are chosen; a broadcast
// with nothing that can be sent is a permanent error naming its codecs.
func TestPick(t *testing.T) {
	s, err := New(Config{URL: "rtmp://h/app/k", Logger: (&testkit.LogBuffer{}).Logger()})
	if err != nil {
		t.Fatal(err)
	}
	vp9 := func(name string, w, h int) sdk.Track {
		return sdk.Track{Name: name, Kind: sdk.KindVideo, Codec: "vp09.00.10.08", Width: w, Height: h}
	}
	opus, _ := sdk.OpusFromChannels(2)
	opus.Name = "opus"
	aac, _ := sdk.AACFromConfig([]byte{0x11, 0x90})
	aac.Name = "aac"
	got, err := s.pick(s.log, []sdk.Track{vp9("sd", 320, 180), vp9("hd", 1280, 720), opus, aac})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].t.Name != "hd" || got[1].t.Name != "aac" {
		t.Fatalf("picked %v, %v", got[0].t.Name, got[len(got)-1].t.Name)
	}
	s.cfg.Audio = "opus"
	if got, err = s.pick(s.log, []sdk.Track{opus, aac}); err != nil || len(got) != 1 || got[0].t.Name != "opus" {
		t.Fatalf("--audio opus: %v", err)
	}
	s.cfg.Audio = ""
	_, err = s.pick(s.log, []sdk.Track{
		{Name: "v", Kind: sdk.KindVideo, Codec: "vp8"},
		{Name: "a", Kind: sdk.KindAudio, Codec: "mp4a.40.2", SampleRate: 48000, Channels: 2},
	})
	if !sdk.IsPermanent(err) || err.Error() != "rtmp: no track can be sent (codecs: vp8, mp4a.40.2; supported: H.264, H.265, AV1, VP9, AAC, Opus)" {
		t.Fatalf("nothing to send: %v", err)
	}
}

// TestBackoff: zero fields take sdk.DefaultBackoff; the waits double from
// Min up to Max, each within ±Jitter of itself.
func TestBackoff(t *testing.T) {
	s, _ := New(Config{URL: "rtmp://h/app/k"})
	if b := s.cfg.Backoff; b.Min != 500*time.Millisecond || b.Max != 10*time.Second || b.Jitter != 0.5 {
		t.Errorf("defaults %+v", b)
	}
	s, _ = New(Config{URL: "rtmp://h/app/k", Backoff: sdk.Backoff{Min: 100 * time.Millisecond, Max: time.Second}})
	for n, nominal := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		nominal *= time.Millisecond
		for range 20 {
			if d := s.cfg.Backoff.Wait(n); d < nominal/2 || d > nominal*3/2 {
				t.Fatalf("retry %d: %v, want %v ± 50 %%", n, d, nominal)
			}
		}
	}
}

// chunkConn returns its data a few bytes per Read.
type chunkConn struct {
	net.Conn
	data []byte
	n    int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), c.n, len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// TestFCPublishPatch: ffmpeg's bare onFCPublish is replaced by a command
// of the same length however the reads split it; other bytes pass as
// they are.
func TestFCPublishPatch(t *testing.T) {
	in := append(append([]byte("head\x02\x00\x0b"), fcPublishBody...), "tail\x02\x00"...)
	want := append(append([]byte("head\x02\x00\x0b"), fcPublishFix...), "tail\x02\x00"...)
	for n := 1; n <= len(in); n++ {
		c := &fcPublishConn{Conn: &chunkConn{data: bytes.Clone(in), n: n}}
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("reads of %d bytes: %q (%v), want %q", n, got, err, want)
		}
	}
}

// TestNewBadURL: a URL that is not an RTMP publish URL is a permanent
// error, which does not show the stream key.
func TestNewBadURL(t *testing.T) {
	for _, bad := range []string{"http://h/app/k", "rtmp://h/app", "rtmp:///app/k", "rtmp://h:0/app/k"} {
		_, err := New(Config{URL: bad})
		if !sdk.IsPermanent(err) {
			t.Errorf("New(%s): %v, want a permanent error", bad, err)
		}
		if err != nil && bytes.Contains([]byte(err.Error()), []byte("/k")) {
			t.Errorf("%s: the error shows the key: %v", bad, err)
		}
	}
}
