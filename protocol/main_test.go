package protocol

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine running: every
// goroutine in protocol must have an owner that waits for it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
