package rtmp

import (
	"testing"
	"time"
)

const ms = time.Millisecond

// TestClock: the broadcast clock starts at 0, crosses the 32-bit
// millisecond wrap without a jump, follows the small backward steps of
// interleaved tracks, and rebases after an encoder restart (a jump back)
// or a leap forward so that it never goes back.
func TestClock(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []time.Duration
		want []time.Duration
	}{
		{"starts at 0", []time.Duration{5000 * ms, 5033 * ms, 5066 * ms}, []time.Duration{0, 33 * ms, 66 * ms}},
		{"wraps", []time.Duration{rtmpPeriod - 40*ms, rtmpPeriod - 7*ms, 26 * ms, 59 * ms}, []time.Duration{0, 33 * ms, 66 * ms, 99 * ms}},
		{"interleaved", []time.Duration{100 * ms, 90 * ms, 133 * ms, 111 * ms}, []time.Duration{0, 0, 33 * ms, 11 * ms}},
		{"restart", []time.Duration{60000 * ms, 60033 * ms, 0, 33 * ms}, []time.Duration{0, 33 * ms, 66 * ms, 99 * ms}},
		{"leap", []time.Duration{0, 20 * ms, 3_600_000 * ms, 3_600_020 * ms}, []time.Duration{0, 20 * ms, 40 * ms, 60 * ms}},
		{"leap across the wrap", []time.Duration{rtmpPeriod - 10*ms, 20 * time.Second}, []time.Duration{0, 10 * ms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c clock
			for i, raw := range tc.raw {
				if got := c.dts(raw); got != tc.want[i] {
					t.Errorf("timestamp %d (%v): %v, want %v", i, raw, got, tc.want[i])
				}
			}
		})
	}
}

// TestTrackClock: a track's decode times never go back on the shared
// clock, and the composition offset is kept.
func TestTrackClock(t *testing.T) {
	var c clock
	video, audio := &trackClock{c: &c}, &trackClock{c: &c}
	check := func(tc *trackClock, pts, dts, wantPTS, wantDTS time.Duration) {
		t.Helper()
		if p, d := tc.times(pts, dts); p != wantPTS || d != wantDTS {
			t.Errorf("times(%v, %v) = %v, %v; want %v, %v", pts, dts, p, d, wantPTS, wantDTS)
		}
	}
	check(video, 1066*ms, 1000*ms, 66*ms, 0)
	check(audio, 1010*ms, 1010*ms, 10*ms, 10*ms)
	check(video, 1133*ms, 1033*ms, 133*ms, 33*ms)
	check(audio, 990*ms, 990*ms, 10*ms, 10*ms) // from before the track's last: held there
	check(video, 1000*ms, 1066*ms, 0, 66*ms)   // a negative composition offset
	check(video, 1200*ms, 1100*ms, 200*ms, 100*ms)
}

// TestTrackClockSnap: with a known frame rate, millisecond timestamps
// within 1.5 ms of the frame grid are snapped onto it (anchored at the
// track's first decode time); others are kept.
func TestTrackClockSnap(t *testing.T) {
	var c clock
	video := &trackClock{c: &c, fps: 30}
	const frame = time.Second / 30
	for i, raw := range []time.Duration{5000, 5033, 5067, 5100, 5133, 5167} {
		p, d := video.times((raw+67)*ms, raw*ms)    // B-frames: shown two frames later
		want := time.Duration(i) * time.Second / 30 // to the nanosecond
		near := func(a, b time.Duration) bool { return a-b <= 2 && b-a <= 2 }
		if !near(d, want) || !near(p, want+2*frame) {
			t.Errorf("frame %d: %v, %v; want %v, %v", i, p, d, want+2*frame, want)
		}
	}
	if _, d := video.times(5210*ms, 5210*ms); d != 210*ms { // 3.3 ms off the grid: variable frame rate
		t.Errorf("off the grid: %v, want 210ms", d)
	}
}
