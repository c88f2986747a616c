package rtmp

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

// annexBSource republishes the H.264 track of the broadcast at path in
// from as a track without a DecoderConfig: Annex B access units with the
// parameter sets in-band before every keyframe (what the browser
// publisher sends).
func annexBSource(from *moq.Origin, path string) sdk.Source {
	return sdk.SourceFunc(func(ctx context.Context, w *sdk.BroadcastWriter) error {
		b, err := sdk.WaitBroadcast(ctx, from, path, 10*time.Second)
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
		tw, err := w.AddTrack(sdk.Track{Name: "video/hd", Kind: sdk.KindVideo, Codec: strings.Replace(src.Codec, "avc1", "avc3", 1),
			Width: src.Width, Height: src.Height})
		if err != nil {
			return err
		}
		for {
			f, err := tr.ReadFrame(ctx)
			if err != nil {
				return nil
			}
			nalus, err := sdk.SplitAVCC(f.Payload, cfg.NALLengthSize)
			if err != nil {
				return err
			}
			if f.Keyframe {
				nalus = append(append([][]byte{{0x09, 0xf0}}, params...), nalus...) // with an access unit delimiter
			}
			f.Payload = sdk.JoinAnnexB(nalus)
			if err := tw.WriteFrame(f); err != nil {
				return err
			}
		}
	})
}

// TestAnnexB: an H.264 track without a DecoderConfig (Annex B, parameter
// sets in-band) is announced with the parameter sets of its first
// keyframe, and its access units arrive as NAL units without the access
// unit delimiters.
func TestAnnexB(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	clipOrigin := publishFile(t, clip("h264_aac_bframes.mp4"), "live/clip")
	origin := moq.NewOrigin()
	pubCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sdk.Publish(pubCtx, origin, "live/x", annexBSource(clipOrigin, "live/clip"), sdk.PublishOptions{})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("publish: %v", err)
		}
		origin.Close()
	}()

	srv := startServer(t, serverOptions{})
	lb := &logBuffer{}
	sink := newSink(t, srv.url("annexb"), lb, Config{})
	stop := runSink(t, origin, "live/x", sink)
	lb.waitLog(t, ctx, "rtmp: publishing", "codecs=H.264", "flv=legacy")
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
