package transport

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeOne decodes a message that must hold exactly one frame.
func decodeOne(t *testing.T, d qmuxDialect, msg []byte) *qmuxFrame {
	t.Helper()
	var frames []*qmuxFrame
	if err := decodeMessage(d, msg, func(f *qmuxFrame) error {
		frames = append(frames, f)
		return nil
	}); err != nil {
		t.Fatalf("decode % x: %v", msg, err)
	}
	if len(frames) != 1 {
		t.Fatalf("decode % x: %d frames, want 1", msg, len(frames))
	}
	return frames[0]
}

// jsClientParams is what @moq/qmux 0.0.6 sends first on a qmux-00 connection.
const jsClientParams = "ff 51 53 30 0d 0a 0d 0a 20 04 04 80 10 00 00 05 04 80 04 00 00 06 04 80 04 00 00 07 04 80 04 00 00 08 02 40 64 09 02 40 64"

func TestTransportParamsFromJSClient(t *testing.T) {
	msg := mustHex(t, jsClientParams)
	f := decodeOne(t, dialectQMux00, msg)
	want := transportParams{
		MaxData:                 1 << 20,
		MaxStreamDataBidiLocal:  256 << 10,
		MaxStreamDataBidiRemote: 256 << 10,
		MaxStreamDataUni:        256 << 10,
		MaxStreamsBidi:          100,
		MaxStreamsUni:           100,
	}
	if f.kind != fkTransportParams || f.params != want {
		t.Fatalf("decoded %+v (kind %d), want %+v", f.params, f.kind, want)
	}
	// Our encoder writes the same bytes for the same values.
	if got := appendTransportParams(nil, want); !bytes.Equal(got, msg) {
		t.Errorf("encoded % x\nwant      % x", got, msg)
	}
}

func TestTransportParamsDecoding(t *testing.T) {
	for _, c := range []struct {
		name string
		body string
		want transportParams
		bad  bool
	}{
		{"empty", "", transportParams{}, false},
		{"unknown id skipped", "3f 03 01 02 03 04 01 05", transportParams{MaxData: 5}, false},
		{"empty value keeps default", "04 00 08 01 07", transportParams{MaxStreamsBidi: 7}, false},
		{"value longer than varint", "04 02 05 00", transportParams{}, true},
		{"truncated", "04 04 80 10", transportParams{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := decodeTransportParams(mustHex(t, c.body))
			if c.bad {
				var fe *frameError
				if !errors.As(err, &fe) || fe.code != errCodeTransportParameter {
					t.Fatalf("error = %v, want TRANSPORT_PARAMETER_ERROR", err)
				}
				return
			}
			if err != nil || p != c.want {
				t.Fatalf("got %+v, %v; want %+v", p, err, c.want)
			}
		})
	}
}

func TestFrameEncodingBytes(t *testing.T) {
	for _, c := range []struct {
		name string
		got  []byte
		want string
	}{
		{"legacy STREAM", appendStreamFrame(nil, dialectLegacy, 1, []byte("hi"), false), "08 01 68 69"},
		{"legacy FIN", appendStreamFrame(nil, dialectLegacy, 4, nil, true), "09 04"},
		{"legacy RESET_STREAM", appendResetStream(nil, dialectLegacy, 3, 7, 99), "04 03 07"},
		{"legacy STOP_SENDING", appendStopSending(nil, dialectLegacy, 0, 5), "05 00 05"},
		{"legacy APPLICATION_CLOSE", appendClose(nil, dialectLegacy, true, 13, "bye"), "1d 0d 62 79 65"},
		{"qmux STREAM", appendStreamFrame(nil, dialectQMux00, 1, []byte("hi"), false), "0a 01 02 68 69"},
		{"qmux FIN", appendStreamFrame(nil, dialectQMux00, 4, nil, true), "0b 04 00"},
		{"qmux RESET_STREAM", appendResetStream(nil, dialectQMux00, 3, 7, 99), "04 03 07 40 63"},
		{"qmux STOP_SENDING", appendStopSending(nil, dialectQMux00, 0, 5), "05 00 05"},
		{"qmux APPLICATION_CLOSE", appendClose(nil, dialectQMux00, true, 13, "bye"), "1d 0d 00 03 62 79 65"},
		{"qmux CONNECTION_CLOSE", appendClose(nil, dialectQMux00, false, 3, ""), "1c 03 00 00"},
		{"qmux MAX_DATA", appendValueFrame(nil, ftMaxData, 1<<20), "10 80 10 00 00"},
		{"qmux MAX_STREAM_DATA", appendStreamValueFrame(nil, ftMaxStreamData, 2, 64), "11 02 40 40"},
		{"qmux MAX_STREAMS uni", appendValueFrame(nil, ftMaxStreamsUni, 100), "13 40 64"},
	} {
		if want := mustHex(t, c.want); !bytes.Equal(c.got, want) {
			t.Errorf("%s: % x, want % x", c.name, c.got, want)
		}
	}
}

func TestFrameDecoding(t *testing.T) {
	for _, c := range []struct {
		name string
		d    qmuxDialect
		msg  string
		want qmuxFrame
	}{
		{"legacy STREAM", dialectLegacy, "08 05 01 02", qmuxFrame{kind: fkStream, id: 5, data: []byte{1, 2}}},
		{"legacy empty FIN", dialectLegacy, "09 02", qmuxFrame{kind: fkStream, id: 2, data: []byte{}, fin: true}},
		{"legacy RESET", dialectLegacy, "04 01 07", qmuxFrame{kind: fkResetStream, id: 1, code: 7}},
		{"legacy STOP", dialectLegacy, "05 01 05", qmuxFrame{kind: fkStopSending, id: 1, code: 5}},
		{"legacy CLOSE", dialectLegacy, "1d 0d 62 79 65", qmuxFrame{kind: fkClose, appClose: true, code: 13, reason: "bye"}},
		{"qmux STREAM LEN", dialectQMux00, "0a 01 02 68 69", qmuxFrame{kind: fkStream, id: 1, data: []byte("hi")}},
		{"qmux STREAM OFF LEN FIN", dialectQMux00, "0f 01 05 01 68", qmuxFrame{kind: fkStream, id: 1, hasOffset: true, offset: 5, data: []byte("h"), fin: true}},
		{"qmux STREAM to end", dialectQMux00, "08 01 68 69", qmuxFrame{kind: fkStream, id: 1, data: []byte("hi")}},
		{"qmux RESET", dialectQMux00, "04 03 07 00", qmuxFrame{kind: fkResetStream, id: 3, code: 7}},
		{"qmux CONNECTION_CLOSE", dialectQMux00, "1c 0a 08 02 68 69", qmuxFrame{kind: fkClose, code: 10, reason: "hi"}},
		{"qmux APPLICATION_CLOSE", dialectQMux00, "1d 0d 00 03 62 79 65", qmuxFrame{kind: fkClose, appClose: true, code: 13, reason: "bye"}},
		{"qmux MAX_DATA", dialectQMux00, "10 44 00", qmuxFrame{kind: fkMaxData, value: 1024}},
		{"qmux MAX_STREAM_DATA", dialectQMux00, "11 01 44 00", qmuxFrame{kind: fkMaxStreamData, id: 1, value: 1024}},
		{"qmux MAX_STREAMS bidi", dialectQMux00, "12 05", qmuxFrame{kind: fkMaxStreams, value: 5}},
		{"qmux MAX_STREAMS uni", dialectQMux00, "13 05", qmuxFrame{kind: fkMaxStreams, uni: true, value: 5}},
		{"qmux DATA_BLOCKED", dialectQMux00, "14 05", qmuxFrame{kind: fkDataBlocked, value: 5}},
		{"qmux STREAM_DATA_BLOCKED", dialectQMux00, "15 01 05", qmuxFrame{kind: fkStreamDataBlocked, id: 1, value: 5}},
		{"qmux STREAMS_BLOCKED uni", dialectQMux00, "17 05", qmuxFrame{kind: fkStreamsBlocked, uni: true, value: 5}},
		{"qmux DATAGRAM", dialectQMux00, "30 01 02 03", qmuxFrame{kind: fkIgnored}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []qmuxFrame
			err := decodeMessage(c.d, mustHex(t, c.msg), func(f *qmuxFrame) error {
				got = append(got, *f)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if c.want.kind == fkIgnored {
				if len(got) != 0 {
					t.Fatalf("ignored frame delivered: %+v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%d frames", len(got))
			}
			if got[0].data == nil && c.want.data != nil || !bytes.Equal(got[0].data, c.want.data) {
				t.Fatalf("data %q, want %q", got[0].data, c.want.data)
			}
			got[0].data, c.want.data = nil, nil
			if !reflect.DeepEqual(got[0], c.want) {
				t.Fatalf("got %+v\nwant %+v", got[0], c.want)
			}
		})
	}
}

func TestFrameDecodingErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		d    qmuxDialect
		msg  string
	}{
		{"legacy unknown type", dialectLegacy, "07 00"},
		{"legacy truncated id", dialectLegacy, "08 40"},
		{"legacy truncated code", dialectLegacy, "04 01"},
		{"qmux truncated length", dialectQMux00, "0a 01 05 68"},
		{"qmux truncated reason", dialectQMux00, "1d 00 00 05 68"},
		{"empty", dialectQMux00, ""},
	} {
		err := decodeMessage(c.d, mustHex(t, c.msg), func(*qmuxFrame) error { return nil })
		var fe *frameError
		if !errors.As(err, &fe) {
			t.Errorf("%s: error %v, want a frame error", c.name, err)
		}
	}
}

func TestQMuxSeveralFramesPerMessage(t *testing.T) {
	msg := appendStreamFrame(nil, dialectQMux00, 0, []byte("a"), false)
	msg = appendValueFrame(msg, ftMaxData, 9)
	msg = appendStreamFrame(msg, dialectQMux00, 0, nil, true)
	var kinds []frameKind
	if err := decodeMessage(dialectQMux00, msg, func(f *qmuxFrame) error {
		kinds = append(kinds, f.kind)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(kinds, []frameKind{fkStream, fkMaxData, fkStream}) {
		t.Errorf("kinds %v", kinds)
	}
}

func TestCloseReasonTruncation(t *testing.T) {
	reason := strings.Repeat("é", maxCloseReason) // 2 bytes each
	f := decodeOne(t, dialectQMux00, appendClose(nil, dialectQMux00, true, 1, reason))
	if len(f.reason) > maxCloseReason || !strings.HasPrefix(reason, f.reason) {
		t.Errorf("reason of %d bytes is not a prefix within the limit", len(f.reason))
	}
}
