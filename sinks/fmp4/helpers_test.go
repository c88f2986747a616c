package fmp4

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	mfmp4 "github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// clipSample is one sample of a parsed fMP4 file, times in track ticks.
type clipSample struct {
	dts, pts int64
	key      bool
	data     []byte
}

// clipTrack is one track of a parsed fMP4 file.
type clipTrack struct {
	id        int
	timescale uint32
	codec     codecs.Codec
	samples   []clipSample
}

// splitInit returns the ftyp+moov prefix of an fMP4 file and the rest.
func splitInit(t testing.TB, b []byte) (init, rest []byte) {
	t.Helper()
	off := 0
	for off+8 <= len(b) {
		size := int(binary.BigEndian.Uint32(b[off:]))
		typ := string(b[off+4 : off+8])
		if size < 8 || off+size > len(b) {
			t.Fatalf("bad box %q at %d", typ, off)
		}
		off += size
		if typ == "moov" {
			return b[:off], b[off:]
		}
	}
	t.Fatal("no moov")
	return nil, nil
}

// completeBoxes trims b to its whole top-level boxes.
func completeBoxes(b []byte) []byte {
	off := 0
	for off+8 <= len(b) {
		size := int(binary.BigEndian.Uint32(b[off:]))
		if size < 8 || off+size > len(b) {
			break
		}
		off += size
	}
	return b[:off]
}

// parseFMP4 reads an fMP4 file with mediacommon: the init segment and
// every fragment. Keyframes of H.264 tracks come from the NAL unit types
// (ffmpeg's fragments flag them with trun first-sample-flags, which
// mediacommon does not read), of audio tracks from the sample flags.
func parseFMP4(t testing.TB, b []byte) []*clipTrack {
	t.Helper()
	initB, rest := splitInit(t, b)
	var in mfmp4.Init
	if err := in.Unmarshal(bytes.NewReader(initB)); err != nil {
		t.Fatalf("init: %v", err)
	}
	var parts mfmp4.Parts
	if err := parts.Unmarshal(rest); err != nil {
		t.Fatalf("parts: %v", err)
	}
	var out []*clipTrack
	byID := map[int]*clipTrack{}
	for _, it := range in.Tracks {
		ct := &clipTrack{id: it.ID, timescale: it.TimeScale, codec: it.Codec}
		out = append(out, ct)
		byID[it.ID] = ct
	}
	for _, p := range parts {
		for _, pt := range p.Tracks {
			ct := byID[pt.ID]
			if ct == nil {
				t.Fatalf("fragment for unknown track %d", pt.ID)
			}
			dts := int64(pt.BaseTime)
			for _, s := range pt.Samples {
				key := !s.IsNonSyncSample
				if _, ok := ct.codec.(*codecs.H264); ok {
					var au h264.AVCC
					if err := au.Unmarshal(s.Payload); err != nil {
						t.Fatal(err)
					}
					key = h264.IsRandomAccess(au)
				}
				ct.samples = append(ct.samples, clipSample{dts: dts, pts: dts + int64(s.PTSOffset), key: key, data: s.Payload})
				dts += int64(s.Duration)
			}
		}
	}
	return out
}

// sdkTrack builds the sdk track for a parsed track.
func sdkTrack(t testing.TB, ct *clipTrack) sdk.Track {
	t.Helper()
	var (
		tr  sdk.Track
		err error
	)
	switch c := ct.codec.(type) {
	case *codecs.H264:
		var avcC []byte
		if avcC, err = sdk.AVCDecoderConfig([][]byte{c.SPS}, [][]byte{c.PPS}); err == nil {
			tr, err = sdk.H264FromConfig(avcC)
		}
		tr.Name = "video"
	case *codecs.H265:
		tr, err = sdk.H265FromParameterSets(c.VPS, c.SPS, c.PPS)
		tr.Name = "video"
	case *codecs.AV1:
		tr, err = sdk.AV1FromSequenceHeader(c.SequenceHeader)
		tr.Name = "video"
	case *codecs.VP9:
		tr, err = sdk.VP9FromKeyframe(ct.samples[0].data)
		tr.Name = "video"
	case *codecs.MPEG4Audio:
		var asc []byte
		if asc, err = c.Config.Marshal(); err == nil {
			tr, err = sdk.AACFromConfig(asc)
		}
		tr.Name = "audio"
	case *codecs.Opus:
		tr, err = sdk.OpusFromChannels(c.ChannelCount)
		tr.Name = "audio"
	default:
		err = fmt.Errorf("codec %T", c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func readClip(t testing.TB, path string) []*clipTrack {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseFMP4(t, b)
}

// tickTime converts ticks to a duration, rounded to the microsecond as the
// legacy container carries it.
func tickTime(v int64, ts uint32) time.Duration {
	us := (v*1e6 + int64(ts)/2) / int64(ts)
	return time.Duration(us) * time.Microsecond
}

// pipeline is a BroadcastWriter published into an in-process Origin with a
// BroadcastReader on the same path.
type pipeline struct {
	origin *moq.Origin
	pb     *moq.BroadcastWriter // under w, to end the broadcast with an error
	w      *sdk.BroadcastWriter
	r      *sdk.BroadcastReader
}

func newPipeline(t testing.TB, tracks ...sdk.Track) (*pipeline, []*sdk.TrackWriter) {
	t.Helper()
	p := &pipeline{origin: moq.NewOrigin()}
	pb := moq.NewBroadcast()
	p.pb = pb
	var err error
	if p.w, err = sdk.NewBroadcastWriter(pb, sdk.WriterConfig{}); err != nil {
		t.Fatal(err)
	}
	tws, err := p.w.AddTracks(tracks...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.origin.Publish("live/test", pb.Reader()); err != nil {
		t.Fatal(err)
	}
	b, err := p.origin.Consume("live/test")
	if err != nil {
		t.Fatal(err)
	}
	if p.r, err = sdk.NewBroadcastReader(b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.w.Close()
		p.r.Close()
		p.origin.Close()
	})
	return p, tws
}

// interleave returns the frames of the tracks in decode-time order, as
// (track index, frame) pairs.
type tframe struct {
	track int
	f     sdk.Frame
}

func interleave(cts []*clipTrack) []tframe {
	var out []tframe
	idx := make([]int, len(cts))
	for {
		best := -1
		var bestT time.Duration
		for i, ct := range cts {
			if idx[i] >= len(ct.samples) {
				continue
			}
			d := tickTime(ct.samples[idx[i]].dts, ct.timescale)
			if best < 0 || d < bestT {
				best, bestT = i, d
			}
		}
		if best < 0 {
			return out
		}
		s := cts[best].samples[idx[best]]
		idx[best]++
		out = append(out, tframe{best, sdk.Frame{
			PTS:      tickTime(s.pts, cts[best].timescale),
			Keyframe: s.key,
			Payload:  s.data,
		}})
	}
}

// record publishes the clip tracks through the pipeline into a Sink with
// cfg and returns Run's result once the broadcast ended. pace, if set, is
// called before every frame.
func record(t testing.TB, cfg Config, cts []*clipTrack, pace func(i int)) (*Sink, error) {
	t.Helper()
	s := newTestSink(cfg)
	return s, recordInto(t, s, cts, pace, nil)
}

// newTestSink is New with the logger discarding what it is given unless
// cfg has one.
func newTestSink(cfg Config) *Sink {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return New(cfg)
}

// recordInto is one Run of s over a new broadcast of the clip tracks, as
// record does. end, if set, ends the broadcast instead of closing its
// writer; it is called once every frame is written.
func recordInto(t testing.TB, s *Sink, cts []*clipTrack, pace func(i int), end func(*pipeline)) error {
	t.Helper()
	var tracks []sdk.Track
	for _, ct := range cts {
		tracks = append(tracks, sdkTrack(t, ct))
	}
	p, tws := newPipeline(t, tracks...)
	ready := make(chan struct{})
	s.cfg.OnSubscribed = func() { close(ready) }
	started := make(chan struct{})
	s.cfg.OnStart = func() { close(started) }
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, p.r) }()
	select {
	case <-ready:
	case err := <-done:
		return err
	}
	writeFrames(t, started, tws, cts, pace, done)
	if end != nil {
		end(p)
	} else if err := p.w.Close(); err != nil {
		t.Fatal(err)
	}
	return <-done
}

// makeClip encodes a test clip with ffmpeg into dir: H.264 with B-frames
// (GOP 0.5 s at 30 fps) and AAC or Opus, fragmented per frame in ffmpeg's
// cmaf layout.
func makeClip(t testing.TB, dir string, seconds int, audio string) string {
	t.Helper()
	return makeClipCodec(t, dir, seconds, "libx264", audio)
}

// makeClipCodec is makeClip with another video encoder.
func makeClipCodec(t testing.TB, dir string, seconds int, vcodec, audio string) string {
	t.Helper()
	f := dir + "/clip-" + vcodec + "-" + audio + ".mp4"
	if _, err := os.Stat(f); err == nil {
		return f
	}
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc2=size=160x96:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", strconv.Itoa(seconds), "-map", "0:v:0", "-map", "1:a:0",
		"-c:v", vcodec, "-pix_fmt", "yuv420p", "-g", "15", "-keyint_min", "15"}
	switch vcodec {
	case "libx264":
		args = append(args, "-preset", "veryfast", "-sc_threshold", "0", "-bf", "2")
	case "libx265":
		args = append(args, "-preset", "veryfast", "-tag:v", "hvc1", "-x265-params", "log-level=error:bframes=2:scenecut=0")
	case "libvpx-vp9":
		args = append(args, "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k")
	case "libsvtav1":
		args = append(args, "-preset", "12")
	}
	if audio == "opus" {
		args = append(args, "-c:a", "libopus", "-b:a", "64k", "-ac", "2")
	} else {
		args = append(args, "-c:a", "aac", "-b:a", "96k", "-ac", "2")
	}
	args = append(args, "-f", "mp4", "-movflags", "cmaf+separate_moof+delay_moov+skip_trailer+frag_every_frame", f)
	if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	return f
}

// readFFmpegClip reads a clip made by makeClip. mediacommon's fragment
// reader does not apply the trex defaults some of ffmpeg's fragments rely
// on, so the timestamps are taken from ffprobe's packet listing instead.
func readFFmpegClip(t testing.TB, f string) []*clipTrack {
	t.Helper()
	cts := readClip(t, f)
	for i, ct := range cts {
		out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", strconv.Itoa(i),
			"-show_entries", "packet=pts,dts,flags", "-of", "csv=p=0", f).Output()
		if err != nil {
			t.Fatalf("ffprobe %s: %v", f, err)
		}
		var n int
		for line := range strings.Lines(string(out)) {
			fields := strings.Split(strings.TrimSpace(line), ",")
			if len(fields) < 3 {
				continue
			}
			a, b := fields[0], fields[1]
			pts, err1 := strconv.ParseInt(a, 10, 64)
			dts, err2 := strconv.ParseInt(b, 10, 64)
			if err1 != nil || err2 != nil || n >= len(ct.samples) {
				t.Fatalf("ffprobe %s: packet %q", f, line)
			}
			ct.samples[n].pts, ct.samples[n].dts = pts, dts
			ct.samples[n].key = strings.Contains(fields[2], "K")
			n++
		}
		if n != len(ct.samples) {
			t.Fatalf("ffprobe %s: %d packets in stream %d, parsed %d", f, n, i, len(ct.samples))
		}
		// Drop samples whose decode time does not advance (the trailing
		// discard packet of ffmpeg's AAC encoder).
		keep := ct.samples[:1]
		for _, s := range ct.samples[1:] {
			if s.dts > keep[len(keep)-1].dts {
				keep = append(keep, s)
			}
		}
		ct.samples = keep
	}
	return cts
}

// writeFrames writes the frames of cts in decode order. A track reader
// starts at the latest group, so once every track has its first frame
// written it waits until the sink has read them before writing on.
func writeFrames(t testing.TB, started <-chan struct{}, tws []*sdk.TrackWriter, cts []*clipTrack, pace func(int), done chan error) {
	t.Helper()
	seen := make([]bool, len(cts))
	waiting := len(cts)
	for i, tf := range interleave(cts) {
		if pace != nil {
			pace(i)
		}
		if waiting == 0 {
			select {
			case <-started:
				waiting = -1
			case err := <-done:
				done <- err
				return
			case <-time.After(10 * time.Second):
				t.Fatal("the sink did not start")
			}
		}
		if err := tws[tf.track].WriteFrame(tf.f); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 && !seen[tf.track] {
			seen[tf.track] = true
			waiting--
		}
	}
}
