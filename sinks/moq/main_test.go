package moq

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/moqbridge/moqbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fastBackoff keeps the tests short.
var fastBackoff = sdk.Backoff{Min: 50 * time.Millisecond, Max: 300 * time.Millisecond}
