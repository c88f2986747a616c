package protocol

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

func TestValidatePath(t *testing.T) {
	for _, ok := range []string{"", "live/alice", "catalog.json", "a/.b/c..", "日本/ライブ", strings.Repeat("x", 1024)} {
		if err := moq.ValidatePath(ok); err != nil {
			t.Errorf("moq.ValidatePath(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"..", "live/../x", "./live", "live/.", "a\x00b", "a\nb", "a\x7fb", "a\u0085b", "\xff\xfe", strings.Repeat("x", 1025)} {
		if err := moq.ValidatePath(bad); !errors.Is(err, moq.ErrInvalidPath) {
			t.Errorf("moq.ValidatePath(%q) = %v, want moq.ErrInvalidPath", bad, err)
		}
	}
}

// TestOriginPublishInvalidPath: an in-process publisher gets the refusal at
// once, and nothing is announced.
func TestOriginPublishInvalidPath(t *testing.T) {
	o := moq.NewOrigin()
	defer o.Close()
	ann := o.Announced("")
	defer ann.Close()
	for _, bad := range []string{"/live/../../etc/", "live/a\x00b"} {
		bw := moq.NewBroadcast()
		if err := o.Publish(bad, bw.Reader()); !errors.Is(err, moq.ErrInvalidPath) {
			t.Errorf("Publish(%q) = %v, want moq.ErrInvalidPath", bad, err)
		}
		_ = bw.Close()
	}
	if a, ok, _ := ann.TryNext(); ok {
		t.Errorf("announced %+v after refused publishes", a)
	}
}

// TestPeerInvalidPath: a peer's SUBSCRIBE naming an invalid path is reset
// with Decode (5), and the session goes on.
func TestPeerInvalidPath(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{})
	conn := rawDial(t, ctx, srv)
	expectReset(t, "subscribe to ../secret", rawSubscribe(t, ctx, conn, 0, "../secret", "video"), wire.CodeDecode)
	expectReset(t, "subscribe to a track with a control character", rawSubscribe(t, ctx, conn, 1, "live/x", "vid\x01eo"), wire.CodeDecode)
	expectReset(t, "subscribe to an unknown broadcast", rawSubscribe(t, ctx, conn, 2, "live/none", "video"), wire.CodeNotFound)
}
