package rtmp

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/moqbridge/moqbridge/internal/testclip"
	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// clipPart is a broadcast to republish for a while.
type clipPart struct {
	origin *moq.Origin
	path   string
	span   time.Duration // 0: until the end
}

// annexBSource republishes the H.264 tracks of the broadcasts of parts,
// one after the other (each from a keyframe, timestamps going on), as one
// track without a DecoderConfig: Annex B access units with the parameter
// sets, and an access unit delimiter, in-band before every keyframe (what
// the browser publisher sends).
func annexBSource(parts ...clipPart) sdk.Source {
	return sdk.SourceFunc(func(ctx context.Context, w *sdk.BroadcastWriter) error {
		var tw *sdk.TrackWriter
		var offset, last time.Duration
		for _, part := range parts {
			b, err := sdk.WaitBroadcast(ctx, part.origin, part.path, 10*time.Second)
			if err != nil {
				return err
			}
			r, err := sdk.NewBroadcastReader(b)
			if err != nil {
				return err
			}
			defer r.Close()
			if err := r.WaitTracks(ctx, 100*time.Millisecond); err != nil {
				return err
			}
			src := r.Tracks()[0]
			cfg, err := sdk.ParseAVCConfig(src.DecoderConfig)
			if err != nil {
				return err
			}
			params := append(append([][]byte(nil), cfg.SPS...), cfg.PPS...)
			tr, err := r.Subscribe(src.Name)
			if err != nil {
				return err
			}
			defer tr.Close()
			if tw == nil {
				tw, err = w.AddTrack(sdk.Track{Name: "video/hd", Kind: sdk.KindVideo, Codec: strings.Replace(src.Codec, "avc1", "avc3", 1),
					Width: src.Width, Height: src.Height})
				if err != nil {
					return err
				}
			}
			first := true
			var begin time.Duration
			for {
				f, err := tr.ReadFrame(ctx)
				if err != nil {
					return nil
				}
				if first {
					if !f.Keyframe {
						continue
					}
					first, begin = false, f.PTS
					offset = last + 33*time.Millisecond - f.PTS
				}
				if part.span > 0 && f.Keyframe && f.PTS-begin >= part.span {
					break
				}
				nalus, err := sdk.SplitAVCC(f.Payload, cfg.NALLengthSize)
				if err != nil {
					return err
				}
				if f.Keyframe {
					nalus = append(append([][]byte{{0x09, 0xf0}}, params...), nalus...)
				}
				f.Payload = sdk.JoinAnnexB(nalus)
				f.PTS += offset
				last = max(last, f.PTS)
				if err := tw.WriteFrame(f); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// TestAnnexB: an H.264 track without a DecoderConfig (Annex B, parameter
// sets in-band) is announced with the parameter sets of its first
// keyframe, and its access units arrive as NAL units without the access
// unit delimiters.
func TestAnnexB(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	clipOrigin := testclip.Publish(t, testclip.Path("h264_aac_bframes.mp4"), "live/clip")
	origin := moq.NewOrigin()
	pubCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sdk.Publish(pubCtx, origin, "live/x", annexBSource(clipPart{origin: clipOrigin, path: "live/clip"}), sdk.PublishOptions{})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("publish: %v", err)
		}
		origin.Close()
	}()

	srv := startServer(t, serverOptions{})
	lb := &testkit.LogBuffer{}
	sink := newSink(t, srv.url("annexb"), lb, Config{})
	stop := testclip.RunSink(t, origin, "live/x", sink)
	lb.WaitLogContext(t, ctx, "rtmp: publishing", "codecs=H.264", "flv=legacy")
	conn := srv.waitConn(t, ctx, 1)
	time.Sleep(time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tracks, frames := conn.snapshot()
	h, ok := tracks[0].Codec.(*codecs.H264)
	if len(tracks) != 1 || !ok {
		t.Fatalf("tracks %v", tracks)
	}
	b, _ := clipOrigin.Consume("live/clip")
	r, _ := sdk.NewBroadcastReader(b)
	defer r.Close()
	if err := r.WaitCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	cfg, _ := sdk.ParseAVCConfig(r.Tracks()[0].DecoderConfig)
	if !bytes.Equal(h.SPS, cfg.SPS[0]) || !bytes.Equal(h.PPS, cfg.PPS[0]) {
		t.Errorf("announced SPS %x PPS %x, want the clip's %x %x", h.SPS, h.PPS, cfg.SPS[0], cfg.PPS[0])
	}
	if len(frames) < 45 || !frames[0].key {
		t.Fatalf("%d frames, the first a keyframe: %v", len(frames), len(frames) > 0 && frames[0].key)
	}
	for i, f := range frames {
		for _, n := range f.units {
			if n[0]&0x1f == 9 {
				t.Fatalf("frame %d has an access unit delimiter", i)
			}
		}
	}
	checkTimes(t, frames)
}

// TestAnnexBNewParameterSets: when a keyframe of an Annex B track brings
// other parameter sets (the encoder was reconfigured), the connection is
// restarted at that keyframe and the new one announces them.
func TestAnnexBNewParameterSets(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	a := testclip.Publish(t, testclip.Path("h264_aac_bframes.mp4"), "live/a")
	b := testclip.Publish(t, testclip.Path("h264_opus.mp4"), "live/b")
	origin := moq.NewOrigin()
	pubCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sdk.Publish(pubCtx, origin, "live/x", annexBSource(
			clipPart{origin: a, path: "live/a", span: 3 * time.Second}, clipPart{origin: b, path: "live/b"}), sdk.PublishOptions{})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("publish: %v", err)
		}
		origin.Close()
	}()

	srv := startServer(t, serverOptions{})
	lb := &testkit.LogBuffer{}
	sink := newSink(t, srv.url("annexb"), lb, Config{})
	stop := testclip.RunSink(t, origin, "live/x", sink)
	lb.WaitLogContext(t, ctx, "rtmp: the parameter sets changed; reconnecting to announce them")
	lb.WaitLogContext(t, ctx, "rtmp: reconnected; publishing from a keyframe")
	second := srv.waitConn(t, ctx, 2)
	time.Sleep(2500 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	first := srv.waitConn(t, ctx, 1)
	sps := func(c *rxConn) []byte {
		tracks, _ := c.snapshot()
		return tracks[0].Codec.(*codecs.H264).SPS
	}
	if bytes.Equal(sps(first), sps(second)) {
		t.Errorf("the second connection announced the first one's SPS")
	}
	_, frames := second.snapshot()
	if len(frames) < 30 || !frames[0].key || frames[0].dts > 50*time.Millisecond {
		t.Fatalf("second connection: %d frames, starting with a keyframe %v", len(frames), len(frames) > 0 && frames[0].key)
	}
	for _, n := range frames[0].units {
		if n[0]&0x1f == 7 && !bytes.Equal(n, sps(second)) {
			t.Errorf("the first frame's in-band SPS is not the announced one")
		}
	}
	if st := sink.Stats(); st.Connections != 2 {
		t.Errorf("stats %+v, want 2 connections", st)
	}
}
