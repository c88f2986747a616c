package rtpbench

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the UDP fan-out when this binary was started as one
// (FanoutEnv), and otherwise the tests and benchmarks, checking that they
// leave no goroutine behind.
func TestMain(m *testing.M) {
	if os.Getenv(FanoutEnv) != "" {
		os.Exit(RunFanout())
	}
	goleak.VerifyTestMain(m)
}
