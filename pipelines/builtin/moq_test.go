package builtin

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/protocol/auth"
	"github.com/moqbridge/moqbridge/sdk"
	fmp4sink "github.com/moqbridge/moqbridge/sinks/fmp4"
)

// TestMOQPaths: the pattern of the broadcasts the moq source publishes.
func TestMOQPaths(t *testing.T) {
	for _, c := range []struct {
		template  string
		broadcast bool
		want      string
	}{
		{"mirror", true, "mirror"},
		{"/live/cam/", true, "live/cam"},
		{"{path}", false, "*"},
		{"mirror/{path}", false, "mirror/*"},
		{"mirror/{name}", false, "mirror/*"},
		{"mirror/x-{name}", false, "mirror/*"},
		{"a/{name}/main", false, "a/*"},
	} {
		got, err := MOQPaths(c.template, c.broadcast)
		if err != nil || got != c.want {
			t.Errorf("MOQPaths(%q, %v) = %q, %v; want %q", c.template, c.broadcast, got, err, c.want)
		}
	}
	for _, c := range []struct {
		template  string
		broadcast bool
	}{{"mirror/{name}", true}, {"", true}, {"mirror", false}, {"m/{key}", false}, {"m/{name", false}, {"../{name}", false}, {"*", true}, {"m/*/{name}", false}} {
		if got, err := MOQPaths(c.template, c.broadcast); err == nil {
			t.Errorf("MOQPaths(%q, %v) = %q, want an error", c.template, c.broadcast, got)
		}
	}
	// The kind's Paths: without a pipeline path, the broadcast's own
	// path, or every remote path as it is.
	kind := MOQSource()
	for _, c := range []struct {
		path string
		opts MOQSourceOptions
		want string
	}{
		{"", MOQSourceOptions{Broadcast: "live/cam"}, "live/cam"},
		{"here", MOQSourceOptions{Broadcast: "live/cam"}, "here"},
		{"", MOQSourceOptions{Prefix: "live"}, "*"},
		{"m/{name}", MOQSourceOptions{Prefix: "live"}, "m/*"},
	} {
		if got, err := kind.Paths(c.path, &c.opts); err != nil || got != c.want {
			t.Errorf("Paths(%q, %+v) = %q, %v; want %q", c.path, c.opts, got, err, c.want)
		}
	}
}

// TestMOQValidate: the moq kinds' defaults, and what their options
// report.
func TestMOQValidate(t *testing.T) {
	backoff := defaultBackoff()
	if got, want := MOQSource().Options(), (&MOQSourceOptions{RelayOptions: RelayOptions{Backoff: backoff}}); *got.(*MOQSourceOptions) != *want {
		t.Errorf("source defaults %+v", got)
	}
	if got, want := MOQSink().Options(), (&MOQSinkOptions{RelayOptions: RelayOptions{Backoff: backoff}, Path: "{path}"}); *got.(*MOQSinkOptions) != *want {
		t.Errorf("sink defaults %+v", got)
	}
	fp := strings.Repeat("ab", 32)
	relay := func(url string) RelayOptions { return RelayOptions{URL: url, Backoff: backoff} }
	for _, c := range []struct {
		name   string
		opts   pipelines.Validator
		fields []string
	}{
		{"source", &MOQSourceOptions{RelayOptions: RelayOptions{URL: "https://h:4443/", Fingerprint: fp, Token: "a.b.c", Backoff: backoff}, Broadcast: "live/cam"}, nil},
		{"source raw QUIC", &MOQSourceOptions{RelayOptions: RelayOptions{URL: "moql://h:4443", Fingerprint: fp, Backoff: backoff}, Broadcast: "live/cam"}, nil},
		{"source token over raw QUIC", &MOQSourceOptions{RelayOptions: RelayOptions{URL: "moql://h:4443", Token: "a.b.c", Backoff: backoff}, Broadcast: "live/cam"}, []string{"token"}},
		{"source prefix", &MOQSourceOptions{RelayOptions: relay("https://h/"), Prefix: "/"}, nil},
		{"source colon fingerprint", &MOQSourceOptions{RelayOptions: RelayOptions{URL: "wss://h/", Fingerprint: strings.Repeat("ab:", 31) + "ab", Backoff: backoff}, Prefix: "live"}, nil},
		{"source nothing", &MOQSourceOptions{RelayOptions: RelayOptions{Backoff: backoff}}, []string{"url", "broadcast"}},
		{"source both", &MOQSourceOptions{RelayOptions: relay("moql://h:1"), Broadcast: "a", Prefix: "b"}, []string{"prefix"}},
		{"source bad", &MOQSourceOptions{RelayOptions: RelayOptions{URL: "rtmp://h/a", Fingerprint: "abc", Token: "a b", Backoff: BackoffOptions{Min: time.Second, Max: time.Second}}, Broadcast: "a/../b"},
			[]string{"url", "fingerprint", "token", "broadcast"}},
		{"source two tokens", &MOQSourceOptions{RelayOptions: RelayOptions{URL: "https://h/?jwt=x", Token: "y", Backoff: backoff}, Broadcast: "a"}, []string{"token"}},
		{"sink", &MOQSinkOptions{RelayOptions: relay("moql://h:4443"), Path: "edge/{path}"}, nil},
		{"sink fixed path", &MOQSinkOptions{RelayOptions: relay("moql://h:4443"), Path: "edge/main"}, nil},
		{"sink bad path", &MOQSinkOptions{RelayOptions: relay("moql://h:4443"), Path: "edge/{name}"}, []string{"path"}},
		{"sink empty path", &MOQSinkOptions{RelayOptions: relay("moql://h:4443")}, []string{"path"}},
		{"sink backoff", &MOQSinkOptions{RelayOptions: RelayOptions{URL: "moql://h:1", Backoff: BackoffOptions{Min: -1, Max: time.Second}}, Path: "{path}"}, []string{"backoff.min"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.opts.Validate()
			if got := fieldsOf(t, err); !slices.Equal(got, c.fields) {
				t.Errorf("Validate: %v; fields %q, want %q", err, got, c.fields)
			}
		})
	}
	// A URL's secrets stay out of its errors.
	err := (&MOQSinkOptions{RelayOptions: relay("ftp://u:SECRET@h/?jwt=SECRET"), Path: "{path}"}).Validate()
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("a bad URL: %v", err)
	}
}

// relayWithAuth starts a relay on loopback that takes connections with
// a token minted here; it returns the relay and such a token.
func relayWithAuth(t *testing.T) (*protocol.Server, string) {
	t.Helper()
	key, err := auth.GenerateKey("HS256")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.jwk")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	az, err := auth.New(auth.Config{KeyFiles: []string{keyFile}})
	if err != nil {
		t.Fatal(err)
	}
	token, err := auth.Mint(keyFile, auth.Claims{Put: []string{""}, Get: []string{""}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := protocol.NewServer(protocol.ServerConfig{Addr: "127.0.0.1:0", Origin: moq.NewOrigin(), Auth: az})
	if err != nil {
		t.Fatal(err)
	}
	served := start(t, srv.Serve)
	t.Cleanup(func() {
		_ = srv.Close()
		_ = served.stop()
		srv.Origin().Close()
	})
	return srv, token
}

// TestMOQChain: a looped clip in one Origin is pushed by the moq sink
// kind to a relay that wants a token; the moq source kind mirrors it from
// there into a second Origin, once as its broadcast and once under its
// prefix, and the fmp4 sink kind records the mirror: the recording
// decodes, the counters say the sink was connected, and the token is in
// no log line.
func TestMOQChain(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	lb := testLog(t)
	srv, token := relayWithAuth(t)
	fp := srv.Fingerprint()
	relay := RelayOptions{URL: "https://" + srv.Addr().String() + "/", Fingerprint: hex.EncodeToString(fp[:]), Token: token,
		Backoff: BackoffOptions{Min: 50 * time.Millisecond, Max: 300 * time.Millisecond}}

	local := moq.NewOrigin()
	defer local.Close()
	src, err := FMP4Source().NewSource(pipelines.SourceEnv{Path: "demo", Dir: clipDir}, &FMP4SourceOptions{File: clip, Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, local, "demo", src)

	sinkOpts := &MOQSinkOptions{RelayOptions: relay, Path: "edge/{path}"}
	if err := sinkOpts.Validate(); err != nil {
		t.Fatal(err)
	}
	push, err := MOQSink().New(pipelines.SinkEnv{Path: "demo", Origin: local, Logger: lb.Logger()}, sinkOpts)
	if err != nil {
		t.Fatal(err)
	}
	pushing := consume(t, local, "demo", push)
	if _, err := sdk.WaitBroadcast(ctx, srv.Origin(), "edge/demo", 0); err != nil {
		t.Fatalf("the relay never got edge/demo: %v", err)
	}
	if c := push.(pipelines.StatsReporter).Counters(); !c.Connected || c.Reconnects != 0 {
		t.Errorf("push counters %+v", c)
	}

	mirror := moq.NewOrigin()
	defer mirror.Close()
	listen := func(path string, opts *MOQSourceOptions) {
		t.Helper()
		if err := opts.Validate(); err != nil {
			t.Fatal(err)
		}
		src, err := MOQSource().NewOrigin(pipelines.SourceEnv{Path: path, Origin: mirror, Logger: lb.Logger()}, opts)
		if err != nil {
			t.Fatal(err)
		}
		start(t, func(ctx context.Context) error { return src.Run(ctx, mirror) })
	}
	listen("mirror", &MOQSourceOptions{RelayOptions: relay, Broadcast: "edge/demo"})
	listen("all/{name}", &MOQSourceOptions{RelayOptions: relay, Prefix: "edge"})
	if _, err := sdk.WaitBroadcast(ctx, mirror, "all/demo", 0); err != nil {
		t.Fatalf("the prefix mirror never made all/demo: %v", err)
	}

	dir := t.TempDir()
	rec, err := FMP4Sink().New(pipelines.SinkEnv{Path: "mirror", Logger: lb.Logger()},
		newOptions(t, FMP4Sink().Options, func(o *FMP4SinkOptions) { o.Dir, o.File = dir, "{path}.mp4" }))
	if err != nil {
		t.Fatal(err)
	}
	recording := consume(t, mirror, "mirror", rec)
	lb.WaitLogContext(t, ctx, "fmp4: recording")
	time.Sleep(2 * time.Second) // two passes of the clip
	if err := recording.stop(); err != nil {
		t.Fatalf("recording: %v", err)
	}
	if err := pushing.stop(); err != nil {
		t.Fatalf("pushing: %v", err)
	}
	if c := push.(pipelines.StatsReporter).Counters(); c.Connected {
		t.Errorf("push counters after Run %+v", c)
	}
	if strings.Contains(lb.String(), token) {
		t.Errorf("the log shows the token:\n%s", lb.String())
	}
	files := rec.(*fmp4sink.Sink).Files()
	if len(files) != 1 {
		t.Fatalf("files %q", files)
	}
	if !testkit.CheckWith("ffmpeg", "ffprobe") {
		t.Log("ffmpeg or ffprobe missing: the recording is not judged")
		return
	}
	v := testkit.CheckFMP4(t, files[0], "v:0")
	a := testkit.CheckFMP4(t, files[0], "a:0")
	if v.Packets < 30 || a.Packets < 40 {
		t.Errorf("video %+v, audio %+v: want at least a second", v, a)
	}
}

// TestMOQRefused: without the token the relay refuses the push, a
// permanent error that shows no secret.
func TestMOQRefused(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	srv, _ := relayWithAuth(t)
	fp := srv.Fingerprint()
	local := moq.NewOrigin()
	defer local.Close()
	src, err := FMP4Source().NewSource(pipelines.SourceEnv{Path: "demo", Dir: clipDir}, &FMP4SourceOptions{File: clip, Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, local, "demo", src)
	opts := &MOQSinkOptions{RelayOptions: RelayOptions{URL: "https://" + srv.Addr().String() + "/?jwt=SECRET.TOKEN.X", Fingerprint: hex.EncodeToString(fp[:]),
		Backoff: BackoffOptions{Min: 50 * time.Millisecond, Max: 300 * time.Millisecond, GiveUpAfter: 5 * time.Second}}, Path: "{path}"}
	lb := testLog(t)
	push, err := MOQSink().New(pipelines.SinkEnv{Path: "demo", Origin: local, Logger: lb.Logger()}, opts)
	if err != nil {
		t.Fatal(err)
	}
	err = sdk.Consume(ctx, local, "demo", push, sdk.ConsumeOptions{})
	if err == nil || !sdk.IsPermanent(err) || strings.Contains(err.Error(), "SECRET") || strings.Contains(lb.String(), "SECRET") {
		t.Errorf("a refused push: %v (permanent %v); log:\n%s", err, sdk.IsPermanent(err), lb.String())
	}
}

// TestRedactingHandler: secrets are hidden in messages, attributes (of
// any kind, in groups, given up front with With) and errors.
func TestRedactingHandler(t *testing.T) {
	o := &RelayOptions{URL: "https://user:PW@h/?x=1", Token: "TOK.EN", Backoff: defaultBackoff()}
	lb := &testkit.LogBuffer{}
	r, err := o.relay(lb.Logger())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.url, "jwt=TOK.EN") {
		t.Errorf("the URL dialled is %s, want the token as jwt", r.url)
	}
	log := r.log.With("url", r.url, "cause", errors.New("bad TOK.EN"))
	log.Info("dialled "+r.url, slog.Group("g", "pw", "PW", "u", mustParse(t, r.url)), "n", 3)
	out := lb.String()
	for _, secret := range []string{"TOK.EN", "PW"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log shows %s: %s", secret, out)
		}
	}
	if !strings.Contains(out, "n=3") || !strings.Contains(out, "https://h/") {
		t.Errorf("the log lost what is not secret: %s", out)
	}
	wrapped := r.wrap(sdk.Permanent(fmt.Errorf("connect to %s: %w", r.url, moq.ErrClosed)))
	if strings.Contains(wrapped.Error(), "TOK.EN") || !sdk.IsPermanent(wrapped) || !errors.Is(wrapped, moq.ErrClosed) {
		t.Errorf("wrapped error %v", wrapped)
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
