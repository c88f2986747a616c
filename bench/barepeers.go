package bench

import (
	"bufio"
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
)

// barePublisher sends the load over bare QUIC, one stream per group. Its
// backpressure is QUIC's own: Write blocks until the data is packetised.
type barePublisher struct {
	conn *quic.Conn
}

func dialBarePublisher(ctx context.Context, addr string, fp [32]byte) (*barePublisher, error) {
	conn, err := quic.DialAddr(ctx, addr, bareClientTLS(fp, alpnBarePublisher), bareQUICConfig())
	if err != nil {
		return nil, err
	}
	return &barePublisher{conn: conn}, nil
}

// run publishes l until ctx ends.
func (p *barePublisher) run(ctx context.Context, l Load, c *counters) {
	pace := newPacer(l)
	defer pace.stop()
	buf := make([]byte, 0, 16+max(l.FrameSize, l.KeyframeSize))
	for seq := uint64(0); ctx.Err() == nil; seq++ {
		str, err := p.conn.OpenUniStreamSync(ctx)
		if err != nil {
			return
		}
		if _, err := str.Write(appendBareGroupHeader(buf[:0], seq)); err != nil {
			return
		}
		for idx := range l.FramesPerGroup {
			if !pace.wait(ctx) {
				str.CancelWrite(bareCodeCancel)
				return
			}
			// One Write per frame: the size prefix and the payload
			// share the buffer, which Write no longer uses on return.
			n := l.frameSize(idx)
			b := quicvarint.Append(buf[:0], uint64(n))
			b = b[:len(b)+n]
			stamp(b[len(b)-n:], seq, idx, time.Now())
			if _, err := str.Write(b); err != nil {
				return
			}
			c.published(n)
		}
		_ = str.Close()
	}
}

func (p *barePublisher) close() { _ = p.conn.CloseWithError(0, "") }

// bareSubscriber receives group streams from the bare relay.
type bareSubscriber struct {
	conn *quic.Conn
}

func dialBareSubscriber(ctx context.Context, addr string, fp [32]byte) (*bareSubscriber, error) {
	conn, err := quic.DialAddr(ctx, addr, bareClientTLS(fp, alpnBareSubscriber), bareQUICConfig())
	if err != nil {
		return nil, err
	}
	return &bareSubscriber{conn: conn}, nil
}

// streamReader is the per-stream read state, pooled so that receiving does
// not make the benchmark process, which shares the CPU with the relay,
// collect more garbage than it must.
type streamReader struct {
	br  *bufio.Reader
	buf []byte
}

var streamReaders = sync.Pool{New: func() any {
	return &streamReader{br: bufio.NewReaderSize(nil, 16<<10)}
}}

// run reads every group stream on its own goroutine until the connection
// closes (a stream read does not watch ctx).
func (s *bareSubscriber) run(ctx context.Context, l Load, c *counters) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var first sync.Once
	for {
		str, err := s.conn.AcceptUniStream(ctx)
		if err != nil {
			return
		}
		wg.Go(func() {
			complete := readBareGroup(str, l, c, func() { first.Do(func() { c.joined.Add(1) }) })
			if ctx.Err() == nil {
				c.groupEnded(complete)
			}
		})
	}
}

// readBareGroup reads one group stream to its end and reports whether it
// was complete: FIN after every frame of the group.
func readBareGroup(str *quic.ReceiveStream, l Load, c *counters, gotFrame func()) bool {
	sr := streamReaders.Get().(*streamReader)
	defer streamReaders.Put(sr)
	sr.br.Reset(str)
	defer sr.br.Reset(nil)
	seq, err := readBareGroupHeader(sr.br)
	if err != nil {
		return false
	}
	for idx := 0; ; idx++ {
		p, err := readBareFrame(sr.br, sr.buf)
		if err != nil {
			return errors.Is(err, io.EOF) && idx == l.FramesPerGroup
		}
		sr.buf = p[:0]
		gotFrame()
		c.received(l, p, seq, idx)
	}
}

func (s *bareSubscriber) close() { _ = s.conn.CloseWithError(0, "") }
