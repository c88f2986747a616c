package rtmpbench

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every test and benchmark leaves no goroutine
// behind, and removes the moqbridge binary the benchmarks built.
func TestMain(m *testing.M) {
	code := m.Run()
	removeBuild()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
