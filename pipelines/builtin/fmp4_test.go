package builtin

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
	fmp4sink "github.com/moqbridge/moqbridge/sinks/fmp4"
)

// TestFMP4ToRecording: the fmp4 source kind publishes the 1 s test clip
// (from a file relative to the config's directory, from stdin, from an
// HTTP URL) into an Origin, and the fmp4 sink kind, attached first,
// records it into its directory relative to the config's: one file,
// whose tracks ffprobe reads back whole.
func TestFMP4ToRecording(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(clipDir, clip))
	if err != nil {
		t.Fatal(err)
	}
	// A stream ends when the test lets it (release): only once the sink
	// subscribed to its tracks, so that it gets them whole however slowly
	// the test runs.
	var release chan struct{}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "t0ken" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		_, _ = w.Write(data)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer web.Close()

	for _, c := range []struct {
		name  string
		opts  FMP4SourceOptions
		stdin *stdinReader
	}{
		{"file", FMP4SourceOptions{File: clip}, nil},
		// Streams come at their own pace: realtime paces these.
		{"stdin", FMP4SourceOptions{File: "-", Realtime: true}, &stdinReader{r: &gatedReader{data: bytes.NewReader(data), release: &release}}},
		{"url", FMP4SourceOptions{URL: web.URL + "/clip.mp4?token=t0ken", Realtime: true}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			lb := testLog(t)
			release = make(chan struct{})
			var once sync.Once
			releaseStream := func() { once.Do(func() { close(release) }) }
			defer releaseStream()
			config := t.TempDir()
			origin := moq.NewOrigin()
			defer origin.Close()

			sinkOpts := newOptions(t, FMP4Sink().Options, func(o *FMP4SinkOptions) { o.Dir = "rec" })
			sink, err := FMP4Sink().New(pipelines.SinkEnv{Pipeline: "p", Path: "demo", Dir: config, Logger: lb.Logger()}, sinkOpts)
			if err != nil {
				t.Fatal(err)
			}
			recording := consume(t, origin, "demo", sink)

			env := pipelines.SourceEnv{Pipeline: "p", Path: "demo", Origin: origin, Dir: clipDir, Logger: lb.Logger()}
			opts := newOptions(t, FMP4Source().Options, func(o *FMP4SourceOptions) { *o = c.opts })
			if err := opts.Validate(); err != nil {
				t.Fatal(err)
			}
			var src sdk.Source
			if c.stdin != nil {
				src, err = newFMP4Source(env, opts, c.stdin)
			} else {
				src, err = FMP4Source().NewSource(env, opts)
			}
			if err != nil {
				t.Fatal(err)
			}
			publishing := publish(t, origin, "demo", src)
			ctx := testkit.Context(t, 20*time.Second)
			lb.WaitLogContext(t, ctx, "fmp4: subscribed", "path=demo")
			releaseStream()
			if err := publishing.wait(t, 20*time.Second); err != nil {
				t.Fatalf("the source: %v", err)
			}
			if c.stdin != nil {
				// Standard input is read once: a restart fails for good.
				err := sdk.Publish(testkit.Context(t, 10*time.Second), origin, "again", src, sdk.PublishOptions{})
				if !sdk.IsPermanent(err) || !strings.Contains(err.Error(), "read already") {
					t.Errorf("stdin read again: %v", err)
				}
			}
			if err := recording.wait(t, 20*time.Second); err != nil {
				t.Fatalf("the sink: %v", err)
			}
			files := sink.(*fmp4sink.Sink).Files()
			if len(files) != 1 || !strings.HasPrefix(files[0], filepath.Join(config, "rec", "demo")+string(filepath.Separator)) {
				t.Fatalf("files %q, want one under %s", files, filepath.Join(config, "rec", "demo"))
			}
			if !testkit.CheckWith("ffmpeg", "ffprobe") {
				t.Log("ffmpeg or ffprobe missing: the recording is not judged")
				return
			}
			// The clip: 1 s of 30 fps video in GOPs of 15, and AAC.
			v := testkit.CheckFMP4(t, files[0], "v:0")
			a := testkit.CheckFMP4(t, files[0], "a:0")
			if v.Packets != 30 || v.Keyframes != 2 || a.Packets < 40 {
				t.Errorf("video %+v, audio %+v: want the whole clip", v, a)
			}
		})
	}
}

// gatedReader reads data, then waits for release to close before it
// reports the end.
type gatedReader struct {
	data    *bytes.Reader
	release *chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	n, err := g.data.Read(p)
	if err == io.EOF {
		<-*g.release
	}
	return n, err
}

// TestFMP4Loop: a looped file goes on past its end until stopped.
func TestFMP4Loop(t *testing.T) {
	origin := moq.NewOrigin()
	defer origin.Close()
	opts := newOptions(t, FMP4Source().Options, func(o *FMP4SourceOptions) { o.File, o.Loop, o.Fast = clip, true, true })
	src, err := FMP4Source().NewSource(pipelines.SourceEnv{Path: "loop", Dir: clipDir}, opts)
	if err != nil {
		t.Fatal(err)
	}
	var frames int
	counted := sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
		if err := r.WaitTracks(ctx, 0); err != nil {
			return err
		}
		tr, err := r.Subscribe(r.Tracks()[0].Name)
		if err != nil {
			return err
		}
		defer tr.Close()
		for frames < 100 { // the clip has 30 video frames
			if _, err := tr.ReadFrame(ctx); err != nil {
				return err
			}
			frames++
		}
		return nil
	})
	reading := consume(t, origin, "loop", counted)
	publishing := publish(t, origin, "loop", src)
	if err := reading.wait(t, 20*time.Second); err != nil {
		t.Fatalf("reading %d frames: %v", frames, err)
	}
	if err := publishing.stop(); err != nil {
		t.Errorf("the source: %v", err)
	}
}

// TestFMP4URLErrors: an HTTP status that asking again cannot change is a
// permanent error, one that may pass is not; neither shows the URL's
// query or password.
func TestFMP4URLErrors(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/forbidden":
			http.Error(w, "no", http.StatusForbidden)
		case "/later":
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	defer web.Close()
	for path, permanent := range map[string]bool{"/forbidden": true, "/later": false, "/missing": false} {
		origin := moq.NewOrigin()
		u := strings.Replace(web.URL, "http://", "http://user:SECRET@", 1) + path + "?token=SECRET"
		src, err := FMP4Source().NewSource(pipelines.SourceEnv{Path: "x"}, &FMP4SourceOptions{URL: u})
		if err != nil {
			t.Fatal(err)
		}
		err = sdk.Publish(testkit.Context(t, 10*time.Second), origin, "x", src, sdk.PublishOptions{})
		origin.Close()
		if err == nil || sdk.IsPermanent(err) != permanent || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v (permanent %v), want permanent %v and no secret", path, err, sdk.IsPermanent(err), permanent)
		}
	}
}

// TestFMP4BadFile: a file that is not MP4 is a permanent error.
func TestFMP4BadFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.mp4"), []byte("not an mp4 at all, just text"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := FMP4Source().NewSource(pipelines.SourceEnv{Path: "x", Dir: dir}, &FMP4SourceOptions{File: "bad.mp4", Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	origin := moq.NewOrigin()
	defer origin.Close()
	err = sdk.Publish(testkit.Context(t, 10*time.Second), origin, "x", src, sdk.PublishOptions{})
	if err == nil || !sdk.IsPermanent(err) {
		t.Errorf("a bad file: %v, want a permanent error", err)
	}
}

// TestFMP4URLStall: a server that stops sending in mid-stream has its
// request ended after the read timeout, a transient error (the runner
// retries), while a source pacing its frames in real time is no stall.
func TestFMP4URLStall(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(clipDir, clip))
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer web.Close()
	origin := moq.NewOrigin()
	defer origin.Close()
	// Half the clip, paced: about half a second of pacing between reads
	// with a shorter read timeout.
	src, err := FMP4Source().NewSource(pipelines.SourceEnv{Path: "x"}, &FMP4SourceOptions{URL: web.URL + "/live.mp4", Realtime: true, ReadTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var frames int
	reading := consume(t, origin, "x", sdk.SinkFunc(func(ctx context.Context, r *sdk.BroadcastReader) error {
		if err := r.WaitTracks(ctx, 0); err != nil {
			return err
		}
		tr, err := r.Subscribe(r.Tracks()[0].Name)
		if err != nil {
			return err
		}
		defer tr.Close()
		for {
			if _, err := tr.ReadFrame(ctx); err != nil {
				return nil
			}
			frames++
		}
	}))
	err = sdk.Publish(testkit.Context(t, 20*time.Second), origin, "x", src, sdk.PublishOptions{})
	if err == nil || sdk.IsPermanent(err) || !strings.Contains(err.Error(), "no data within the read timeout") {
		t.Errorf("a stalled server: %v", err)
	}
	_ = reading.wait(t, 10*time.Second)
	if frames < 10 {
		t.Errorf("%d frames before the stall, want the first half of the clip's", frames)
	}
}
