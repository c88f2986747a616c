package rtmpbench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every test and benchmark leaves no goroutine
// behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
