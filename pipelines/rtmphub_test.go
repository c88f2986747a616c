package pipelines

import (
	"context"
	"encoding/hex"
	"net/url"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

// rtmpPublisher is a gortmplib client publishing generated H.264, a
// frame every 10 ms, until its context ends or a write fails (its
// connection was closed); err then holds why.
type rtmpPublisher struct {
	c    *gortmplib.Client
	done chan error
}

func publishRTMP(ctx context.Context, t *testing.T, rawURL string) (*rtmpPublisher, error) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	sps, _ := hex.DecodeString("6742c00dd90141fb0110000003001000000303c0f142a480")
	pps, _ := hex.DecodeString("68cb83cb20")
	c := &gortmplib.Client{URL: u, Publish: true}
	if err := c.Initialize(ctx); err != nil {
		return nil, err
	}
	video := &gortmplib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{video}}
	if err := w.Initialize(); err != nil {
		c.Close()
		return nil, err
	}
	p := &rtmpPublisher{c: c, done: make(chan error, 1)}
	go func() {
		defer c.Close()
		for i := 0; ; i++ {
			ts := time.Duration(i) * 10 * time.Millisecond
			nal := byte(0x41)
			if i%10 == 0 {
				nal = 0x65
			}
			if err := w.WriteH264(video, ts, ts, [][]byte{{nal, byte(i), 0x88, 0x84}}); err != nil {
				p.done <- err
				return
			}
			select {
			case <-ctx.Done():
				p.done <- nil
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return p, nil
}

// connected reports whether the publisher still publishes.
func (p *rtmpPublisher) connected() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

// TestRTMPHub: the shared RTMP listener routes each publish by its
// application to the pipeline of that application, and refuses one no
// pipeline takes. A reload that changes one RTMP pipeline disconnects its
// publisher only: the other's connection, sink instance and frames go on
// untouched, and the reconnecting publisher reaches the new pipeline.
func TestRTMPHub(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	sinkA, sinkB := &recOpts{}, &recOpts{}
	a, b := routePipeline("ingest-a", "a", sinkA), routePipeline("ingest-b", "b", sinkB)
	cfg := &Config{RTMP: &RTMPConfig{Listen: "127.0.0.1:0"}, Pipelines: []*Pipeline{a, b}}
	r, stop := startRunner(t, cfg, newEvents())
	waitFor(t, "both routes", func() bool { return r.Ready() == nil })
	addrs := r.RTMPAddrs()
	if len(addrs) != 1 {
		t.Fatalf("RTMP listens on %v", addrs)
	}
	base := "rtmp://" + addrs[0]
	pubCtx, cancelPubs := context.WithCancel(ctx)
	defer cancelPubs()
	pa, err := publishRTMP(pubCtx, t, base+"/a#one")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := publishRTMP(pubCtx, t, base+"/b#two")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both sinks reading", func() bool { return sinkA.frames() > 5 && sinkB.frames() > 5 })
	if in := sinkA.all(); len(in) != 1 || in[0].path != "a/one" {
		t.Errorf("pipeline a's sinks: %d, first on %q", len(in), in[0].path)
	}
	if in := sinkB.all(); len(in) != 1 || in[0].path != "b/two" {
		t.Errorf("pipeline b's sinks: %d, first on %q", len(in), in[0].path)
	}
	if p, err := publishRTMP(pubCtx, t, base+"/c#three"); err == nil {
		p.c.Close()
		<-p.done
		t.Error("a publish to an application no pipeline takes was accepted")
	}

	b2 := routePipeline("ingest-b", "b", sinkB)
	b2.Fingerprint = "ingest-b-v2"
	if err := r.Reload(&Config{RTMP: cfg.RTMP, Pipelines: []*Pipeline{a, b2}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pipeline b's publisher disconnected", func() bool { return !pb.connected() })
	before := sinkA.frames()
	waitFor(t, "pipeline a reading on", func() bool { return sinkA.frames() > before+10 })
	if !pa.connected() {
		t.Error("pipeline a's publisher was disconnected by the reload of b")
	}
	if n := len(sinkA.all()); n != 1 {
		t.Errorf("pipeline a's sink was made %d times, want 1", n)
	}
	pb2, err := publishRTMP(pubCtx, t, base+"/b#two")
	if err != nil {
		t.Fatalf("publishing to the reloaded pipeline: %v", err)
	}
	waitFor(t, "the reloaded pipeline's sink", func() bool { in := sinkB.all(); return len(in) == 2 && in[1].frames.Load() > 5 })
	if !pa.connected() || !pb2.connected() {
		t.Error("a publisher was disconnected")
	}
	stop()
	cancelPubs()
	<-pa.done
	<-pb2.done
}
