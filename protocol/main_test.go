package protocol

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine running: every
// goroutine in protocol must have an owner that waits for it.
//
// With livenessChildEnv set, the binary is instead the publisher process
// of TestLivenessBackupTakesOver.
func TestMain(m *testing.M) {
	if spec := os.Getenv(livenessChildEnv); spec != "" {
		os.Exit(runLivenessPublisher(spec))
	}
	goleak.VerifyTestMain(m)
}
