package builtin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
)

// opusSDP is a session description of one Opus media sent to port on
// loopback, as ffmpeg writes it.
func opusSDP(port int) string {
	return fmt.Sprintf("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nt=0 0\n"+
		"m=audio %d RTP/AVP 111\nc=IN IP4 127.0.0.1\na=rtpmap:111 opus/48000/2\na=fmtp:111 sprop-stereo=1\n", port)
}

// h264OpusSDP is what ffmpeg writes for hang-format.md §6.2's command.
const h264OpusSDP = `v=0
o=- 0 0 IN IP4 127.0.0.1
s=No Name
t=0 0
m=video 5004 RTP/AVP 96
c=IN IP4 127.0.0.1
a=rtpmap:96 H264/90000
a=fmtp:96 packetization-mode=1
m=audio 5006 RTP/AVP 111
c=IN IP4 127.0.0.1
a=rtpmap:111 opus/48000/2
`

// speexSDP announces a payload format the source does not decode.
const speexSDP = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=-\nt=0 0\nm=audio 5006 RTP/AVP 97\nc=IN IP4 127.0.0.1\na=rtpmap:97 speex/8000\n"

// TestRTPSourceOptions: the rtp source's defaults, what its options
// refuse and where, and its YAML keys.
func TestRTPSourceOptions(t *testing.T) {
	defaults := RTPSource().Options()
	if want := (&RTPSourceOptions{ReorderWindow: 50 * time.Millisecond, Timeout: 10 * time.Second, TrackWait: 2 * time.Second}); !reflect.DeepEqual(defaults, want) {
		t.Errorf("defaults %+v, want %+v", defaults, want)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "cam.sdp")
	bad := filepath.Join(dir, "speex.sdp")
	for name, text := range map[string]string{good: h264OpusSDP, bad: speexSDP} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts := func(set func(*RTPSourceOptions)) *RTPSourceOptions {
		return newOptions(t, RTPSource().Options, set)
	}
	cases := []struct {
		name   string
		opts   *RTPSourceOptions
		fields []string // nil: valid
		says   string   // in the error
	}{
		{"file", opts(func(o *RTPSourceOptions) { o.SDPFile = "cam.sdp" }), nil, ""},
		{"absolute file", opts(func(o *RTPSourceOptions) { o.SDPFile = good }), nil, ""},
		{"inline", opts(func(o *RTPSourceOptions) {
			o.SDP, o.Listen = h264OpusSDP, []string{"127.0.0.1:7000", "[::1]:7002"}
		}), nil, ""},
		{"listen host only", opts(func(o *RTPSourceOptions) { o.SDP, o.Listen = h264OpusSDP, []string{"0.0.0.0"} }), nil, ""},
		{"neither", opts(nil), []string{"sdp_file"}, "either sdp_file"},
		{"both", opts(func(o *RTPSourceOptions) { o.SDP, o.SDPFile = h264OpusSDP, "cam.sdp" }), []string{"sdp"}, "exclude each other"},
		{"unsupported codec", opts(func(o *RTPSourceOptions) { o.SDP = speexSDP }), []string{"sdp"}, "speex/8000"},
		{"not an SDP", opts(func(o *RTPSourceOptions) { o.SDP = "hello" }), []string{"sdp"}, ""},
		{"unsupported codec in a file", opts(func(o *RTPSourceOptions) { o.SDPFile = bad }), []string{"sdp_file"}, bad + ": "},
		{"missing file", opts(func(o *RTPSourceOptions) { o.SDPFile = filepath.Join(dir, "no.sdp") }), []string{"sdp_file"}, "does not exist"},
		{"directory", opts(func(o *RTPSourceOptions) { o.SDPFile = dir }), []string{"sdp_file"}, "not a regular file"},
		{"more addresses than media", opts(func(o *RTPSourceOptions) { o.SDP, o.Listen = h264OpusSDP, []string{":1", ":3", ":5"} }), []string{"listen"}, "3 addresses for the 2 media"},
		{"bad addresses", opts(func(o *RTPSourceOptions) {
			o.SDP, o.Listen = h264OpusSDP, []string{"camera.local:5004", "127.0.0.1:99999", ""}
		}), []string{"listen[0]", "listen[1]", "listen[2]"}, "IP address"},
		{"durations", opts(func(o *RTPSourceOptions) {
			o.SDPFile, o.ReorderWindow, o.Timeout, o.TrackWait = "cam.sdp", 0, -time.Second, 0
		}), []string{"reorder_window", "timeout", "track_wait"}, "must be positive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.opts.ValidateDir(dir)
			if got := fieldsOf(t, err); !slices.Equal(got, c.fields) {
				t.Errorf("ValidateDir: %v; fields %q, want %q", err, got, c.fields)
			}
			if err != nil && !strings.Contains(err.Error(), c.says) {
				t.Errorf("ValidateDir: %v, want it to say %q", err, c.says)
			}
		})
	}
	// Without the directory a relative file is not looked for; an
	// absolute one is.
	if err := opts(func(o *RTPSourceOptions) { o.SDPFile = "elsewhere.sdp" }).Validate(); err != nil {
		t.Errorf("Validate of a relative file: %v", err)
	}
	if err := opts(func(o *RTPSourceOptions) { o.SDPFile = bad }).Validate(); err == nil {
		t.Error("Validate of an absolute file holding speex: no error")
	}
	// Building the source checks again, with a permanent error.
	_, err := RTPSource().NewSource(pipelines.SourceEnv{Dir: dir, Path: "cam"}, opts(func(o *RTPSourceOptions) { o.SDPFile = "speex.sdp" }))
	if !sdk.IsPermanent(err) || !slices.Equal(fieldsOf(t, errors.Unwrap(err)), []string{"sdp_file"}) {
		t.Errorf("NewSource with speex: %v", err)
	}

	o := RTPSource().Options()
	doc := "{sdp_file: cam.sdp, sdp: '', listen: ['127.0.0.1:7000', '127.0.0.1:7002'], reorder_window: 80ms, timeout: 3s, track_wait: 1s}"
	if err := decodeStrict(doc, o); err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	if err := o.(pipelines.DirValidator).ValidateDir(dir); err != nil {
		t.Errorf("%s: %v", doc, err)
	}
	if got := o.(*RTPSourceOptions); got.ReorderWindow != 80*time.Millisecond || got.Timeout != 3*time.Second || len(got.Listen) != 2 {
		t.Errorf("decoded %+v", got)
	}
	checkTags(t, reflect.TypeOf(RTPSourceOptions{}))
}

// TestRTPLoadErrors: a configuration with rtp sources reports their
// problems at their lines' keys, the inline SDP's by what it refuses.
func TestRTPLoadErrors(t *testing.T) {
	dir := t.TempDir()
	file := writeConfig(t, dir, `
pipelines:
  cam:
    source:
      rtp: {sdp_file: missing.sdp}
    path: cam
  inline:
    source:
      rtp:
        sdp: |
`+indent(speexSDP, "          ")+`
        timeout: 0s
    path: inline
`)
	_, err := pipelines.Load(file, Registry())
	if err == nil {
		t.Fatal("Load: no error")
	}
	for _, want := range []string{
		"pipelines.cam.source.rtp.sdp_file: " + filepath.Join(dir, "missing.sdp") + " does not exist",
		"pipelines.inline.source.rtp.timeout: must be positive",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the errors lack %q:\n%v", want, err)
		}
	}
	file = writeConfig(t, dir, "pipelines:\n  inline:\n    source:\n      rtp:\n        sdp: |\n"+indent(speexSDP, "          ")+"    path: inline\n")
	if _, err := pipelines.Load(file, Registry()); err == nil || !strings.Contains(err.Error(), "pipelines.inline.source.rtp.sdp: ") || !strings.Contains(err.Error(), "speex") {
		t.Errorf("an inline SDP with speex: %v", err)
	}
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString(prefix + line)
	}
	return b.String()
}

// opusSender sends 20 ms Opus packets to a port on loopback in real time
// until stopped: a sender that comes and goes.
type opusSender struct {
	conn *net.UDPConn
	ssrc uint32
	seq  uint16
	ts   uint32
}

func newOpusSender(t *testing.T, port int, ssrc uint32) *opusSender {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &opusSender{conn: c, ssrc: ssrc, seq: uint16(ssrc), ts: ssrc * 7}
}

// send sends packets until ctx ends.
func (s *opusSender) send(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: s.seq, Timestamp: s.ts, SSRC: s.ssrc, Marker: true},
			Payload: []byte{0xfc, byte(s.seq), 0xff, 0xfe}}
		b, err := p.Marshal()
		if err != nil {
			return err
		}
		// A refused datagram (nobody listening for a moment) is what a
		// sender on a network sees too: it keeps sending.
		_, _ = s.conn.Write(b)
		s.seq++
		s.ts += 960
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// TestRTPSourceRestart: through the runner, a sender that goes silent for
// longer than the timeout ends the rtp pipeline's broadcast (the input's
// end, sdk.ErrInputIdle, not a failure); the supervisor runs the source
// again at once on the same port, whatever restart.min says, and the
// sender returning publishes the broadcast again, which the pipeline's
// fmp4 sink records as a second file. The source's counters are logged.
func TestRTPSourceRestart(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	dir := t.TempDir()
	port := testkit.FreeUDPPorts(t, 2)
	if err := os.WriteFile(filepath.Join(dir, "cam.sdp"), []byte(opusSDP(port)), 0o644); err != nil {
		t.Fatal(err)
	}
	file := writeConfig(t, dir, `
server: {enabled: false}
admin: {listen: ""}
pipelines:
  cam:
    source:
      rtp: {sdp_file: cam.sdp, timeout: 400ms, track_wait: 100ms}
    path: live/cam
    restart: {min: 30s, max: 60s}
    sinks:
      - fmp4: {dir: rec}
`)
	cfg, err := pipelines.Load(file, Registry())
	if err != nil {
		t.Fatal(err)
	}
	lb := testLog(t)
	runner := pipelines.NewRunner(Registry(), pipelines.RunnerOptions{Logger: lb.Logger()})
	run := start(t, func(ctx context.Context) error { return runner.Run(ctx, cfg) })
	live := func() bool {
		_, err := runner.Origin().Consume("live/cam")
		return err == nil
	}

	for i, ssrc := range []uint32{0x1111, 0x2222} {
		sender := start(t, newOpusSender(t, port, ssrc).send)
		waitFor(t, ctx, fmt.Sprintf("the broadcast, sender %d", i+1), live)
		time.Sleep(500 * time.Millisecond) // some media for the recording
		if err := sender.stop(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, fmt.Sprintf("the broadcast to end after sender %d", i+1), func() bool { return !live() })
	}
	lb.WaitLogContext(t, ctx, "rtp: media received", "packets=")
	// A silent sender is the input's end, not a failure: the source
	// listens again at once, not after restart.min.
	lb.WaitLogContext(t, ctx, "pipeline: source input went silent", "no packets for 400ms")
	waitFor(t, ctx, "the second recording to close", func() bool {
		return strings.Count(lb.String(), "fmp4: segment closed") >= 2
	})
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(lb.String(), "source failed; restarting") {
		t.Errorf("the source's idle end was taken for a failure:\n%s", lb.String())
	}
	if strings.Contains(lb.String(), "address already in use") {
		t.Errorf("a restart could not bind the port again:\n%s", lb.String())
	}
	files, err := filepath.Glob(filepath.Join(dir, "rec", "live", "cam", "*.mp4"))
	if err != nil || len(files) != 2 {
		t.Errorf("recordings %q (%v), want one per sender", files, err)
	}
}

// TestRTPSinkOptions: the rtp sink's defaults, what its options refuse
// and where, and its YAML keys.
func TestRTPSinkOptions(t *testing.T) {
	if got, want := RTPSink().Options(), (&RTPSinkOptions{TTL: 1, MTU: 1200, MaxDelay: 500 * time.Millisecond}); !reflect.DeepEqual(got, want) {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	dir := t.TempDir()
	opts := func(set func(*RTPSinkOptions)) *RTPSinkOptions {
		return newOptions(t, RTPSink().Options, func(o *RTPSinkOptions) {
			o.Dest = "127.0.0.1:5004"
			if set != nil {
				set(o)
			}
		})
	}
	cases := []struct {
		name   string
		opts   *RTPSinkOptions
		fields []string // nil: valid
		says   string
	}{
		{"dest", opts(nil), nil, ""},
		{"everything", opts(func(o *RTPSinkOptions) {
			o.Dest, o.SDPFile, o.TTL, o.MTU, o.Video, o.Audio = "[ff02::1]:6000", "out.sdp", 8, 1400, "video0", "audio1"
		}), nil, ""},
		{"multicast, absolute SDP", opts(func(o *RTPSinkOptions) { o.Dest, o.SDPFile = "239.0.0.1:5004", filepath.Join(dir, "o.sdp") }), nil, ""},
		{"host name", opts(func(o *RTPSinkOptions) { o.Dest = "receiver.example:5004" }), nil, ""},
		{"no dest", opts(func(o *RTPSinkOptions) { o.Dest = "" }), []string{"dest"}, "required"},
		{"no port", opts(func(o *RTPSinkOptions) { o.Dest = "127.0.0.1" }), []string{"dest"}, "HOST:PORT"},
		{"port 0", opts(func(o *RTPSinkOptions) { o.Dest = "127.0.0.1:0" }), []string{"dest"}, "1 to 65535"},
		{"port too high", opts(func(o *RTPSinkOptions) { o.Dest = "127.0.0.1:65534" }), []string{"dest"}, "would pass 65535"},
		{"unspecified", opts(func(o *RTPSinkOptions) { o.Dest = "0.0.0.0:5004" }), []string{"dest"}, "not an address to send to"},
		{"limits", opts(func(o *RTPSinkOptions) { o.TTL, o.MTU, o.MaxDelay = 0, 100, 0 }), []string{"ttl", "mtu", "max_delay"}, ""},
		{"missing directory", opts(func(o *RTPSinkOptions) { o.SDPFile = "no/such/dir/out.sdp" }), []string{"sdp_file"}, "does not exist"},
		{"a directory", opts(func(o *RTPSinkOptions) { o.SDPFile = "." }), []string{"sdp_file"}, "is a directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.opts.ValidateDir(dir)
			if got := fieldsOf(t, err); !slices.Equal(got, c.fields) {
				t.Errorf("ValidateDir: %v; fields %q, want %q", err, got, c.fields)
			}
			if err != nil && !strings.Contains(err.Error(), c.says) {
				t.Errorf("ValidateDir: %v, want it to say %q", err, c.says)
			}
		})
	}
	_, err := RTPSink().New(pipelines.SinkEnv{Dir: dir, Path: "x"}, opts(func(o *RTPSinkOptions) { o.Dest = "" }))
	if !sdk.IsPermanent(err) {
		t.Errorf("New without dest: %v, want a permanent error", err)
	}

	o := RTPSink().Options()
	doc := "{dest: '239.1.2.3:5004', sdp_file: out.sdp, ttl: 4, mtu: 1400, video: v, audio: a, max_delay: 1s}"
	if err := decodeStrict(doc, o); err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	if err := o.(pipelines.DirValidator).ValidateDir(dir); err != nil {
		t.Errorf("%s: %v", doc, err)
	}
	if got := o.(*RTPSinkOptions); got.TTL != 4 || got.MaxDelay != time.Second || got.Video != "v" {
		t.Errorf("decoded %+v", got)
	}
	checkTags(t, reflect.TypeOf(RTPSinkOptions{}))
}

// TestRTPSinkToFFmpeg: a YAML pipeline sends a looped clip (H.264 with
// B-frames, AAC) through the rtp sink kind; ffmpeg opens the SDP the sink wrote (-protocol_whitelist
// file,udp,rtp) and receives both tracks, which decode cleanly. The sink
// reports itself sending while it runs.
//
// ffmpeg must listen before the first keyframe is sent, so the pipeline
// runs once to write the SDP, and again, from the clip's start, once
// ffmpeg has bound the ports the SDP names.
func TestRTPSinkToFFmpeg(t *testing.T) {
	testkit.NeedFFmpeg(t)
	ctx := testkit.Context(t, 90*time.Second)
	dir := t.TempDir()
	port := testkit.FreeUDPPorts(t, 4)
	clipFile, err := filepath.Abs(filepath.Join(clipDir, clip))
	if err != nil {
		t.Fatal(err)
	}
	file := writeConfig(t, dir, fmt.Sprintf(`
server: {enabled: false}
admin: {listen: ""}
pipelines:
  out:
    source: {fmp4: {file: "%s", loop: true}}
    path: demo
    sinks:
      - rtp: {dest: "127.0.0.1:%d", sdp_file: out.sdp}
`, clipFile, port))
	cfg, err := pipelines.Load(file, Registry())
	if err != nil {
		t.Fatal(err)
	}
	sdpFile := filepath.Join(dir, "out.sdp")
	lb := testLog(t)
	runner := pipelines.NewRunner(Registry(), pipelines.RunnerOptions{Logger: lb.Logger()})
	run := start(t, func(ctx context.Context) error { return runner.Run(ctx, cfg) })
	waitFor(t, ctx, "the SDP file", func() bool { _, err := os.Stat(sdpFile); return err == nil })
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	sdp, err := os.ReadFile(sdpFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf("m=video %d RTP/AVP", port), fmt.Sprintf("m=audio %d RTP/AVP", port+2), "H264/90000", "MPEG4-GENERIC/"} {
		if !strings.Contains(strings.ToUpper(string(sdp)), strings.ToUpper(want)) {
			t.Errorf("the SDP lacks %q:\n%s", want, sdp)
		}
	}

	out := filepath.Join(dir, "out.mkv")
	received := ffmpeg(t, "-protocol_whitelist", "file,udp,rtp", "-i", sdpFile, "-t", "3",
		"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-y", out)
	if err := testkit.WaitUDPBound(ctx, port, port+2); err != nil {
		t.Fatal(err)
	}
	runner = pipelines.NewRunner(Registry(), pipelines.RunnerOptions{Logger: lb.Logger()})
	run = start(t, func(ctx context.Context) error { return runner.Run(ctx, cfg) })
	if err := received.wait(t, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	b, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", out).CombinedOutput()
	if got := strings.Join(strings.Fields(string(b)), ","); err != nil || got != "h264,aac" {
		t.Fatalf("received streams %q (%v), want h264,aac", got, err)
	}
	if b, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-xerror", "-i", out, "-f", "null", "-").CombinedOutput(); err != nil || len(strings.TrimSpace(string(b))) > 0 {
		t.Errorf("%s does not decode cleanly: %v\n%s", out, err, b)
	}
	for _, stream := range []string{"v:0", "a:0"} {
		if ts := testkit.PacketTimes(t, ctx, out, stream); len(ts) < 2 || ts[len(ts)-1]-ts[0] < 2.5 {
			t.Errorf("%s: %d packets (%v), want 3 s", stream, len(ts), ts)
		}
	}
}

// FuzzRTPOptions: the rtp kinds' checks of addresses and of an inline
// session description never panic, and an options value they pass builds
// its source and sink.
func FuzzRTPOptions(f *testing.F) {
	for _, seed := range []struct{ addr, sdp string }{
		{"127.0.0.1:5004", h264OpusSDP}, {"[::1]:5004", speexSDP}, {"0.0.0.0", opusSDP(5006)}, {":0", "v=0\n"},
		{"239.0.0.1:65535", "m=video 0 RTP/AVP 96\n"}, {"h:x", ""}, {"[::1", "v=0\nm=audio 1 RTP/AVP 0\nc=IN IP6 ::1\n"},
	} {
		f.Add(seed.addr, seed.sdp)
	}
	f.Fuzz(func(t *testing.T, addr, sdp string) {
		src := newOptions(t, RTPSource().Options, func(o *RTPSourceOptions) { o.SDP, o.Listen = sdp, []string{addr} })
		if src.Validate() == nil {
			if _, err := RTPSource().NewSource(pipelines.SourceEnv{Path: "x"}, src); err != nil {
				t.Fatalf("valid options %+v: NewSource: %v", src, err)
			}
		}
		sink := newOptions(t, RTPSink().Options, func(o *RTPSinkOptions) { o.Dest = addr })
		if sink.Validate() == nil {
			if _, err := netip.ParseAddrPort(addr); err == nil {
				if _, err := RTPSink().New(pipelines.SinkEnv{Path: "x"}, sink); err != nil {
					t.Fatalf("valid options %+v: New: %v", sink, err)
				}
			}
		}
	})
}
