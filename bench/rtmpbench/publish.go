package rtmpbench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
)

// pubOptions tune publishRTMP.
type pubOptions struct {
	// videoOnly leaves the audio track out.
	videoOnly bool
	// length is how much media to send, the stream looped as often as
	// needed (each loop continues the timestamps); 0: the stream once.
	length time.Duration
	// speed is the pace relative to real time (0: 1, real time).
	speed float64
	// sent, if set, is called with every video access unit just before
	// it is written: its position (loop and index in the stream), its
	// timestamps as sent, and the time.
	sent func(loop, index int, pts, dts time.Duration, at time.Time)
	// late, if set, is told how late each write started.
	late *maxDuration
}

// pubStats is what a publisher did.
type pubStats struct {
	video, audio int           // access units written
	bytes        uint64        // sent on the connection, RTMP framing included
	maxLate      time.Duration // the most a write started after its due time
}

// publishRTMP connects to rtmp://addr/<app> with stream key key and
// publishes m (H.264, AAC) as an RTMP client, paced on the decode
// timestamps, until opt.length of media was sent or ctx ends (nil then).
func publishRTMP(ctx context.Context, addr, app, key string, m *media, opt pubOptions) (st pubStats, err error) {
	u, err := url.Parse("rtmp://" + addr + "/" + app + "#" + key)
	if err != nil {
		return st, err
	}
	c := &gortmplib.Client{URL: u, Publish: true}
	dialCtx, cancel := context.WithTimeout(ctx, processTimeout)
	err = c.Initialize(dialCtx)
	cancel()
	if err != nil {
		return st, fmt.Errorf("rtmp connect %s: %w", u, err)
	}
	nc := c.NetConn()
	defer closeRTMP(nc)
	// Ending ctx unblocks a write; the connection is then closed as an
	// encoder closes it.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetWriteDeadline(time.Now()) })
	defer stop()
	video := &gortmplib.Track{Codec: &codecs.H264{SPS: m.sps, PPS: m.pps}}
	tracks := []*gortmplib.Track{video}
	var audio *gortmplib.Track
	if m.asc != nil && !opt.videoOnly {
		audio = &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: m.asc}}
		tracks = append(tracks, audio)
	}
	w := &gortmplib.Writer{Conn: c, Tracks: tracks}
	if err := w.Initialize(); err != nil {
		return st, fmt.Errorf("rtmp publish %s: %w", u, err)
	}
	length := opt.length
	if length <= 0 {
		length = m.duration
	}
	speed := opt.speed
	if speed <= 0 {
		speed = 1
	}
	start := time.Now()
	defer func() { st.bytes = c.BytesSent() }()

	for loop := 0; ; loop++ {
		offset := time.Duration(loop) * m.duration
		for i := range m.samples {
			s := &m.samples[i]
			dts, pts := offset+s.dts, offset+s.pts
			if dts > length-time.Millisecond { // RTMP times are milliseconds
				return st, nil
			}
			due := start.Add(time.Duration(float64(dts) / speed))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return st, nil
				}
			} else {
				st.maxLate = max(st.maxLate, -d)
				opt.late.observe(-d)
			}
			if s.video {
				if opt.sent != nil {
					opt.sent(loop, i, pts, dts, time.Now())
				}
				err = w.WriteH264(video, pts, dts, s.nalus)
				st.video++
			} else {
				if audio == nil {
					continue
				}
				err = w.WriteMPEG4Audio(audio, pts, s.aac)
				st.audio++
			}
			if err != nil {
				if ctx.Err() != nil {
					return st, nil
				}
				return st, fmt.Errorf("rtmp write at %v: %w", dts, err)
			}
		}
	}
}

// closeRTMP closes a publisher's connection as an encoder does: it ends
// its side (FIN) and reads what the server still sends (acknowledgements
// the publisher never read) until the server closes too, so that the
// close is orderly rather than a reset; at most a second.
func closeRTMP(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		_ = nc.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, nc)
	}
	_ = nc.Close()
}

// maxDuration is the largest duration observed since the last reset,
// safe for concurrent use; a nil one ignores observations.
type maxDuration struct{ v atomic.Int64 }

func (m *maxDuration) observe(d time.Duration) {
	if m == nil {
		return
	}
	for {
		cur := m.v.Load()
		if int64(d) <= cur || m.v.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// reset returns the maximum and starts again from 0.
func (m *maxDuration) reset() time.Duration { return time.Duration(m.v.Swap(0)) }
