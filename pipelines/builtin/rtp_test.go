package builtin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"go.yaml.in/yaml/v3"

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
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(o); err != nil {
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

// freeUDPPair returns a port P on loopback with P and P+1 both free for
// UDP (an RTP port and its RTCP port).
func freeUDPPair(t *testing.T) int {
	t.Helper()
	for range 50 {
		a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := a.LocalAddr().(*net.UDPAddr).Port
		b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
		a.Close()
		if err == nil && port%2 == 0 {
			b.Close()
			return port
		}
		if err == nil {
			b.Close()
		}
	}
	t.Fatal("no free pair of UDP ports")
	return 0
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
// longer than the timeout ends the rtp pipeline's broadcast (a transient
// failure); the supervisor restarts the source on the same port, and the
// sender returning publishes the broadcast again, which the pipeline's
// fmp4 sink records as a second file. The source's counters are logged.
func TestRTPSourceRestart(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	dir := t.TempDir()
	port := freeUDPPair(t)
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
    restart: {min: 50ms, max: 200ms}
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
	lb.WaitLogContext(t, ctx, "pipeline: source failed; restarting", "no packets for 400ms")
	waitFor(t, ctx, "the second recording to close", func() bool {
		return strings.Count(lb.String(), "fmp4: segment closed") >= 2
	})
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(lb.String(), "address already in use") {
		t.Errorf("a restart could not bind the port again:\n%s", lb.String())
	}
	files, err := filepath.Glob(filepath.Join(dir, "rec", "live", "cam", "*.mp4"))
	if err != nil || len(files) != 2 {
		t.Errorf("recordings %q (%v), want one per sender", files, err)
	}
}
