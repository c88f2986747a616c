package wire

import "testing"

func BenchmarkAppendGroupHeader(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 64)
	for i := uint64(0); b.Loop(); i++ {
		buf = AppendGroupHeader(buf[:0], Group{SubscribeID: 3, Sequence: i})
	}
}

func BenchmarkAppendFrameHeader(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 16)
	for i := uint64(0); b.Loop(); i++ {
		buf = AppendFrameHeader(buf[:0], i)
	}
}

func BenchmarkAppendSubscribe(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 128)
	m := Subscribe{ID: 1, Broadcast: "demo/bbb", Track: "video", Priority: 2}
	for b.Loop() {
		buf = AppendSubscribe(buf[:0], Lite04, m)
	}
}

func BenchmarkReaderReadMessage(b *testing.B) {
	var stream []byte
	for range 16 {
		stream = AppendSubscribe(stream, Lite04, Subscribe{ID: 1, Broadcast: "demo/bbb", Track: "video", Priority: 2})
	}
	r := NewReader(&loopReader{data: stream})
	b.ReportAllocs()
	b.SetBytes(int64(len(stream) / 16))
	for b.Loop() {
		body, err := r.ReadMessage(1024)
		if err != nil || len(body) != 21 {
			b.Fatal(len(body), err)
		}
	}
}

func BenchmarkDecodeSubscribe(b *testing.B) {
	body := mustBody(b, AppendSubscribe(nil, Lite04, Subscribe{ID: 1, Broadcast: "demo/bbb", Track: "video", Priority: 2}), 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeSubscribe(Lite04, body); err != nil {
			b.Fatal(err)
		}
	}
}
