package wire

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/moqbridge/moqbridge/moq"
)

var allVersions = []Version{Lite01, Lite02, Lite03, Lite04}

var (
	genVersion       = rapid.SampledFrom(allVersions)
	genModernVersion = rapid.SampledFrom([]Version{Lite03, Lite04})
	genLegacyVersion = rapid.SampledFrom([]Version{Lite01, Lite02})

	// genVarint favours the edges of each varint length.
	genVarint = rapid.OneOf(
		rapid.Uint64Range(0, 70),
		rapid.SampledFrom([]uint64{
			63, 64, 16383, 16384, 1<<30 - 1, 1 << 30, MaxVarint - 1, MaxVarint,
		}),
		rapid.Uint64Range(0, MaxVarint),
	)
	genBound = rapid.Map(genVarint, func(v uint64) GroupBound { return GroupBound(v) })

	// genString mixes arbitrary UTF-8, slash-heavy paths that need
	// cleaning, and strings long enough to need multi-byte lengths.
	genString = rapid.OneOf(
		rapid.String(),
		rapid.StringMatching(`[/a-c]{0,16}`),
		rapid.Map(rapid.IntRange(0, 20000), func(n int) string {
			return strings.Repeat("ab/", n/3)
		}),
	)
	genPrefix = rapid.SliceOfN(rapid.Byte(), 0, 8)
)

// encodeAfterPrefix encodes after a random prefix, checks the prefix survives,
// and returns the message body found skip bytes after it.
func encodeAfterPrefix(t *rapid.T, skip int, appendFn func([]byte) []byte) []byte {
	prefix := genPrefix.Draw(t, "prefix")
	b := appendFn(bytes.Clone(prefix))
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("prefix overwritten: % x", b)
	}
	body, ok := messageBody(b[len(prefix):], skip)
	if !ok {
		t.Fatalf("not a length-prefixed message: % x", b[len(prefix):])
	}
	return body
}

func equal(t *rapid.T, got, want any, err error) {
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestRoundTripAnnounceInterest(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genVersion.Draw(t, "v")
		m := AnnounceInterest{Prefix: genString.Draw(t, "prefix"), ExcludeHop: genVarint.Draw(t, "exclude")}
		body := encodeAfterPrefix(t, 0, func(b []byte) []byte { return AppendAnnounceInterest(b, v, m) })
		got, err := DecodeAnnounceInterest(v, body)
		want := AnnounceInterest{Prefix: moq.CleanPath(m.Prefix)}
		if v == Lite04 {
			want.ExcludeHop = m.ExcludeHop
		}
		equal(t, got, want, err)
	})
}

func TestRoundTripAnnounceInit(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genLegacyVersion.Draw(t, "v")
		m := AnnounceInit{Suffixes: rapid.SliceOfN(genString, 0, 20).Draw(t, "suffixes")}
		body := encodeAfterPrefix(t, 0, func(b []byte) []byte { return AppendAnnounceInit(b, v, m) })
		got, err := DecodeAnnounceInit(v, body)
		var want AnnounceInit
		for _, s := range m.Suffixes {
			want.Suffixes = append(want.Suffixes, moq.CleanPath(s))
		}
		equal(t, got, want, err)
	})
}

func TestRoundTripAnnounce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genVersion.Draw(t, "v")
		m := Announce{
			Active:   rapid.Bool().Draw(t, "active"),
			Suffix:   genString.Draw(t, "suffix"),
			HopCount: rapid.Uint64Range(0, MaxHops).Draw(t, "hop count"),
			HopIDs:   rapid.SliceOfN(genVarint, 0, MaxHops).Draw(t, "hop ids"),
		}
		if rapid.Bool().Draw(t, "consistent") {
			m.HopCount = uint64(len(m.HopIDs))
		}
		body := encodeAfterPrefix(t, 0, func(b []byte) []byte { return AppendAnnounce(b, v, m) })
		got, err := DecodeAnnounce(v, body)

		want := Announce{Active: m.Active, Suffix: moq.CleanPath(m.Suffix)}
		hops := max(m.HopCount, uint64(len(m.HopIDs)))
		switch v {
		case Lite03:
			want.HopCount = hops
		case Lite04:
			want.HopCount = hops
			if hops > 0 {
				want.HopIDs = append([]uint64{}, m.HopIDs...)
				for uint64(len(want.HopIDs)) < hops {
					want.HopIDs = append(want.HopIDs, 0)
				}
			}
		}
		equal(t, got, want, err)
	})
}

func TestRoundTripSubscribe(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genVersion.Draw(t, "v")
		m := Subscribe{
			ID:           genVarint.Draw(t, "id"),
			Broadcast:    genString.Draw(t, "broadcast"),
			Track:        genString.Draw(t, "track"),
			Priority:     rapid.Uint8().Draw(t, "priority"),
			Ordered:      rapid.Bool().Draw(t, "ordered"),
			MaxLatencyMs: genVarint.Draw(t, "latency"),
			Start:        genBound.Draw(t, "start"),
			End:          genBound.Draw(t, "end"),
		}
		body := encodeAfterPrefix(t, 0, func(b []byte) []byte { return AppendSubscribe(b, v, m) })
		got, err := DecodeSubscribe(v, body)
		want := m
		want.Broadcast = moq.CleanPath(m.Broadcast)
		if v.legacy() {
			want.Ordered, want.MaxLatencyMs, want.Start, want.End = false, 0, 0, 0
		}
		equal(t, got, want, err)
	})
}

func TestRoundTripSubscribeOK(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genVersion.Draw(t, "v")
		m := SubscribeOK{
			Priority:     rapid.Uint8().Draw(t, "priority"),
			Ordered:      rapid.Bool().Draw(t, "ordered"),
			MaxLatencyMs: genVarint.Draw(t, "latency"),
			Start:        genBound.Draw(t, "start"),
			End:          genBound.Draw(t, "end"),
		}
		skip := 0
		if !v.legacy() {
			skip = 1 // the response type
		}
		var encoded []byte
		body := encodeAfterPrefix(t, skip, func(b []byte) []byte {
			encoded = AppendSubscribeOK(b, v, m)
			return encoded
		})
		if !v.legacy() && encoded[len(encoded)-len(body)-2] != byte(ResponseOK) {
			t.Fatalf("missing response type: % x", encoded)
		}
		got, err := DecodeSubscribeOK(v, body)
		var want SubscribeOK
		switch v {
		case Lite01:
			want.Priority = m.Priority
		case Lite02:
		default:
			want = m
		}
		equal(t, got, want, err)
	})
}

func TestRoundTripSubscribeDrop(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genModernVersion.Draw(t, "v")
		m := SubscribeDrop{Start: genVarint.Draw(t, "start"), End: genVarint.Draw(t, "end"), Code: genVarint.Draw(t, "code")}
		b := AppendSubscribeDrop(nil, v, m)
		if b[0] != byte(ResponseDrop) {
			t.Fatalf("missing response type: % x", b)
		}
		body := encodeAfterPrefix(t, 1, func(b []byte) []byte { return AppendSubscribeDrop(b, v, m) })
		got, err := DecodeSubscribeDrop(v, body)
		equal(t, got, m, err)
	})
}

func TestRoundTripSubscribeUpdate(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genVersion.Draw(t, "v")
		m := SubscribeUpdate{
			Priority:     rapid.Uint8().Draw(t, "priority"),
			Ordered:      rapid.Bool().Draw(t, "ordered"),
			MaxLatencyMs: genVarint.Draw(t, "latency"),
			Start:        genBound.Draw(t, "start"),
			End:          genBound.Draw(t, "end"),
		}
		body := encodeAfterPrefix(t, 0, func(b []byte) []byte { return AppendSubscribeUpdate(b, v, m) })
		got, err := DecodeSubscribeUpdate(v, body)
		want := m
		if v.legacy() {
			want = SubscribeUpdate{Priority: m.Priority}
		}
		equal(t, got, want, err)
	})
}

func TestRoundTripGroup(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := Group{SubscribeID: genVarint.Draw(t, "id"), Sequence: genVarint.Draw(t, "seq")}
		body := encodeAfterPrefix(t, 1, func(b []byte) []byte { return AppendGroupHeader(b, m) })
		got, err := DecodeGroup(body)
		equal(t, got, m, err)
	})
}

func TestRoundTripFrameHeader(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		size := genVarint.Draw(t, "size")
		b := AppendFrameHeader(nil, size)
		d := NewDecoder(b)
		got, err := d.Varint()
		if err == nil {
			err = d.Done()
		}
		equal(t, got, size, err)
		if len(b) != VarintLen(size) {
			t.Fatalf("len %d, VarintLen %d", len(b), VarintLen(size))
		}
	})
}

func TestRoundTripProbe(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genModernVersion.Draw(t, "v")
		m := Probe{BitrateBps: genVarint.Draw(t, "bitrate"), RTTms: genVarint.Draw(t, "rtt")}
		body := encodeAfterPrefix(t, 0, func(b []byte) []byte { return AppendProbe(b, v, m) })
		got, err := DecodeProbe(v, body)
		want := m
		if v == Lite03 {
			want.RTTms = 0
		}
		equal(t, got, want, err)
	})
}

func TestRoundTripGoaway(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := Goaway{URI: genString.Draw(t, "uri")}
		body := encodeAfterPrefix(t, 0, func(b []byte) []byte { return AppendGoaway(b, m) })
		got, err := DecodeGoaway(body)
		equal(t, got, m, err)
	})
}

func TestRoundTripFetch(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := Fetch{
			Broadcast: genString.Draw(t, "broadcast"),
			Track:     genString.Draw(t, "track"),
			Priority:  rapid.Uint8().Draw(t, "priority"),
			Group:     genVarint.Draw(t, "group"),
		}
		body := encodeAfterPrefix(t, 0, func(b []byte) []byte { return AppendFetch(b, m) })
		got, err := DecodeFetch(body)
		want := m
		want.Broadcast = moq.CleanPath(m.Broadcast)
		equal(t, got, want, err)
	})
}

func TestRoundTripSessionInfo(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := SessionInfo{BitrateBps: genVarint.Draw(t, "bitrate")}
		body := encodeAfterPrefix(t, 0, func(b []byte) []byte { return AppendSessionInfo(b, m) })
		got, err := DecodeSessionInfo(body)
		equal(t, got, m, err)
	})
}

// genParams draws up to MaxSetupParams parameters with distinct keys.
var genParams = rapid.Custom(func(t *rapid.T) []Parameter {
	params := rapid.SliceOfNDistinct(
		rapid.Custom(func(t *rapid.T) Parameter {
			return Parameter{
				Key:   genVarint.Draw(t, "key"),
				Value: genVarint.Draw(t, "value"),
				Bytes: rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(t, "bytes"),
			}
		}),
		0, MaxSetupParams,
		func(p Parameter) uint64 { return p.Key },
	).Draw(t, "params")
	if len(params) == 0 {
		return nil
	}
	return params
})

// wireParams is what decoding an encoded parameter list yields: varint
// parameters first, then byte parameters, each with only the field its key
// selects.
func wireParams(params []Parameter) []Parameter {
	var out []Parameter
	for _, odd := range []bool{false, true} {
		for _, p := range params {
			if (p.Key%2 == 1) != odd {
				continue
			}
			if odd {
				w := Parameter{Key: p.Key}
				if len(p.Bytes) > 0 {
					w.Bytes = append([]byte(nil), p.Bytes...)
				}
				out = append(out, w)
			} else {
				out = append(out, Parameter{Key: p.Key, Value: p.Value})
			}
		}
	}
	return out
}

func encodeSetupAfterPrefix(t *rapid.T, typ byte, appendFn func([]byte) []byte) []byte {
	prefix := genPrefix.Draw(t, "prefix")
	b := appendFn(bytes.Clone(prefix))
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("prefix overwritten: % x", b)
	}
	body, ok := setupBody(b[len(prefix):], typ)
	if !ok {
		t.Fatalf("not a SETUP message of type %#x: % x", typ, b[len(prefix):])
	}
	return body
}

func TestRoundTripClientSetup(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		versions := rapid.SliceOfN(rapid.Map(genVarint, func(v uint64) Version { return Version(v) }), 0, MaxSetupVersions).Draw(t, "versions")
		if len(versions) == 0 {
			versions = nil
		}
		m := ClientSetup{Versions: versions, Params: genParams.Draw(t, "params")}
		body := encodeSetupAfterPrefix(t, 0x20, func(b []byte) []byte { return AppendClientSetup(b, m) })
		got, err := DecodeClientSetup(body)
		equal(t, got, ClientSetup{Versions: m.Versions, Params: wireParams(m.Params)}, err)
	})
}

func TestRoundTripServerSetup(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := ServerSetup{Version: Version(genVarint.Draw(t, "version")), Params: genParams.Draw(t, "params")}
		body := encodeSetupAfterPrefix(t, 0x21, func(b []byte) []byte { return AppendServerSetup(b, m) })
		got, err := DecodeServerSetup(body)
		equal(t, got, ServerSetup{Version: m.Version, Params: wireParams(m.Params)}, err)
	})
}

func TestRoundTripGroupBound(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		seq := rapid.Uint64Range(0, MaxVarint-1).Draw(t, "seq")
		g := BoundAt(seq)
		got, ok := g.Sequence()
		if !ok || got != seq || uint64(g) != seq+1 {
			t.Fatalf("BoundAt(%d) = %d, Sequence = %d, %v", seq, g, got, ok)
		}
	})
	if _, ok := GroupBound(0).Sequence(); ok {
		t.Fatal("zero bound has a sequence")
	}
}
