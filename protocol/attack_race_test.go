//go:build race

package protocol

// attackStreams is how many streams of each kind every attacking session
// of TestMemoryAttack tries to open: fewer under the race detector, which
// allows at most 8128 live goroutines (the relay runs one per stream); the
// heap bound is asserted the same way.
const attackStreams = 500
