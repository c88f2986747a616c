package main

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/moqbridge/moqbridge/protocol"
)

// dialFlags are the connection options shared by the client commands.
type dialFlags struct {
	fingerprint string
	insecure    bool
}

func (d *dialFlags) register(f *pflag.FlagSet) {
	f.StringVar(&d.fingerprint, "fingerprint", "", "accept exactly the server certificate with this SHA-256 (hex), as printed by \"moqbridge serve\"")
	f.BoolVar(&d.insecure, "insecure", false, "skip certificate verification (development only)")
}

func (d *dialFlags) options() ([]protocol.DialOption, error) {
	var opts []protocol.DialOption
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
