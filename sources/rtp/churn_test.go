package rtp

import (
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

// TestSenderChurnLogBounded: packets of ever new senders (SSRCs) on one
// port, as two senders mixed on it or forged packets make, restart the
// media at every packet but log about it at most once a second; a steady
// sender after them is received.
func TestSenderChurnLogBounded(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	var logs testkit.LogBuffer
	src, err := New(Config{SDP: opusSDP("IP4 127.0.0.1"), Listen: []string{"127.0.0.1:0"}, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Listen(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, src.Addrs()[0].RTP)
	start := time.Now()
	err = receive(t, ctx, src, 20, func() {
		for i := range 500 {
			sendOpus(t, c, 1, uint32(1000+i))
		}
		sendOpus(t, c, 50, 7)
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(logs.String(), "a new sender (SSRC)")
	if limit := int(time.Since(start)/time.Second) + 2; lines == 0 || lines > limit {
		t.Errorf("%d lines about new senders in %v, want 1 to %d:\n%s", lines, time.Since(start), limit, logs.String())
	}
}
