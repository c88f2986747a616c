package protocol

import (
	"sync/atomic"

	"github.com/moqbridge/moqbridge/protocol/internal/wire"
)

// Budgets for what peers can make this process hold.
//
// A peer decides how much it declares (a message length, a frame size) but
// not how much memory that costs: readers allocate as the bytes arrive
// (wire.Reader, readFrame), and memory held for a message or frame that is
// still incomplete counts against two byte budgets — its session's
// (Limits.MaxSessionBuffer) and one shared by every session of a Server
// (Limits.MaxServerBuffer; a session made with Dial has one of its own).
// Bytes are reserved as the memory is allocated and released when the
// message or frame is complete or abandoned; complete frames belong to the
// track cache and its own budget (moq.CacheConfig). A reservation that would go
// over either budget fails, and the stream that asked is reset with
// wire.CodeBoundsExceeded.

// byteBudget is a count of bytes with a limit. The zero value refuses
// everything; newByteBudget makes a usable one.
type byteBudget struct {
	name  string // "session" or "server", for errors
	limit int64
	used  atomic.Int64
}

func newByteBudget(name string, limit int) *byteBudget {
	return &byteBudget{name: name, limit: int64(limit)}
}

// reserve adds n bytes unless that would go over the limit.
func (b *byteBudget) reserve(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (b *byteBudget) release(n int64) { b.used.Add(-n) }

// sessionBudget charges one session's budget and the shared one together.
// It implements wire.Budget, so a session's stream readers charge it for
// their message buffers.
type sessionBudget struct {
	own, shared *byteBudget
}

var _ wire.Budget = sessionBudget{}

// Reserve takes n bytes from both budgets, or from neither: the error says
// which one is exhausted and carries wire.CodeBoundsExceeded.
func (sb sessionBudget) Reserve(n int) error {
	if n <= 0 {
		return nil
	}
	for _, b := range [...]*byteBudget{sb.own, sb.shared} {
		if !b.reserve(int64(n)) {
			if b == sb.shared {
				sb.own.release(int64(n))
			}
			return coded(wire.CodeBoundsExceeded, "%s buffer budget of %d bytes exhausted", b.name, b.limit)
		}
	}
	return nil
}

// Release gives back n bytes to both budgets.
func (sb sessionBudget) Release(n int) {
	if n > 0 {
		sb.own.release(int64(n))
		sb.shared.release(int64(n))
	}
}

// settle gives back to the shared budget whatever the session still holds,
// once none of its goroutines runs any more: an ended session's streams
// cannot leave the server's budget short.
func (sb sessionBudget) settle() {
	sb.shared.release(sb.own.used.Swap(0))
}
