package builtin

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/moqbridge/moqbridge/internal/testkit"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clipDir holds the test clips of the fMP4 source.
var clipDir = filepath.Join("..", "..", "sources", "fmp4", "testdata")

// clip is a test clip of sources/fmp4/testdata (1 s of H.264 with
// B-frames and AAC, fragmented at keyframes).
const clip = "h264_aac_bframes.mp4"

// fieldsOf returns the fields of the *pipelines.FieldErrors that err
// joins (errors.Join), and fails the test on any other error in it.
func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var fields []string
	for _, e := range errs {
		var fe *pipelines.FieldError
		if !errors.As(e, &fe) {
			t.Errorf("%v is not a *pipelines.FieldError", e)
			continue
		}
		fields = append(fields, fe.Field)
	}
	return fields
}

// running is something run on its own goroutine until the test stops it.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs fn(ctx) until stop (or the test's end).
func start(t *testing.T, fn func(ctx context.Context) error) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
		r.done <- nil
	})
	return r
}

// wait returns fn's result once it returned by itself, within d.
func (r *running) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("still running after %v", d)
		return nil
	}
}

// stop ends fn's context and returns its result.
func (r *running) stop() error {
	r.cancel()
	err := <-r.done
	r.done <- err
	return err
}

// publish runs a source kind's source into origin at path.
func publish(t *testing.T, origin *moq.Origin, path string, src sdk.Source) *running {
	t.Helper()
	return start(t, func(ctx context.Context) error {
		return sdk.Publish(ctx, origin, path, src, sdk.PublishOptions{})
	})
}

// consume runs a sink on the broadcast at path as soon as it is live.
func consume(t *testing.T, origin *moq.Origin, path string, sink sdk.Sink) *running {
	t.Helper()
	return start(t, func(ctx context.Context) error {
		return sdk.Consume(ctx, origin, path, sink, sdk.ConsumeOptions{})
	})
}

// freePort returns a TCP port free on loopback.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newOptions returns the kind's default options after set changed them.
func newOptions[T any](t *testing.T, options func() any, set func(*T)) *T {
	t.Helper()
	o, ok := options().(*T)
	if !ok {
		t.Fatalf("Options returns %T", options())
	}
	if set != nil {
		set(o)
	}
	return o
}

// decodeStrict decodes the YAML doc into opts as the config loader does:
// an unknown key is an error.
func decodeStrict(doc string, opts any) error {
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	return dec.Decode(opts)
}

// testLog returns a log buffer that the test prints when it fails.
func testLog(t *testing.T) *testkit.LogBuffer {
	lb := &testkit.LogBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", lb.String())
		}
	})
	return lb
}
