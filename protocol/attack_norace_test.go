//go:build !race

package protocol

// attackStreams is how many streams of each kind every attacking session
// of TestMemoryAttack tries to open.
const attackStreams = 1000
