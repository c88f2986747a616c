//go:build !race

package main

// raceEnabled is set when the tests run under the race detector, which
// slows every process several times.
const raceEnabled = false
