package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/moqbridge/moqbridge/protocol/internal/transport"
	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// setupTimeout bounds the legacy SETUP exchange so a silent peer cannot hold
// a connection open forever.
const setupTimeout = 10 * time.Second

// legacyDefault is the SETUP version list, in preference order, used when the
// caller names none: what the reference client offers, minus IETF drafts.
var legacyDefault = []Version{Lite02, Lite01}

// setupStream is the legacy session stream, kept open for the whole session.
type setupStream struct {
	str transport.Stream
	r   *wire.Reader
}

// implementationName goes into the Implementation SETUP parameter.
const implementationName = "moqbridge"

// acceptSetup runs the server half of the Lite01/Lite02 SETUP exchange: the
// client's first bidirectional stream carries 0x20 CLIENT_SETUP; the server
// picks the first version in the client's list it accepts.
func acceptSetup(ctx context.Context, conn transport.Session, accept []Version) (Version, *setupStream, error) {
	if len(accept) == 0 {
		accept = legacyDefault
	}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	str, err := conn.AcceptStream(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("waiting for CLIENT_SETUP: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { str.CancelRead(uint64(wire.CodeTimeout)) })
	defer stop()
	r := wire.NewReader(str)
	t, err := r.ReadVarint()
	if err != nil {
		return 0, nil, fmt.Errorf("CLIENT_SETUP type: %w", err)
	}
	if wire.StreamType(t) != wire.StreamClientCompat {
		return 0, nil, coded(wire.CodeUnexpectedStream, "first stream has type %#x, want CLIENT_SETUP 0x20", t)
	}
	body, err := readSetupBody(r)
	if err != nil {
		return 0, nil, fmt.Errorf("CLIENT_SETUP: %w", err)
	}
	cs, err := wire.DecodeClientSetup(body)
	if err != nil {
		return 0, nil, coded(wire.CodeDecode, "CLIENT_SETUP: %w", err)
	}
	var chosen Version
	for _, v := range cs.Versions {
		if slices.Contains(accept, v) {
			chosen = v
			break
		}
	}
	if chosen == 0 {
		return 0, nil, coded(wire.CodeVersion, "no common version: client offers %v, server accepts %v", cs.Versions, accept)
	}
	if _, err := str.Write(wire.AppendServerSetup(nil, wire.ServerSetup{Version: chosen})); err != nil {
		return 0, nil, fmt.Errorf("SERVER_SETUP: %w", err)
	}
	return chosen, &setupStream{str: str, r: r}, nil
}

// openSetup runs the client half of the SETUP exchange.
func openSetup(ctx context.Context, conn transport.Session, offer []Version) (Version, *setupStream, error) {
	if len(offer) == 0 {
		offer = legacyDefault
	}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	str, err := conn.OpenStream(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("opening the setup stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { str.CancelRead(uint64(wire.CodeTimeout)) })
	defer stop()
	msg := wire.AppendClientSetup(nil, wire.ClientSetup{
		Versions: offer,
		Params:   []wire.Parameter{{Key: 7, Bytes: []byte(implementationName)}},
	})
	if _, err := str.Write(msg); err != nil {
		return 0, nil, fmt.Errorf("CLIENT_SETUP: %w", err)
	}
	r := wire.NewReader(str)
	t, err := r.ReadVarint()
	if err != nil {
		return 0, nil, fmt.Errorf("SERVER_SETUP type: %w", err)
	}
	if wire.StreamType(t) != wire.StreamServerCompat {
		return 0, nil, coded(wire.CodeDecode, "setup reply has type %#x, want SERVER_SETUP 0x21", t)
	}
	body, err := readSetupBody(r)
	if err != nil {
		return 0, nil, fmt.Errorf("SERVER_SETUP: %w", err)
	}
	ss, err := wire.DecodeServerSetup(body)
	if err != nil {
		return 0, nil, coded(wire.CodeDecode, "SERVER_SETUP: %w", err)
	}
	if !slices.Contains(offer, ss.Version) {
		return 0, nil, coded(wire.CodeVersion, "server chose %s, which was not offered", ss.Version)
	}
	return ss.Version, &setupStream{str: str, r: r}, nil
}

// readSetupBody reads the u16-sized body of a SETUP message.
func readSetupBody(r *wire.Reader) ([]byte, error) {
	n, err := r.ReadU16()
	if err != nil {
		return nil, err
	}
	body := make([]byte, n)
	if err := r.ReadFull(body); err != nil {
		return nil, err
	}
	return body, nil
}

// runSessionStream keeps the legacy session stream open and reads the
// SESSION_INFO messages that may arrive on it. A FIN from the peer is
// tolerated (the reference client ignores one too); a reset ends the session.
func (s *Session) runSessionStream(st *setupStream) {
	stop := context.AfterFunc(s.ctx, func() { st.str.CancelRead(uint64(wire.CodeCancel)) })
	defer stop()
	for {
		body, err := st.r.ReadMessage(s.limits.MaxMessageSize)
		if err != nil {
			if errors.Is(err, io.EOF) || s.ctx.Err() != nil {
				return
			}
			s.log.Debug("moq session stream ended", "err", err)
			var se *StreamError
			if errors.As(err, &se) {
				s.end(fmt.Errorf("session stream reset: %w", err))
				_ = s.conn.CloseWithError(uint64(wire.CodeClosed), "session stream reset")
			}
			return
		}
		if _, err := wire.DecodeSessionInfo(body); err != nil {
			s.log.Debug("moq ignoring malformed SESSION_INFO", "err", err)
		}
	}
}
