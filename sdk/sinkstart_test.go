package sdk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

func TestEnded(t *testing.T) {
	for _, tc := range []struct {
		err   error
		ended bool
	}{
		{io.EOF, true},
		{moq.ErrClosed, true},
		{errors.Join(errors.New("track \"v\""), io.EOF), true},
		{errors.New("session reset"), false},
		{context.Canceled, false},
	} {
		if got := Ended(tc.err); got != tc.ended {
			t.Errorf("Ended(%v) = %v", tc.err, got)
		}
	}
}

// TestWaitSinkTracks: a sink's Run goes on once the catalog lists tracks,
// returns nil when its context ends, and tells a broadcast that ended
// from one that was lost.
func TestWaitSinkTracks(t *testing.T) {
	ctx := testContext(t)
	errLost := errors.New("test: source lost")

	rb := newRawBroadcast(t)
	r := rb.reader(t)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if ok, err := r.WaitSinkTracks(short, time.Millisecond, "test", errLost); ok || err != nil {
		t.Errorf("context ended: %v, %v", ok, err)
	}
	writeGroup(t, rb.cat, true, []byte(`{"video": {"renditions": {"a": {"codec": "vp8"}}}}`))
	if ok, err := r.WaitSinkTracks(ctx, time.Millisecond, "test", errLost); !ok || err != nil {
		t.Errorf("tracks listed: %v, %v", ok, err)
	}

	rb = newRawBroadcast(t)
	r = rb.reader(t)
	_ = rb.b.Close()
	ok, err := r.WaitSinkTracks(ctx, time.Millisecond, "test", errLost)
	if ok || !errors.Is(err, io.EOF) || errors.Is(err, errLost) || !strings.HasPrefix(err.Error(), "test: ") {
		t.Errorf("ended: %v, %v", ok, err)
	}

	rb = newRawBroadcast(t)
	r = rb.reader(t)
	errReset := errors.New("session reset")
	_ = rb.b.CloseWithError(errReset)
	ok, err = r.WaitSinkTracks(ctx, time.Millisecond, "test", errLost)
	if ok || !errors.Is(err, errLost) || !errors.Is(err, errReset) {
		t.Errorf("lost: %v, %v", ok, err)
	}
}

// TestSubscribeSinkTracks: a track the broadcast lacks is the sink's
// error, a broadcast gone before the subscription is a loss.
func TestSubscribeSinkTracks(t *testing.T) {
	ctx := testContext(t)
	errLost := errors.New("test: source lost")
	rb := newRawBroadcast(t)
	tw, err := rb.b.CreateTrack("a", 1)
	if err != nil {
		t.Fatal(err)
	}
	writeGroup(t, rb.cat, true, []byte(`{"video": {"renditions": {"a": {"codec": "vp8"}, "b": {"codec": "vp8"}}}}`))
	r := rb.reader(t)
	waitTracks(ctx, t, r, "[a b]")
	readers, closeAll, err := r.SubscribeSinkTracks(ctx, []string{"a"}, "test", errLost)
	if err != nil || len(readers) != 1 {
		t.Fatalf("track a: %v, %v", readers, err)
	}
	frame, err := AppendLegacyFrame(nil, 0, []byte{1})
	if err != nil {
		t.Fatal(err)
	}
	writeGroup(t, tw, true, frame)
	if f, err := readers[0].ReadFrame(ctx); err != nil || !bytes.Equal(f.Payload, []byte{1}) {
		t.Errorf("read %+v, %v", f, err)
	}
	closeAll()
	_, _, err = r.SubscribeSinkTracks(ctx, []string{"a", "nope"}, "test", errLost)
	if !strings.HasPrefix(err.Error(), "test: ") || errors.Is(err, errLost) {
		t.Errorf("missing track: %v", err)
	}
	_ = rb.b.Close()
	<-r.Done()
	_, _, err = r.SubscribeSinkTracks(ctx, []string{"a"}, "test", errLost)
	if !errors.Is(err, errLost) || !errors.Is(err, moq.ErrClosed) {
		t.Errorf("broadcast gone: %v", err)
	}
}
