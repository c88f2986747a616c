package bench

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
)

// The bare relay tells its peers apart by ALPN.
const (
	alpnBarePublisher  = "moqbridge-bench-pub"
	alpnBareSubscriber = "moqbridge-bench-sub"
)

// bareQUICConfig is the QUIC configuration the MOQ relay and its clients
// use (protocol's quicConfig with DefaultLimits), so the ceiling pays the
// same transport costs: 1024 streams each way, 30 s idle timeout, 5 s
// keep-alive, datagrams and stream-reset partial delivery on.
func bareQUICConfig() *quic.Config {
	return &quic.Config{
		MaxIncomingStreams:               1024,
		MaxIncomingUniStreams:            1024,
		MaxIdleTimeout:                   30 * time.Second,
		KeepAlivePeriod:                  5 * time.Second,
		EnableDatagrams:                  true,
		EnableStreamResetPartialDelivery: true,
	}
}

// bareServerTLS is the MOQ relay's TLS: a self-signed ECDSA P-256
// certificate, TLS 1.3 only.
func bareServerTLS() (*tls.Config, [32]byte, error) {
	cert, fp, err := selfSigned()
	if err != nil {
		return nil, [32]byte{}, err
	}
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{alpnBarePublisher, alpnBareSubscriber},
		MinVersion:   tls.VersionTLS13,
	}
	return conf, fp, nil
}

// bareClientTLS pins the relay's certificate, as protocol.WithFingerprint does.
func bareClientTLS(fp [32]byte, alpn string) *tls.Config {
	conf := pinnedTLS(fp)
	conf.NextProtos = []string{alpn}
	return conf
}

// The bare group stream carries the same bytes as a MOQ Lite one: the
// stream type 0x00, a varint-length-prefixed header (subscribe id,
// sequence), then varint size + payload per frame, then FIN.
const bareStreamType = 0x00

// appendBareGroupHeader appends the stream type and header of group seq.
func appendBareGroupHeader(b []byte, seq uint64) []byte {
	body := quicvarint.Len(0) + quicvarint.Len(seq)
	b = append(b, bareStreamType)
	b = quicvarint.Append(b, uint64(body))
	b = quicvarint.Append(b, 0) // subscribe id: there is one subscription
	return quicvarint.Append(b, seq)
}

var errBareHeader = errors.New("malformed bare group header")

// readBareGroupHeader reads the stream type and header and returns the
// group sequence.
func readBareGroupHeader(r *bufio.Reader) (uint64, error) {
	typ, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	if typ != bareStreamType {
		return 0, fmt.Errorf("%w: stream type %#x", errBareHeader, typ)
	}
	n, err := quicvarint.Read(r)
	if err != nil {
		return 0, err
	}
	if _, err := quicvarint.Read(r); err != nil { // subscribe id
		return 0, err
	}
	seq, err := quicvarint.Read(r)
	if err != nil {
		return 0, err
	}
	if n != uint64(quicvarint.Len(0)+quicvarint.Len(seq)) {
		return 0, fmt.Errorf("%w: length %d", errBareHeader, n)
	}
	return seq, nil
}

// readBareFrame reads the next frame of a group stream into buf (grown if
// needed); io.EOF means the group ended cleanly before a frame.
func readBareFrame(r *bufio.Reader, buf []byte) ([]byte, error) {
	size, err := quicvarint.Read(r)
	if err != nil {
		return nil, err
	}
	if size > maxFrameSize {
		return nil, fmt.Errorf("frame of %d bytes exceeds %d", size, maxFrameSize)
	}
	if uint64(cap(buf)) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}
