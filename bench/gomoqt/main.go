// Command gomoqt-bench puts github.com/okdaichi/gomoqt v0.9.0 into the relay
// benchmark of github.com/moqbridge/moqbridge/bench as a contender of its
// own. It is a module of its own because gomoqt v0.9.0 needs quic-go v0.58.0
// while moqbridge pins a later one; the benchmark builds this binary and
// runs it as two child processes:
//
//	gomoqt-bench relay
//	gomoqt-bench peers -addr ADDR -fingerprint HEX -subs N -frame B -keyframe B -group F -fps R
//
// and a third role, bare-relay, the harness' bare quic-go relay on gomoqt's
// quic-go, to tell gomoqt's design from its quic-go version.
//
// The relay child speaks the harness' relay control protocol: one JSON line
// with its address and certificate fingerprint on stdout, one JSON stats
// line for every "stats" line on stdin, exit when stdin closes.
//
// gomoqt speaks its own MOQ Lite dialect (ALPN "moq-00", version
// 0xfeedbabe, a SESSION_CLIENT/SESSION_SERVER handshake) that moqbridge's
// peers do not, so the load comes from gomoqt's own client: the peers child
// runs the publisher and the N subscribers, stamps and checks every frame
// byte for byte exactly as the harness does, and answers "begin" and "end"
// with its counters (and, for "end", the latencies recorded in between).
package main

import (
	"fmt"
	"log/slog"
	"os"
)

// debugEnv, set to 1, makes gomoqt log at debug level on stderr.
const debugEnv = "GOMOQT_BENCH_DEBUG"

// logger is gomoqt's logger: nil (gomoqt's default, which discards) unless
// debugEnv is set.
var logger *slog.Logger

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gomoqt-bench relay | peers [flags] | bare-relay")
		os.Exit(2)
	}
	if os.Getenv(debugEnv) == "1" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		slog.SetDefault(logger)
	}
	var err error
	switch os.Args[1] {
	case "relay":
		err = runRelay()
	case "peers":
		err = runPeers(os.Args[2:])
	case "bare-relay":
		err = runBareRelay()
	default:
		err = fmt.Errorf("unknown role %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gomoqt-bench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
