package moq

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fastBackoff keeps the tests short.
var fastBackoff = sdk.Backoff{Min: 50 * time.Millisecond, Max: 300 * time.Millisecond}

// frameBytes is frame i of group seq written by generation gen of a
// publisher: every frame's bytes are different, so a reader can check
// each one it gets.
func frameBytes(gen int, seq uint64, i int) []byte {
	return fmt.Appendf(nil, "gen%d/group%d/frame%d/%s", gen, seq, i, "payload")
}

// framesPerGroup is how many frames writeGroups puts into each group.
const framesPerGroup = 3

// writeGroups writes groups of framesPerGroup frames into a new track
// name of bw every period, from sequence first, until ctx ends. It
// returns a function that waits for the writer to stop.
func writeGroups(ctx context.Context, t testing.TB, bw *moq.BroadcastWriter, name string, gen int, first uint64, period time.Duration) func() {
	tw, err := bw.CreateTrack(name, 1)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for seq := first; ; seq++ {
			g, err := tw.CreateGroup(seq)
			if err != nil {
				return
			}
			for i := range framesPerGroup {
				_ = g.WriteFrame(frameBytes(gen, seq, i))
			}
			_ = g.Close()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return wg.Wait
}
