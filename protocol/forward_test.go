package protocol

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// TestOverloadDropsWholeGroups: a subscriber that takes data at half the
// track's rate gets whole groups, not the first part of every group. The
// relay finishes the group in flight and skips the ones it could not send
// within the group lag, instead of starting every group and resetting it
// when the next one overtakes it.
//
// Over WebTransport the subscriber reads every group stream as data
// arrives, concurrently, as a browser does; WebTransport has no send
// priorities, so the relay itself holds later groups back while the head
// is being written. Over raw QUIC, whose clients are relays and tools
// reading at network speed, the reader takes the streams in order, which
// with small receive windows stands in for a link of half the track's
// rate (the relay's priorities order the groups there).
func TestOverloadDropsWholeGroups(t *testing.T) {
	// Not over the WebSocket fallback: there the Go client advertises
	// receive windows of megabytes, so a subscriber that reads slowly
	// buffers seconds of media on its own side before the relay feels it.
	for _, kind := range []string{"quic", "webtransport"} {
		t.Run(kind, func(t *testing.T) { testOverloadDropsWholeGroups(t, kind) })
	}
}

func testOverloadDropsWholeGroups(t *testing.T, kind string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := testServer(t, ServerConfig{Limits: Limits{MaxGroupLag: 400 * time.Millisecond}})
	_, _, tw := publishTrack(t, ctx, srv, "quic", "live/overload", "video")
	waitAnnounced(t, ctx, srv.Origin(), "live/overload")

	// The track: 200 kB groups of 10 frames, one frame every 10 ms, so
	// 2 MB/s. The subscriber reads 1 MB/s in all: one 16 KiB chunk per
	// 16 ms, shared by all streams.
	const groups, frames, size = 40, 10, 20 << 10
	const readChunk, readPause = 16 << 10, 16 * time.Millisecond
	var conn transport.Session
	switch kind {
	case "quic":
		conn = rawDial(t, ctx, srv)
	case "webtransport":
		conn = rawDialWebTransport(t, ctx, srv)
	}
	rawSubscribe(t, ctx, conn, 0, "live/overload", "video")

	type outcome struct{ complete, partial, wasted int } // wasted: payload bytes of partial groups
	done := make(chan outcome, 1)
	go func() {
		var (
			mu      sync.Mutex
			o       outcome
			readers sync.WaitGroup
		)
		tokens := time.NewTicker(readPause)
		defer tokens.Stop()
		defer func() {
			readers.Wait()
			done <- o
		}()
		for {
			str, err := conn.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			read := func() {
				n, err := readThrottled(str, make([]byte, readChunk), tokens.C)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && n == frames*size:
					o.complete++
				case n > 0:
					o.partial++
					o.wasted += n
				}
			}
			if kind == "quic" {
				read() // in order, one stream at a time
			} else {
				readers.Go(read) // every stream at once
			}
		}
	}()

	payload := bytes.Repeat([]byte{0x5a}, size)
	for range groups {
		gw, err := tw.AppendGroup()
		if err != nil {
			t.Fatal(err)
		}
		for range frames {
			_ = gw.WriteFrame(payload)
			time.Sleep(10 * time.Millisecond)
		}
		_ = gw.Close()
	}
	time.Sleep(time.Second) // let the last group drain
	// Counted before the subscriber leaves, which removes its session.
	var dropped uint64
	for _, sess := range srv.Sessions() {
		dropped += sess.Stats().GroupsDropped
	}
	_ = conn.CloseWithError(0, "")
	o := <-done

	t.Logf("%d groups published: %d arrived complete, %d cut short (%d kB of them); relay dropped %d",
		groups, o.complete, o.partial, o.wasted>>10, dropped)
	if dropped == 0 {
		t.Error("the relay dropped no group although the subscriber took half the track's rate")
	}
	// Half the rate carries about half the groups; whole ones, mostly.
	if o.complete < groups/5 {
		t.Errorf("only %d of %d groups arrived complete at half the track's rate", o.complete, groups)
	}
	// A group may get a little data ahead while the one before it waits
	// for the publisher, and still be skipped; but most of the bandwidth
	// must go to groups that arrive whole.
	if useful := o.complete * frames * size; o.wasted > useful/2 {
		t.Errorf("%d kB went to groups cut short against %d kB in complete ones: the relay spends its bandwidth on groups it then drops",
			o.wasted>>10, useful>>10)
	}
}

// rawDialWebTransport is rawDial over WebTransport, which has no send
// priorities: the relay must keep the head group first by itself.
func rawDialWebTransport(t *testing.T, ctx context.Context, srv *Server) transport.Session {
	t.Helper()
	conn, err := transport.DialWebTransport(ctx, serverURL(srv, "webtransport", ""), transport.DialConfig{
		TLSConfig: transport.PinnedTLSConfig(srv.Fingerprint()),
		Protocols: []string{"moq-lite-04"},
		QUICConfig: &quic.Config{
			InitialStreamReceiveWindow:       64 << 10,
			MaxStreamReceiveWindow:           64 << 10,
			InitialConnectionReceiveWindow:   256 << 10,
			MaxConnectionReceiveWindow:       256 << 10,
			MaxIncomingUniStreams:            4,
			EnableDatagrams:                  true,
			EnableStreamResetPartialDelivery: true,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseWithError(0, "") })
	return conn
}

// readThrottled reads one group stream (header, then frames), len(buf)
// bytes per token, and returns the payload bytes read; err is nil when the
// stream ended with FIN.
func readThrottled(str transport.ReceiveStream, buf []byte, tokens <-chan time.Time) (int, error) {
	r := wire.NewReader(str)
	if _, err := r.ReadByte(); err != nil {
		return 0, err
	}
	if _, err := r.ReadMessage(1 << 10); err != nil {
		return 0, err
	}
	n := 0
	for {
		size, err := r.ReadVarint()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		for left := int(size); left > 0; {
			chunk := buf[:min(left, len(buf))]
			if err := r.ReadFull(chunk); err != nil {
				return n, err
			}
			left -= len(chunk)
			n += len(chunk)
			<-tokens
		}
	}
}
