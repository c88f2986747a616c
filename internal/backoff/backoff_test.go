package backoff

import (
	"testing"
	"time"
)

// TestWait: waits double from the minimum up to the maximum, each within
// ±jitter of its nominal value.
func TestWait(t *testing.T) {
	for n, nominal := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		nominal *= time.Millisecond
		for range 50 {
			d := Wait(100*time.Millisecond, time.Second, 0.5, n)
			if d < nominal/2 || d > nominal*3/2 {
				t.Fatalf("retry %d waits %v, want %v ± 50 %%", n, d, nominal)
			}
		}
		if d := Wait(100*time.Millisecond, time.Second, 0, n); d != nominal {
			t.Errorf("retry %d without jitter waits %v, want %v", n, d, nominal)
		}
	}
}

// TestDefaults: zero fields take the defaults, Max is at least Min, and
// the jitter stays within 0 to 1.
func TestDefaults(t *testing.T) {
	minWait, maxWait, jitter := time.Duration(0), time.Duration(0), 0.0
	Defaults(&minWait, &maxWait, &jitter, time.Second, 10*time.Second, 0.5)
	if minWait != time.Second || maxWait != 10*time.Second || jitter != 0.5 {
		t.Errorf("defaults: %v %v %v", minWait, maxWait, jitter)
	}
	minWait, maxWait, jitter = 5*time.Second, time.Second, 3
	Defaults(&minWait, &maxWait, &jitter, time.Second, 10*time.Second, 0.5)
	if maxWait != 5*time.Second || jitter != 1 {
		t.Errorf("max %v jitter %v, want 5s and 1", maxWait, jitter)
	}
	jitter = -0.3
	Defaults(&minWait, &maxWait, &jitter, time.Second, 10*time.Second, 0.5)
	if jitter != -1 {
		t.Errorf("negative jitter %v, want -1 (off)", jitter)
	}
	// Applying the defaults again keeps it off.
	Defaults(&minWait, &maxWait, &jitter, time.Second, 10*time.Second, 0.5)
	if jitter != -1 {
		t.Errorf("jitter after a second Defaults %v, want -1 (off)", jitter)
	}
	if d := Wait(time.Second, time.Second, jitter, 0); d != time.Second {
		t.Errorf("wait without jitter %v, want 1s", d)
	}
}
