package main

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/moqbridge/moqbridge/protocol"
)

// dialFlags are the connection options shared by the client commands.
type dialFlags struct {
	fingerprint  string
	insecure     bool
	reconnect    bool
	reconnectMax time.Duration
	giveUp       time.Duration
}

func (d *dialFlags) register(f *pflag.FlagSet) {
	f.StringVar(&d.fingerprint, "fingerprint", "", "accept exactly the server certificate with this SHA-256 (hex), as printed by \"moqbridge serve\"")
	f.BoolVar(&d.insecure, "insecure", false, "skip certificate verification (development only)")
	f.BoolVar(&d.reconnect, "reconnect", true, "when the relay goes away or restarts, reconnect with exponential backoff and jitter and carry on (--reconnect=false: exit with an error)")
	f.DurationVar(&d.reconnectMax, "reconnect-max", protocol.DefaultReconnect.Max, "longest wait between two reconnection attempts")
	f.DurationVar(&d.giveUp, "give-up", 0, "stop reconnecting once the relay has been gone this long, and exit with an error (0: never)")
}

// reconnectPolicy is the Reconnect the flags ask for.
func (d *dialFlags) reconnectPolicy() (protocol.Reconnect, error) {
	if err := notNegative("give-up", d.giveUp); err != nil {
		return protocol.Reconnect{}, err
	}
	if d.reconnectMax < 0 {
		return protocol.Reconnect{}, fmt.Errorf("--reconnect-max %s: must not be negative", d.reconnectMax)
	}
	return protocol.Reconnect{Max: d.reconnectMax, GiveUpAfter: d.giveUp}, nil
}

func (d *dialFlags) options() ([]protocol.DialOption, error) {
	rc, err := d.reconnectPolicy()
	if err != nil {
		return nil, err
	}
	opts := []protocol.DialOption{protocol.WithReconnect(rc)}
	if d.fingerprint != "" {
		b, err := hex.DecodeString(strings.TrimPrefix(strings.ReplaceAll(d.fingerprint, ":", ""), "0x"))
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("--fingerprint: want 64 hex digits (a SHA-256), got %q", d.fingerprint)
		}
		var fp [32]byte
		copy(fp[:], b)
		opts = append(opts, protocol.WithFingerprint(fp))
	}
	if d.insecure {
		opts = append(opts, protocol.WithInsecure())
	}
	return opts, nil
}
