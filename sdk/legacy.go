package sdk

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// The legacy container (hang-format §1.3): every MOQ frame is the
// presentation timestamp in microseconds as a QUIC variable-length integer
// (RFC 9000 §16) followed by the codec payload. There is no other header:
// the keyframe is the first frame of a group, and an empty payload is a
// marker that carries no sample.

// MaxTimestamp is the largest presentation timestamp the legacy container
// carries: 2^53−1 µs, the largest the JavaScript reader represents exactly.
const MaxTimestamp = time.Duration(maxU53) * time.Microsecond

// Errors of the legacy container.
var (
	ErrTimestampRange = errors.New("timestamp out of range")
	ErrShortFrame     = errors.New("frame too short")
)

// varintLen returns the size of the minimal QUIC varint encoding of v,
// which must be below 2^62.
func varintLen(v uint64) int {
	switch {
	case v < 1<<6:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<30:
		return 4
	default:
		return 8
	}
}

// putVarint writes the minimal QUIC varint encoding of v into b, which has
// room for varintLen(v) bytes, and returns the number of bytes written.
func putVarint(b []byte, v uint64) int {
	switch n := varintLen(v); n {
	case 1:
		b[0] = byte(v)
		return 1
	case 2:
		_ = b[1]
		b[0] = 0x40 | byte(v>>8)
		b[1] = byte(v)
		return 2
	case 4:
		_ = b[3]
		b[0] = 0x80 | byte(v>>24)
		b[1] = byte(v >> 16)
		b[2] = byte(v >> 8)
		b[3] = byte(v)
		return 4
	default:
		_ = b[7]
		b[0] = 0xc0 | byte(v>>56)
		for i := 1; i < 8; i++ {
			b[i] = byte(v >> (56 - 8*i))
		}
		return 8
	}
}

// readVarint decodes a QUIC varint of any length from the start of b.
func readVarint(b []byte) (v uint64, n int, err error) {
	if len(b) == 0 {
		return 0, 0, ErrShortFrame
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0, ErrShortFrame
	}
	v = uint64(b[0] & 0x3f)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, n, nil
}

// timestampMicros converts a presentation timestamp to the whole
// microseconds the legacy container carries, rounding to the nearest.
func timestampMicros(pts time.Duration) (uint64, error) {
	if pts < 0 || pts > MaxTimestamp {
		return 0, fmt.Errorf("%w: %v (want 0 to %v)", ErrTimestampRange, pts, MaxTimestamp)
	}
	return uint64((pts + time.Microsecond/2) / time.Microsecond), nil
}

// LegacyFrameLen returns the size of the legacy encoding of a frame with
// presentation timestamp pts and a payload of n bytes.
func LegacyFrameLen(pts time.Duration, n int) (int, error) {
	us, err := timestampMicros(pts)
	if err != nil {
		return 0, err
	}
	return varintLen(us) + n, nil
}

// AppendLegacyFrame appends the legacy container encoding of a frame to dst:
// pts rounded to whole microseconds as a minimal QUIC varint, then payload.
// It fails only if pts is negative or above MaxTimestamp.
func AppendLegacyFrame(dst []byte, pts time.Duration, payload []byte) ([]byte, error) {
	us, err := timestampMicros(pts)
	if err != nil {
		return dst, err
	}
	var hdr [8]byte
	n := putVarint(hdr[:], us)
	dst = append(dst, hdr[:n]...)
	return append(dst, payload...), nil
}

// DecodeLegacyFrame splits a legacy container frame into its presentation
// timestamp and payload; payload aliases b. Timestamps in any varint length
// are accepted. An empty payload is a marker frame, which readers skip.
func DecodeLegacyFrame(b []byte) (pts time.Duration, payload []byte, err error) {
	us, n, err := readVarint(b)
	if err != nil {
		return 0, nil, fmt.Errorf("legacy frame: timestamp: %w", err)
	}
	if us > math.MaxInt64/uint64(time.Microsecond) {
		return 0, nil, fmt.Errorf("legacy frame: %w: %d µs", ErrTimestampRange, us)
	}
	return time.Duration(us) * time.Microsecond, b[n:], nil
}
