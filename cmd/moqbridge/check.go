package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sources/fmp4"
)

// needArgs accepts exactly the named positional arguments and, otherwise,
// says which ones the command needs.
func needArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == len(names) {
			return nil
		}
		list := strings.Join(names, " and ")
		if len(names) > 2 {
			list = strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
		}
		return fmt.Errorf("%s needs %s, got %d argument%s (see \"moqbridge %s --help\")",
			cmd.Name(), list, len(args), plural(len(args)), cmd.Name())
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// notNegative refuses a negative duration flag.
func notNegative(flag string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("--%s %s: must not be negative (0 turns it off)", flag, d)
	}
	return nil
}

// templatePlaceholders are the placeholders of record --name.
const templatePlaceholders = "{path}, {start}, {start:LAYOUT} (a Go time layout) and {seq}"

// checkFileTemplate refuses a record --name with an unknown placeholder or
// one that would write outside the output directory.
func checkFileTemplate(tmpl string) error {
	if tmpl == "" {
		return nil
	}
	rest := tmpl
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return fmt.Errorf("--name %q: unclosed %q; the placeholders are %s", tmpl, rest[i:], templatePlaceholders)
		}
		key, _, _ := strings.Cut(rest[i+1:i+j], ":")
		switch key {
		case "path", "start", "seq":
		default:
			return fmt.Errorf("--name %q: unknown placeholder %q; the placeholders are %s", tmpl, rest[i:i+j+1], templatePlaceholders)
		}
		rest = rest[i+j+1:]
	}
	// {path} expands to a cleaned relative path and the others to file
	// name characters, so the literal text decides where the file goes.
	sample := strings.NewReplacer("{path}", "p", "{seq}", "0001").Replace(tmpl)
	for {
		i := strings.Index(sample, "{start")
		if i < 0 {
			break
		}
		j := strings.IndexByte(sample[i:], '}')
		sample = sample[:i] + "t" + sample[i+j+1:]
	}
	if !filepath.IsLocal(filepath.FromSlash(sample)) {
		return fmt.Errorf("--name %q: the file would be outside the -o directory; use a relative name without \"..\"", tmpl)
	}
	return nil
}

// codeClosed is MOQ Lite's Closed error code, which protocol does not
// export.
const codeClosed = 25

// errRelayShutDown is reported when the relay ends the session because it
// is stopping.
var errRelayShutDown = errors.New("relay shut down")

// explain turns an error into what the user should read: the relay
// closing the session as it stops (a MOQ Closed session error with the
// reason "server shutting down", over QUIC, HTTP/3 or WebSocket) is
// "relay shut down".
func explain(err error) error {
	var se *protocol.SessionError
	if errors.As(err, &se) && se.Remote && se.Code == codeClosed && se.Reason == "server shutting down" {
		return errRelayShutDown
	}
	if strings.Contains(err.Error(), "server shutting down") {
		return errRelayShutDown
	}
	return err
}

// mp4TopLevel are the box types an MP4 or fMP4 file starts with.
var mp4TopLevel = map[string]bool{
	"ftyp": true, "styp": true, "moov": true, "moof": true, "sidx": true,
	"free": true, "skip": true, "wide": true, "mdat": true, "pdin": true, "uuid": true,
}

// checkMP4 reads the first box header of the file input and refuses it
// unless it starts like an MP4 file, so that a wrong input is reported
// before connecting to the relay.
func checkMP4(input string) error {
	f, err := os.Open(input)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s: is a directory, not an MP4 file", input)
	}
	h, err := fmp4.NewBoxReader(f, 0).Next()
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: empty file, not an MP4 file", input)
	}
	if err != nil || !mp4TopLevel[h.Type] || h.Size > st.Size() {
		return fmt.Errorf("%s: not an MP4 file", input)
	}
	return nil
}
