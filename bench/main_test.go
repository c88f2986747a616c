package bench

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain first checks whether this binary was re-executed as a relay
// child; if so it runs that role instead of the tests. Otherwise every test
// and benchmark must leave no goroutine behind.
func TestMain(m *testing.M) {
	if role := os.Getenv(RoleEnv); role != "" {
		os.Exit(RunRole(role))
	}
	goleak.VerifyTestMain(m)
}
